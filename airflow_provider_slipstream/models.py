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
    SlipstreamLicenseQuotaError,
    SlipstreamTrackNotFoundError,
    SlipstreamTransientError,
    SlipstreamValidationError,
)
from airflow_provider_slipstream.retry import RETRYABLE_STATUS, parse_retry_after


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


@dataclass(frozen=True)
class RightsHolder:
    """A writer or publisher of a catalog track: ``share`` in percent, ``pro`` its rights society."""

    name: str
    share: float | None
    pro: str | None
    #: A digit string whose leading zeros matter: kept as the catalog gives it.
    ipi: str | None

    @classmethod
    def from_api(cls, data: Any) -> RightsHolder:
        data = _require_object(data, "a writer or publisher")
        share = _field(data, "share", (int, float), nullable=True)
        ipi = _field(data, "ipi", (str, int), nullable=True)
        return cls(
            name=_field(data, "name", (str,), nullable=False),
            share=None if share is None else _as_float(share),
            pro=_field(data, "pro", (str,), nullable=True),
            ipi=None if ipi is None else str(ipi),
        )


@dataclass(frozen=True)
class CatalogTrack:
    """
    A Slipstream catalog track (Tracks API): what an internal match's ``track.id`` leads to.

    Only ``id`` and ``name`` are required (the docs do not say which fields may be null); the
    rights metadata is kept as documented and ``raw`` keeps the whole answer, unknown fields included.
    """

    id: str
    name: str
    artist_name: str | None
    short_url: str | None
    library_name: str | None
    isrc: str | None
    writers: tuple[RightsHolder, ...]
    publishers: tuple[RightsHolder, ...]
    raw: Mapping[str, Any]

    @classmethod
    def from_api(cls, data: Any) -> CatalogTrack:
        data = _require_object(data, "a catalog track")
        artist = data.get("artist")
        return cls(
            id=_field(data, "id", (str,), nullable=False),
            name=_field(data, "name", (str,), nullable=False),
            artist_name=_field(artist, "name", (str,), nullable=True) if isinstance(artist, Mapping) else None,
            short_url=_field(data, "short_url", (str,), nullable=True),
            library_name=_field(data, "library_name", (str,), nullable=True),
            isrc=_field(data, "isrc", (str,), nullable=True),
            writers=_holders(data, "writers"),
            publishers=_holders(data, "publishers"),
            raw=data,
        )

    def to_catalog(self) -> dict[str, Any]:
        """The ``catalog`` entry an enriched internal match gains in its result dict."""
        return {
            "id": self.id,
            "name": self.name,
            "artist": self.artist_name,
            "short_url": self.short_url,
            "library_name": self.library_name,
            "isrc": self.isrc,
            "writers": [asdict(holder) for holder in self.writers],
            "publishers": [asdict(holder) for holder in self.publishers],
        }


def _holders(data: Mapping[str, Any], name: str) -> tuple[RightsHolder, ...]:
    value = _field(data, name, (list,), nullable=True)
    return tuple(RightsHolder.from_api(item) for item in value or ())


#: The public proof page of a license: what resolves a Content ID claim.
LICENSE_PAGE = "https://license.slipstreammusic.com/v/{license_id}"
#: Usage at or above this share of a daily or monthly cap is logged as a warning.
QUOTA_WARNING_SHARE = 0.8


@dataclass(frozen=True)
class LicenseUsage:
    """The partner's license counters and caps, per day and per month (None where not given)."""

    daily_used: int | None
    monthly_used: int | None
    daily_limit: int | None
    monthly_limit: int | None

    @classmethod
    def from_api(cls, data: Any) -> LicenseUsage:
        """Lenient: counters only inform a warning, so an unreadable one is None, never an error."""
        data = data if isinstance(data, Mapping) else {}
        return cls(**{name: _count(data.get(name)) for name in _USAGE_FIELDS})

    def near_caps(self) -> list[str]:
        """The windows at or above :data:`QUOTA_WARNING_SHARE` of their cap, in words."""
        windows = (("daily", self.daily_used, self.daily_limit), ("monthly", self.monthly_used, self.monthly_limit))
        return [
            f"{window} {used} of {limit}"
            for window, used, limit in windows
            if used is not None and limit and used >= QUOTA_WARNING_SHARE * limit
        ]


