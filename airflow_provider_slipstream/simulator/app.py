"""The simulated Slipstream API (and the /_sim/ control endpoints) as FastAPI.

AudioVerify (submit, upload URL, job), one catalog track and license generation.

Response bodies copy the real service's Django REST framework conventions: `{"detail": ...}`
or field-keyed lists, an HTML page for an unknown URL, no redirect for a missing slash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from airflow_provider_slipstream.simulator.catalog import canonical_id, find_track
from airflow_provider_slipstream.simulator.faults import CloseConnection, FaultMiddleware
from airflow_provider_slipstream.simulator.licenses import QuotaExceeded
from airflow_provider_slipstream.simulator.scenarios import choose_scenario
from airflow_provider_slipstream.simulator.state import (
    JOB_ROUTE,
    LICENSE_PATH,
    S3_PREFIX,
    STORAGE_KEY_PREFIX,
    SUBMIT_PATH,
    TRACK_ROUTE,
    UPLOAD_URL_PATH,
    Fault,
    SimulatorState,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "avi": "video/x-msvideo", "mpeg": "video/mpeg"}
EXACTLY_ONE = "Provide exactly one of `file` or `storage_key`."
BAD_FILE_EXTENSION = "File extension is not allowed. Allowed extensions are: mp4, mov, avi, mpeg."
BAD_FILENAME_EXTENSION = "File extension must be one of: mov, mpeg, mp4, avi."
NOT_A_FILE = "The submitted data was not a file. Check the encoding type on the form."
NOT_FOUND = {"detail": "Not found."}
# Django's page for a URL that matches no route (DEBUG off).
DJANGO_404 = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n'
    "  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n"
)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
CHUNK_BYTES = 1024 * 1024
CONFIG_FIELDS = frozenset(
    (
        "api_key",
        "queued_seconds",
        "processing_seconds",
        "job_ttl_seconds",
        "upload_url_expires_in",
        "max_file_bytes",
        "license_daily_limit",
        "license_monthly_limit",
        "license_daily_used",
        "license_monthly_used",
    )
)
# Only `en` appears in the docs; other locales are treated as unknown.
LANGUAGES = frozenset(("en",))
PROJECT_NAME_MAX = 255


class ApiError(Exception):
    """An error response with a DRF-style body."""

    def __init__(self, status: int, body: Mapping[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def _extension(filename: str) -> str:
    return filename.rpartition(".")[2].lower() if "." in filename else ""


def _size_message(limit: int) -> str:
    mib = 1024 * 1024
    return (
        f"File size cannot exceed {limit // mib} MB." if limit % mib == 0 else f"File size cannot exceed {limit} bytes."
    )


def _string_field(data: Mapping[str, Any], name: str) -> str:
    """DRF CharField validation of a required field."""
    if name not in data:
        raise ApiError(400, {name: ["This field is required."]})
    value = data[name]
    if value is None:
        raise ApiError(400, {name: ["This field may not be null."]})
    if not isinstance(value, str):
        raise ApiError(400, {name: ["Not a valid string."]})
    if not value:
        raise ApiError(400, {name: ["This field may not be blank."]})
    return value


def _license_fields(data: Mapping[str, Any]) -> tuple[str, str | None]:
    """The canonical `track_id` and the `project_name` of a license request, as DRF validates them."""
    errors: dict[str, list[str]] = {}
    raw = data.get("track_id")
    track_id = canonical_id(raw) if isinstance(raw, str) else None
    if "track_id" not in data:
        errors["track_id"] = ["This field is required."]
    elif raw is None:
        errors["track_id"] = ["This field may not be null."]
    elif track_id is None:
        errors["track_id"] = ["Must be a valid UUID."]
    project_name = data.get("project_name")
    if project_name is not None and not isinstance(project_name, str):
        errors["project_name"] = ["Not a valid string."]
    elif project_name is not None and len(project_name) > PROJECT_NAME_MAX:
        errors["project_name"] = [f"Ensure this field has no more than {PROJECT_NAME_MAX} characters."]
    if errors or track_id is None:
        raise ApiError(400, errors)
    return track_id, project_name


async def _parse_body(request: Request) -> Mapping[str, Any]:
    """The request data as DRF's JSON, form and multipart parsers would give it."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media in FORM_TYPES:
        try:
            return await request.form()
        except (MultiPartException, StarletteHTTPException) as exc:
            message = exc.detail if isinstance(exc, StarletteHTTPException) else exc.message
            raise ApiError(400, {"detail": f"Multipart form parse error - {message}"}) from exc
    raw = await request.body()
    if not raw:
        return {}
    if media != "application/json":
        raise ApiError(415, {"detail": f'Unsupported media type "{media}" in request.'})
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, {"detail": f"JSON parse error - {exc}"}) from exc
    if not isinstance(data, dict):
        raise ApiError(
            400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]}
        )
    return data


