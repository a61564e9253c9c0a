"""The simulated S3 endpoint that receives presigned uploads, on its own socket.

It answers the way S3 does for the cases a client meets: XML error bodies, 400 for a second
auth mechanism, 403 for an expired or bad signature (the Content-Type is part of what is
signed, so a different one is a bad signature), 411 without a Content-Length.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from xml.sax.saxutils import escape

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from airflow_provider_slipstream.simulator.faults import CloseConnection, FaultMiddleware
from airflow_provider_slipstream.simulator.state import S3_PREFIX, SimulatorState

TWO_AUTH_MECHANISMS = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string "
    "parameter or the Authorization header should be specified"
)
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your key and signing method."
)


def s3_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId><HostId>simulator</HostId></Error>"
    )
    return Response(body, status, media_type="application/xml")


def _expired(amz_date: str, expires: str) -> bool:
    issued = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    return dt.datetime.now(dt.timezone.utc) >= issued + dt.timedelta(seconds=int(expires))


def create_s3_app(state: SimulatorState, *, close_connection: CloseConnection | None = None) -> Starlette:
    async def put_object(request: Request) -> Response:
        if "authorization" in request.headers:
            return s3_error(400, "InvalidArgument", TWO_AUTH_MECHANISMS)
        path = request.url.path
        if not path.startswith(S3_PREFIX):
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        storage_key = path[len(S3_PREFIX) :]
        query = request.query_params
        signature, amz_date, expires = (query.get(f"X-Amz-{name}", "") for name in ("Signature", "Date", "Expires"))
        try:
            expired = _expired(amz_date, expires)
        except ValueError:
            return s3_error(403, "AccessDenied", "Query-string authentication requires X-Amz-Date and X-Amz-Expires.")
        if expired:
            return s3_error(403, "AccessDenied", "Request has expired")
        expected = state.sign(storage_key, amz_date, expires, request.headers.get("content-type", ""))
        if request.method != "PUT" or not hmac.compare_digest(expected, signature):
            return s3_error(403, "SignatureDoesNotMatch", BAD_SIGNATURE)
        if "content-length" not in request.headers:
            return s3_error(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        if not state.claim_upload(storage_key):
            return s3_error(403, "AccessDenied", "The presigned URL has already been used.")
        # Streamed: size and hashes without holding the file in memory.
        sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        try:
            async for chunk in request.stream():
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        except ClientDisconnect:
            state.finish_upload(storage_key, None)  # the URL stays usable, as nothing was stored
            return s3_error(400, "IncompleteBody", "The request body terminated unexpectedly.")
        state.finish_upload(storage_key, size, sha256.hexdigest())
        return Response(status_code=200, headers={"ETag": f'"{md5.hexdigest()}"'})

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE"]
    return Starlette(
        routes=[Route("/{path:path}", put_object, methods=methods)],
        middleware=[Middleware(FaultMiddleware, state=state, server="s3", close_connection=close_connection)],
    )
