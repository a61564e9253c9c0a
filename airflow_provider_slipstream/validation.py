"""Local checks that reject bad input with a clear message before any request is sent."""

from __future__ import annotations

import ast
import json
import uuid
from typing import Any

from airflow_provider_slipstream.exceptions import SlipstreamValidationError

ALLOWED_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".avi", ".mpeg")
#: The API's limit for a direct (multipart) upload.
MAX_DIRECT_UPLOAD_BYTES = 100 * 1024 * 1024
STORAGE_KEY_PREFIX = "video-recognition/"


def validate_job_id(job_id: Any) -> str:
    """Return the canonical job id; anything but a UUID (``../x``, ``abc``, a suffix) is refused."""
    text = job_id if isinstance(job_id, str) else ""
    try:
        # A strict round-trip: uuid.UUID alone accepts braces, "urn:uuid:" and missing hyphens.
        canonical = str(uuid.UUID(text))
    except ValueError:
        canonical = ""
    if canonical != text.strip().lower() or not canonical:
        raise SlipstreamValidationError(
            f"{job_id!r} is not a Slipstream job id: expected a UUID such as "
            "'7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10', as returned by the submit step. "
            "Check the job_id argument or the XCom it is templated from."
        )
    return canonical


def validate_filename(name: Any) -> str:
    """Refuse a video whose extension the API does not accept."""
    if not isinstance(name, str) or not name.lower().endswith(ALLOWED_EXTENSIONS):
        raise SlipstreamValidationError(
            f"{name!r} cannot be submitted: Slipstream accepts only {', '.join(ALLOWED_EXTENSIONS)} files. "
            "Convert the video or fix the path."
        )
    return name


def validate_storage_key(storage_key: Any) -> str:
    if not isinstance(storage_key, str) or not storage_key.startswith(STORAGE_KEY_PREFIX) or ".." in storage_key:
        raise SlipstreamValidationError(
            f"{storage_key!r} is not a Slipstream storage key: it must start with "
            f"{STORAGE_KEY_PREFIX!r}, as returned by the upload-url step (create_upload_url)."
        )
    return storage_key


def validate_size(name: str, size: int, *, limit: int | None) -> None:
    if size <= 0:
        raise SlipstreamValidationError(f"{name!r} is empty (0 bytes); there is nothing to recognise.")
    if limit is not None and size > limit:
        raise SlipstreamValidationError(
            f"{name!r} is {size / 1024 / 1024:.1f} MB, over the {limit / 1024 / 1024:g} MB limit of a direct "
            "upload. Use upload_method='presigned' (or 'auto') for large files."
        )


def parse_labels(value: Any, what: str) -> tuple[str, ...] | None:
    """Competitor labels as :func:`parse_list` reads them."""
    return parse_list(value, what, noun="names", example="'Epidemic Sound, Artlist'")


def parse_list(value: Any, what: str, *, noun: str, example: str) -> tuple[str, ...] | None:
    """
    A list-of-names argument as a tuple, whether given as a list or as the string a template renders.

    Templates render to strings: ``"Epidemic Sound, Artlist"`` (comma-separated), ``'["Epidemic Sound"]'``
    (JSON) or ``"['Epidemic Sound']"`` (a Python list's or tuple's repr) all mean the names they list.
    None, an empty string, or what a template renders for None (``"None"``, ``"null"``) mean "not given";
    an empty list means "none".
    """
    if value is None or (isinstance(value, str) and value.strip() in _NOT_GIVEN):
        return None
    items: Any = value
    if isinstance(value, str):
        text = value.strip()
        items = _list_literal(text) if text.startswith(("[", "(")) else text.split(",")
    # A name that starts or ends with a quote or bracket is a literal that did not parse: refuse, never guess.
    if (
        not isinstance(items, (list, tuple))
        or not all(isinstance(item, str) for item in items)
        or any(edge in _LITERAL_EDGES for item in items for edge in item.strip()[:1] + item.strip()[-1:])
    ):
        raise SlipstreamValidationError(
            f"{what} must be a list of {noun}, or a string such as {example}; got {value!r}."
        )
    return tuple(item.strip() for item in items if item.strip())


_LITERAL_EDGES = frozenset("[]()'\"")
#: What a template renders for a missing value (Jinja's None, or JSON's null).
_NOT_GIVEN = frozenset({"", "None", "null"})


def _list_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None  # refused by the caller, with the value shown
