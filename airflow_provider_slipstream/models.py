"""
What Slipstream's answers mean: the one place that parses responses and classifies matches.

The hook, the trigger, the sensor and the operators all go through these functions, so a
response is read the same way everywhere and the XCom result has one shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from airflow_provider_slipstream.exceptions import (
    SlipstreamApiError,
    SlipstreamAuthError,
    SlipstreamJobNotFoundError,
    SlipstreamTransientError,
    SlipstreamValidationError,
)
from airflow_provider_slipstream.retry import RETRYABLE_STATUS


class JobStatus(str, Enum):
    """The documented job statuses. Any other status is kept as a plain string."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"


class MatchKind(str, Enum):
    """What a completed job found; the value downstream tasks branch on."""

    INTERNAL = "internal"
    COMPETITOR = "competitor"
    EXTERNAL = "external"
    NO_MATCH = "no_match"


#: Stock-music libraries flagged as competitors unless an operator argument or the
#: connection's ``competitor_labels`` extra replaces the list.
DEFAULT_COMPETITOR_LABELS: tuple[str, ...] = (
    "Epidemic Sound",
    "Artlist",
    "Musicbed",
    "Soundstripe",
    "PremiumBeat",
    "AudioJungle",
    "Envato Elements",
    "Pond5",
    "Audio Network",
    "Storyblocks",
    "Shutterstock Music",
    "Uppbeat",
    "Motion Array",
)


def _field(data: Mapping[str, Any], name: str, types: tuple[type, ...], *, nullable: bool) -> Any:
    value = data.get(name)
    if value is None:
        if nullable:
            return None
    # bool is an int subclass: a score of `true` is as malformed as a string.
    elif isinstance(value, types) and (bool in types or not isinstance(value, bool)):
        return value
    raise SlipstreamApiError(
        f"Slipstream returned an unexpected {name!r}: {value!r}. The API may have changed: "
        "upgrade airflow-provider-slipstream, or report this response if you run the newest version."
    )


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        # JSON integers have no size limit; a score beyond float range is as malformed as a string.
        raise SlipstreamApiError(f"Slipstream returned an out-of-range 'score': {value!r:.40}…") from None


def _require_object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise SlipstreamApiError(
            f"Slipstream returned {type(data).__name__} where {what} (a JSON object) was expected. "
            "The API may have changed: upgrade airflow-provider-slipstream, or report this response."
        )
    return data


@dataclass(frozen=True)
class RecognitionTrack:
    """A recognised track, as the API describes it."""

    id: str | None
    title: str
    artist: str
    internal: bool
    isrc: str | None
    score: float | None
    external_label: str | None

    @classmethod
    def from_api(cls, data: Any) -> RecognitionTrack:
        data = _require_object(data, "a track")
        score = _field(data, "score", (int, float), nullable=True)
        return cls(
            id=_field(data, "id", (str,), nullable=True),
            title=_field(data, "title", (str,), nullable=False),
            artist=_field(data, "artist", (str,), nullable=False),
            internal=_field(data, "internal", (bool,), nullable=False),
            isrc=_field(data, "isrc", (str,), nullable=True),
            score=None if score is None else _as_float(score),
            external_label=_field(data, "external_label", (str,), nullable=True),
        )


