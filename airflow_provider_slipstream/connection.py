"""Read a ``slipstream`` Airflow connection into validated client settings."""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.providers.common.compat.sdk import mask_secret

from airflow_provider_slipstream.exceptions import SlipstreamValidationError
from airflow_provider_slipstream.retry import RetryPolicy

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Connection

DEFAULT_BASE_URL = "https://api.slipstreammusic.com"


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs to talk to Slipstream, taken from one connection."""

    base_url: str
    api_key: str = field(repr=False)
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    competitor_labels: tuple[str, ...] | None = None

    def scrub(self, body: bytes) -> bytes:
        """``body`` with the partner key replaced by ``***``."""
        return body.replace(self.api_key.encode(), b"***")

    def competitor_labels_for(self, override: list[str] | tuple[str, ...] | None) -> tuple[str, ...] | None:
        """Labels to classify with: a task's own list, else the connection's, else None (the built-in list)."""
        return tuple(override) if override is not None else self.competitor_labels

    @classmethod
    def from_connection(
        cls, conn: Connection, extra: dict[str, Any] | None = None, *, mask_key: bool = True
    ) -> ClientConfig:
        """
        Validate a connection into settings; every mistake is refused here, before any request.

        :param extra: the connection's extra, already read. On an event loop, read it with
            common-compat's ``get_async_extra_dejson``: ``conn.extra_dejson`` (used when this is
            None) masks secrets with a blocking call to the supervisor.
        :param mask_key: False when the caller registers the key with the secrets masker itself,
            for the same reason.
        """
        conn_id = conn.conn_id
        api_key = (conn.password or "").strip()
        if not api_key:
            raise SlipstreamValidationError(
                f"Connection {conn_id!r} has no partner API key. Put the key in the connection's "
                "password field ('Partner API key' in the UI), e.g. "
                '{"conn_type": "slipstream", "password": "<key>"} in AIRFLOW_CONN_SLIPSTREAM_DEFAULT.'
            )
        if not all("!" <= ch <= "~" for ch in api_key):
            # Not quoted: the key is a secret, and a control character in it would not be masked as shown.
            raise SlipstreamValidationError(
                f"Connection {conn_id!r} has a partner API key with spaces, control or non-ASCII characters, "
                "which no HTTP header can carry. Paste the key again into the connection's password field."
            )
        if mask_key:
            # The password field is masked by Airflow already; registering it again covers secrets
            # backends and custom connection loaders that bypass that.
            mask_secret(api_key)
        if extra is None:
            extra = conn.extra_dejson
        allow_http = _flag(extra, "allow_insecure_http", conn_id)
        return cls(
            base_url=_base_url(conn_id, conn.host, conn.port, conn.schema, allow_http=allow_http),
            api_key=api_key,
            connect_timeout=_number(extra, "connect_timeout", 10.0, conn_id),
            read_timeout=_number(extra, "timeout", 30.0, conn_id),
            retry=RetryPolicy(
                max_retries=int(_number(extra, "max_retries", 5, conn_id, minimum=0, whole=True)),
                backoff_base=_number(extra, "retry_backoff", 1.0, conn_id),
                backoff_max=_number(extra, "retry_backoff_max", 30.0, conn_id),
            ),
            competitor_labels=_labels(extra.get("competitor_labels"), conn_id),
        )


def _base_url(conn_id: str, host: str | None, port: int | None, schema: str | None, *, allow_http: bool) -> str:
    host = (host or "").strip()
    # Airflow puts the path of a URI-form connection (slipstream://:key@host/path) into `schema`.
    schema_path = (schema or "").strip().strip("/")
    if not host:
        if schema_path:
            raise SlipstreamValidationError(
                f"Connection {conn_id!r} has the path {schema_path!r} (its schema, where Airflow puts a URI's "
                "path) but no host. Put the whole base URL in the host ('Base URL' in the UI), e.g. "
                f"'https://gateway.example.com/{schema_path}'."
            )
        return DEFAULT_BASE_URL
    raw = host if "://" in host else f"https://{host}"
    try:
        parts = urlsplit(raw)
        parsed_port = parts.port
    except ValueError:
        parts, parsed_port = None, None
    hostname = parts.hostname if parts is not None else None
    if (
        parts is None
        or hostname is None
        or parts.scheme not in ("http", "https")
        or not _valid_hostname(hostname)
        or parts.query
        or parts.fragment
        or parts.username is not None  # credentials in the URL would end up in messages
    ):
        raise SlipstreamValidationError(
            f"Connection {conn_id!r} has a malformed host {host!r}. Use a base URL such as "
            "'https://api.slipstreammusic.com' (or leave the host empty for that default)."
        )
    if parts.scheme == "http" and not allow_http and not is_loopback(hostname):
        raise SlipstreamValidationError(
            f"Connection {conn_id!r} points at plain http://{hostname}, which would send the partner "
            "API key unencrypted. Use https, or set the extra 'allow_insecure_http': true if this is deliberate."
        )
    path = parts.path.rstrip("/")
    if schema_path:
        if path:
            raise SlipstreamValidationError(
                f"Connection {conn_id!r} has a path both in its host ({parts.path!r}) and in its schema "
                f"({schema_path!r}, where Airflow puts a URI's path). Put the whole base URL in the host "
                "('Base URL' in the UI) and leave the schema empty."
            )
        # Airflow has unquoted the URI's path; quote it back for the URL.
        path = "/" + quote(schema_path, safe="/")
    netloc = parts.netloc if parsed_port is not None or not port else f"{parts.netloc}:{port}"
    return f"{parts.scheme}://{netloc}{path}"


def _valid_hostname(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", hostname) is not None
    return True


def is_loopback(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _number(
    extra: dict[str, Any], key: str, default: float, conn_id: str, *, minimum: float = 0.001, whole: bool = False
) -> float:
    """A number from the extra; strings count too (the URI form makes every extra a string)."""
    value = extra.get(key)
    if value is None or value == "":
        return float(default)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    # Refused, not rounded: 2.7 retries is a typo, and infinity overflows the HTTP client's timers.
    if isinstance(value, bool) or not math.isfinite(number) or number < minimum or (whole and not number.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise SlipstreamValidationError(
            f"Connection {conn_id!r}: extra {_field(key)} must be {kind} >= {minimum:g}, got {value!r}."
        )
    return number


def _flag(extra: dict[str, Any], key: str, conn_id: str) -> bool:
    value = extra.get(key, False)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", ""):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise SlipstreamValidationError(
            f"Connection {conn_id!r}: extra {_field(key)} must be true or false, got {value!r}."
        )
    return value


def _field(key: str) -> str:
    """An extra's key, with its label in the connection form when it has one."""
    label = _form_labels().get(key)
    return f"{key!r} ({label!r} in the connection form)" if label else repr(key)


@functools.cache
def _form_labels() -> dict[str, str]:
    from airflow_provider_slipstream.get_provider_info import connection_type_info

    fields = connection_type_info()["conn-fields"]
    return {key: spec["label"] for key, spec in fields.items()}


def _labels(value: Any, conn_id: str) -> tuple[str, ...] | None:
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise SlipstreamValidationError(
            f"Connection {conn_id!r}: extra {_field('competitor_labels')} must be a list of label names or a "
            f"comma-separated string, got {value!r}."
        )
    return tuple(x.strip() for x in items if x.strip())