async def _hash_upload(upload: UploadFile) -> tuple[int, str]:
    """Size and sha256 of an uploaded file, read in chunks (it is spooled to disk)."""
    digest, size = hashlib.sha256(), 0
    while chunk := await upload.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def create_app(state: SimulatorState, *, close_connection: CloseConnection | None = None) -> FastAPI:
    """The API app; `close_connection` lets `drop` faults cut the connection cleanly."""
    app = FastAPI(
        title="Slipstream AudioVerify simulator",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
    )
    app.add_middleware(FaultMiddleware, state=state, server="api", close_connection=close_connection)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return JSONResponse(dict(exc.body), exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return HTMLResponse(DJANGO_404, 404)
        if exc.status_code == 405:
            return JSONResponse({"detail": f'Method "{request.method}" not allowed.'}, 405, exc.headers)
        return JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)

    def authenticate(request: Request) -> None:
        parts = request.headers.get("authorization", "").split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise ApiError(
                401, {"detail": "Authentication credentials were not provided."}, {"WWW-Authenticate": "Bearer"}
            )
        if not state.key_matches(parts[1]):
            raise ApiError(403, {"detail": "Invalid partner API key."})

    async def submit_file(upload: UploadFile) -> dict[str, Any]:
        filename = upload.filename or ""
        if not filename:
            raise ApiError(400, {"file": ["No filename could be determined."]})
        size, sha256 = await _hash_upload(upload)
        if size == 0:
            raise ApiError(400, {"file": ["The submitted file is empty."]})
        errors = []
        if _extension(filename) not in CONTENT_TYPES:
            errors.append(BAD_FILE_EXTENSION)
        if size > state.max_file_bytes:
            errors.append(_size_message(state.max_file_bytes))
        if errors:
            raise ApiError(400, {"file": errors})
        return state.create_job(filename, sha256, choose_scenario(filename, sha256))

    def submit_storage_key(storage_key: Any) -> dict[str, Any]:
        if not isinstance(storage_key, str):
            raise ApiError(400, {"storage_key": ["Not a valid string."]})
        if not storage_key.startswith(STORAGE_KEY_PREFIX):
            raise ApiError(400, {"storage_key": [f"Storage key must start with `{STORAGE_KEY_PREFIX}`."]})
        upload = state.uploaded(storage_key)
        if upload is None:
            raise ApiError(400, {"storage_key": ["No uploaded file was found for this storage key."]})
        filename = storage_key.rpartition("/")[2]
        return state.create_job(filename, upload.sha256, choose_scenario(filename, upload.sha256))

    @app.post(SUBMIT_PATH)
    async def submit(request: Request) -> Response:
        authenticate(request)
        try:
            data = await _parse_body(request)
            if ("file" in data) == ("storage_key" in data):
                raise ApiError(400, {"detail": EXACTLY_ONE})
            if "storage_key" in data:
                job = submit_storage_key(data["storage_key"])
            elif isinstance(data["file"], UploadFile):
                job = await submit_file(data["file"])
            else:
                raise ApiError(400, {"file": [NOT_A_FILE]})
        finally:
            await request.close()  # deletes the spooled upload
        return JSONResponse(job, 201)

    @app.post(UPLOAD_URL_PATH)
    async def upload_url(request: Request) -> Response:
        authenticate(request)
        try:
            filename = _string_field(await _parse_body(request), "filename")
        finally:
            await request.close()
        content_type = CONTENT_TYPES.get(_extension(filename))
        if content_type is None:
            raise ApiError(400, {"filename": [BAD_FILENAME_EXTENSION]})
        upload = state.issue_upload(filename.replace("\\", "/").rpartition("/")[2], content_type)
        amz_date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        expires = str(state.upload_url_expires_in)
        query = urlencode(
            {
                "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                "X-Amz-Date": amz_date,
                "X-Amz-Expires": expires,
                "X-Amz-SignedHeaders": "content-type;host",
                "X-Amz-Signature": state.sign(upload.storage_key, amz_date, expires, content_type),
            }
        )
        body = {
            "upload_url": f"{state.s3_base_url}{S3_PREFIX}{quote(upload.storage_key)}?{query}",
            "storage_key": upload.storage_key,
            "expires_in": int(expires),
            "content_type": content_type,
        }
        return JSONResponse(body, 201)

    @app.get(JOB_ROUTE)
    async def get_job(job_id: str, request: Request) -> Response:
        authenticate(request)
        try:
            canonical = str(uuid.UUID(job_id))
        except ValueError:
            raise ApiError(404, NOT_FOUND) from None
        body = state.job_body(canonical)
        if body is None:
            raise ApiError(404, NOT_FOUND)
        return JSONResponse(body)

    @app.get(TRACK_ROUTE)
    async def get_track(language: str, track_id: str, request: Request) -> Response:
        authenticate(request)
        track = find_track(track_id) if language in LANGUAGES else None
        if track is None:
            raise ApiError(404, NOT_FOUND)
        return JSONResponse(track)

    @app.post(LICENSE_PATH)
    async def generate_license(request: Request) -> Response:
        authenticate(request)
        # HTTP strips a header value's surrounding whitespace, so blank arrives as empty.
        user_id = request.headers.get("x-user-id", "")
        if not user_id:
            raise ApiError(400, {"detail": "X-User-ID header is required."})
        try:
            track_id, project_name = _license_fields(await _parse_body(request))
        finally:
            await request.close()
        track = find_track(track_id)
        if track is None:
            raise ApiError(404, NOT_FOUND)
        try:
            body = state.generate_license(track, user_id, project_name)
        except QuotaExceeded as exc:
            raise ApiError(429, exc.body, {"Retry-After": str(exc.retry_after)}) from None
        return JSONResponse(body)

    # -- control endpoints: no auth, not logged, never faulted ---------------------------

    async def control_json(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise ApiError(400, {"detail": f"JSON parse error - {exc}"}) from exc
        if not isinstance(data, dict):
            raise ApiError(400, {"detail": "Expected a JSON object."})
        return data

    @app.get("/_sim/stats")
    async def stats() -> Response:
        return JSONResponse(state.stats())

    @app.post("/_sim/reset")
    async def reset() -> Response:
        state.reset()
        return Response(status_code=204)

    @app.get("/_sim/faults")
    async def list_faults() -> Response:
        return JSONResponse([dataclasses.asdict(fault) for fault in state.faults])

    @app.post("/_sim/faults")
    async def add_fault(request: Request) -> Response:
        try:
            fault = Fault(**await control_json(request))
        except (TypeError, ValueError) as exc:
            raise ApiError(400, {"detail": str(exc)}) from exc
        state.add_fault(fault)
        return JSONResponse(dataclasses.asdict(fault), 201)

    @app.delete("/_sim/faults")
    async def clear_faults() -> Response:
        state.clear_faults()
        return Response(status_code=204)

    @app.put("/_sim/config")
    async def configure(request: Request) -> Response:
        changes = await control_json(request)
        unknown = set(changes) - CONFIG_FIELDS
        if unknown:
            raise ApiError(400, {"detail": f"Unknown config fields: {', '.join(sorted(unknown))}."})
        try:
            state.configure(**changes)
        except ValueError as exc:
            raise ApiError(400, {"detail": str(exc)}) from exc
        return JSONResponse(state.config())

    @app.post("/_sim/jobs/{job_id}/expire")
    async def expire(job_id: str) -> Response:
        if not state.expire_job(job_id):
            raise ApiError(404, NOT_FOUND)
        return Response(status_code=204)

    return app
