"""Local checks that reject bad input with a clear message before any request is sent."""

from __future__ import annotations

import ast
import json
import re
import uuid
from typing import Any

from airflow_provider_slipstream.exceptions import SlipstreamValidationError

ALLOWED_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".avi", ".mpeg")
#: The API's limit for a direct (multipart) upload.
MAX_DIRECT_UPLOAD_BYTES = 100 * 1024 * 1024
STORAGE_KEY_PREFIX = "video-recognition/"


def _canonical_uuid(value: Any) -> str | None:
    text = value if isinstance(value, str) else ""
    try:
        # A strict round-trip: uuid.UUID alone accepts braces, "urn:uuid:" and missing hyphens.
        canonical = str(uuid.UUID(text))
    except ValueError:
        return None
    return canonical if canonical == text.strip().lower() else None


def validate_job_id(job_id: Any) -> str:
    """Return the canonical job id; anything but a UUID (``../x``, ``abc``, a suffix) is refused."""
    canonical = _canonical_uuid(job_id)
    if canonical is None:
        raise SlipstreamValidationError(
            f"{job_id!r} is not a Slipstream job id: expected a UUID such as "
            "'7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10', as returned by the submit step. "
            "Check the job_id argument or the XCom it is templated from."
        )
    return canonical


def validate_track_id(track_id: Any) -> str:
    """A catalog track id: the UUID in an internal match's ``track.id``."""
    canonical = _canonical_uuid(track_id)
    if canonical is None:
        raise SlipstreamValidationError(
            f"{track_id!r} is not a Slipstream catalog track id: expected a UUID such as "
            "'11111111-1111-1111-1111-111111111111', as an internal match's result['track']['id'] gives it. "
            "Outside matches (competitor, external) have no catalog id."
        )
    return canonical


#: Locales of the Tracks API: only ``en`` appears in the docs; a locale is 2 letters, maybe a region.
_LANGUAGE = re.compile(r"[a-z]{2}(-[a-z]{2})?")


def validate_language(language: Any) -> str:
    if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
        raise SlipstreamValidationError(
            f"{language!r} is not a language code for the Slipstream catalog: use a locale such as 'en'."
        )
    return language


def validate_user_id(user_id: Any) -> str:
    """The end user a license is for (sent as ``X-User-ID``): a non-empty id that fits in a header."""
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not isinstance(user_id, str) or not user_id.strip() or not user_id.isprintable() or not user_id.isascii():
        raise SlipstreamValidationError(
            f"user_id {user_id!r} cannot identify a license's user: pass your end user's id (the uploader of the "
            "video), a non-empty string of printable ASCII characters, e.g. '{{ params.user_id }}'."
        )
    return user_id.strip()


MAX_PROJECT_NAME = 255


def validate_project_name(project_name: Any) -> str | None:
    """An optional project name (at most 255 characters); an empty rendering means none."""
    if project_name is None or (isinstance(project_name, str) and not project_name.strip()):
        return None
    if not isinstance(project_name, str):
        raise SlipstreamValidationError(f"project_name must be a string, got {type(project_name).__name__}.")
    if len(project_name) > MAX_PROJECT_NAME:
        raise SlipstreamValidationError(
            f"project_name is {len(project_name)} characters long; Slipstream accepts at most {MAX_PROJECT_NAME}. "
            "Shorten it."
        )
    return project_name


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