@dataclass(frozen=True)
class RecognitionJob:
    """A recognition job. ``status`` keeps undocumented values instead of failing on them."""

    job_id: str
    status: str
    track: RecognitionTrack | None

    @property
    def is_completed(self) -> bool:
        return self.status == JobStatus.COMPLETED.value

    @property
    def is_known_status(self) -> bool:
        return self.status in {s.value for s in JobStatus}

    @classmethod
    def from_api(cls, data: Any) -> RecognitionJob:
        data = _require_object(data, "a recognition job")
        track = data.get("track")
        return cls(
            job_id=_field(data, "job_id", (str,), nullable=False),
            status=_field(data, "status", (str,), nullable=False),
            track=None if track is None else RecognitionTrack.from_api(track),
        )

    def to_result(self, competitor_labels: Iterable[str] | None = None) -> dict[str, Any]:
        """The XCom result dict of design.md; only meaningful once the job is completed."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "match": classify(self.track, competitor_labels).value,
            "track": None if self.track is None else asdict(self.track),
        }


@dataclass(frozen=True)
class UploadTarget:
    """Where to PUT the bytes for a presigned upload, and the key to submit afterwards."""

    upload_url: str
    storage_key: str
    expires_in: int
    content_type: str

    @classmethod
    def from_api(cls, data: Any) -> UploadTarget:
        data = _require_object(data, "an upload target")
        expires_in = _field(data, "expires_in", (int,), nullable=True)
        return cls(
            upload_url=_field(data, "upload_url", (str,), nullable=False),
            storage_key=_field(data, "storage_key", (str,), nullable=False),
            expires_in=600 if expires_in is None else expires_in,
            content_type=_field(data, "content_type", (str,), nullable=False),
        )


def normalize_label(label: str) -> str:
    """Labels compare case- and space-insensitively: ``"epidemic  sound "`` is Epidemic Sound."""
    return " ".join(label.split()).casefold()


def classify(track: RecognitionTrack | None, competitor_labels: Iterable[str] | None = None) -> MatchKind:
    """Decide what a completed job found."""
    if track is None:
        return MatchKind.NO_MATCH
    if track.internal:
        return MatchKind.INTERNAL
    labels = DEFAULT_COMPETITOR_LABELS if competitor_labels is None else competitor_labels
    if track.external_label and normalize_label(track.external_label) in {normalize_label(x) for x in labels}:
        return MatchKind.COMPETITOR
    return MatchKind.EXTERNAL


def check_response(
    status: int,
    body: bytes,
    what: str,
    *,
    job_id: str | None = None,
    scrub: Callable[[bytes], bytes] | None = None,
) -> Any:
    """
    Decide what one HTTP answer means: the decoded body of a success, or the matching error.

    :param what: the request in words, for messages ("the status of job 7b2c…").
    :param job_id: set for job lookups, where 404 means "unknown or expired job".
    :param scrub: removes the partner key from a body (``ClientConfig.scrub``): a proxy that echoes
        the request must not put it into a message. A callable, not the key, so that no traceback
        that shows locals can print it.
    """
    if scrub is not None:
        body = scrub(body)
    if 200 <= status < 300:
        return parse_json_body(body, what)
    message = error_message(body)
    if status == 400:
        raise SlipstreamValidationError(
            f"Slipstream rejected {what} (400): {message}. Fix the input and try again.", status_code=status
        )
    if status in (401, 403):
        raise SlipstreamAuthError(
            f"Slipstream refused the partner API key for {what} ({status}: {message}). Check the key in the "
            "Airflow connection's password field; it may be mistyped, revoked or for another environment.",
            status_code=status,
        )
    if status == 404 and job_id is not None:
        raise SlipstreamJobNotFoundError(
            f"Slipstream job {job_id} was not found (404: {message}): it never existed or its result expired "
            "(results are kept about a day after completion). Submit the video again.",
            status_code=status,
        )
    if status in RETRYABLE_STATUS:
        raise SlipstreamTransientError(
            f"Slipstream could not answer {what} right now ({status}: {message}). This is usually temporary; "
            "the task can be retried later.",
            status_code=status,
        )
    raise SlipstreamApiError(
        f"Slipstream answered {status} to {what}: {message}. If this persists, check the connection's base URL.",
        status_code=status,
    )


def parse_json_body(body: bytes | str, what: str) -> Any:
    """Decode a success body; one that is not JSON is a (likely temporary) fault, never a ``ValueError``."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise SlipstreamTransientError(
            f"Slipstream returned a body that is not JSON for {what}: {_shorten(_strip_tags(body))!r}. "
            "This is usually a temporary fault of the service or a proxy in between; try again later."
        ) from None


def error_message(body: bytes | str) -> str:
    """
    Turn any error body into one short readable message.

    Handles the three shapes seen in the docs (``{"detail": ...}``, field-keyed
    ``{"file": ["..."]}`` and ``{"success": false, "error": {"code", "message"}}``) and
    anything else, including HTML pages, empty and absurdly nested bodies.
    """
    try:
        text = _flatten(json.loads(body))
    except (ValueError, RecursionError):
        text = _strip_tags(body)
    return _shorten(text) or "no error details in the response"


def _flatten(data: Any, prefix: str = "") -> str:
    if isinstance(data, Mapping):
        if isinstance(data.get("error"), Mapping):
            err = data["error"]
            code, msg = err.get("code"), err.get("message")
            return ": ".join(str(x) for x in (code, msg) if x)
        if "detail" in data and len(data) == 1:
            return _flatten(data["detail"], prefix)
        parts = [
            _flatten(v, prefix if k in ("detail", "non_field_errors") else f"{prefix}{k}: ") for k, v in data.items()
        ]
        return "; ".join(p for p in parts if p)
    if isinstance(data, list):
        return prefix + " ".join(_flatten(x) for x in data)
    if data is None or isinstance(data, bool):
        return ""
    return prefix + str(data)


def _strip_tags(body: bytes | str) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    # An HTML error page says little beyond its title; strip tags so the message stays readable.
    return re.sub(r"<[^>]+>", " ", text)


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