_USAGE_FIELDS = ("daily_used", "monthly_used", "daily_limit", "monthly_limit")


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else None


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class License:
    """A generated license. ``license_url`` is the public proof page, built per the docs' rule."""

    license_id: str
    license_url: str
    track_id: str | None
    track_name: str | None
    artist_name: str | None
    user_id: str | None
    created_at: str | None
    expires_at: str | None
    usage: LicenseUsage

    @classmethod
    def from_api(cls, data: Any) -> License:
        """
        Lenient beyond ``license_id``: the license exists (and quota is spent) once this answer came,
        so an odd optional field must not lose it; it becomes None.
        """
        data = _require_object(data, "a license answer")
        body = _require_object(data.get("license"), "a license")
        license_id = _field(body, "license_id", (str,), nullable=False)
        # `license_url` holds only the id today; it is promised to become the full URL.
        url = _text(body, "license_url")
        return cls(
            license_id=license_id,
            license_url=url
            if url and url.startswith(("https://", "http://"))
            else LICENSE_PAGE.format(license_id=license_id),
            **{name: _text(body, name) for name in _LICENSE_FIELDS},
            usage=LicenseUsage.from_api(data.get("usage")),
        )

    def to_dict(self) -> dict[str, Any]:
        """The license dict of design.md (what the license operator returns)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> License:
        """Back from :meth:`to_dict` (a stored license); keys another version added are ignored."""
        license_id, url = _text(data, "license_id"), _text(data, "license_url")
        if license_id is None or url is None:
            raise ValueError("not a stored license")
        return cls(
            license_id=license_id,
            license_url=url,
            **{name: _text(data, name) for name in _LICENSE_FIELDS},
            usage=LicenseUsage.from_api(data.get("usage")),
        )


_LICENSE_FIELDS = ("track_id", "track_name", "artist_name", "user_id", "created_at", "expires_at")


#: Words of a refusal that is about the license quota, not about the request rate.
_QUOTA_WORDS = re.compile(r"\bquota|\blicen[cs]e limit|\blimit of \d+ licen[cs]es", re.IGNORECASE)


def quota_refusal(status: int, body: bytes, retry_after: str | None) -> str | None:
    """
    If an error answer is a license quota refusal, when the window resets (in words); else None.

    Undocumented: taken to be a 429 or 403 whose message, in any of the error shapes, speaks of the
    quota or the license limit. A plain 429 (rate limiting) is not one: it is retried as usual.
    """
    if status not in (403, 429) or not _QUOTA_WORDS.search(error_message(body)):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    error = data.get("error") if isinstance(data, Mapping) else None
    resets = next(
        (
            value
            for holder in (error, data)
            if isinstance(holder, Mapping)
            for value in (holder.get("resets_at"), holder.get("reset_at"))
            if isinstance(value, str) and value
        ),
        None,
    )
    if resets:
        return f"The window resets at {resets}."
    seconds = parse_retry_after(retry_after)
    if seconds is not None:
        return f"The window resets in about {_duration(seconds)}."
    return "Slipstream did not say when the window resets (a daily cap resets daily, a monthly one monthly)."


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


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
    track_id: str | None = None,
    license_request: bool = False,
    retry_after: str | None = None,
    scrub: Callable[[bytes], bytes] | None = None,
) -> Any:
    """
    Decide what one HTTP answer means: the decoded body of a success, or the matching error.

    :param what: the request in words, for messages ("the status of job 7b2c…").
    :param job_id: set for job lookups, where 404 means "unknown or expired job".
    :param track_id: set for catalog lookups and licenses, where 404 means "no such track".
    :param license_request: a license POST, where a quota refusal (see :func:`quota_refusal`, with the
        answer's ``Retry-After``) is final, not a 429 to retry.
    :param scrub: removes the partner key from a body (``ClientConfig.scrub``): a proxy that echoes
        the request must not put it into a message. A callable, not the key, so that no traceback
        that shows locals can print it.
    """
    if scrub is not None:
        body = scrub(body)
    if 200 <= status < 300:
        return parse_json_body(body, what)
    message = error_message(body)
    resets = quota_refusal(status, body, retry_after) if license_request else None
    if resets is not None:
        raise SlipstreamLicenseQuotaError(
            f"Slipstream refused {what}: the partner's license quota is used up ({status}: {message}). {resets} "
            "Run the task again after that; retrying sooner spends nothing but requests.",
            status_code=status,
        )
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
    if status == 404 and track_id is not None:
        raise SlipstreamTrackNotFoundError(
            f"The Slipstream catalog has no track {track_id} (404: {message}). Only an internal match's "
            "track id (result['track']['id']) names a catalog track.",
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
