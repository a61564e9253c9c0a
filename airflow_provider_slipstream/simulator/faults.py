"""ASGI middleware that logs every request and applies the fault-injection rules.

It wraps both the API app and the S3 app, outside their routing, so a fault can hit any
path (even one that would 404) and a faulted request is logged like any other.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Literal

from starlette.responses import Response

from airflow_provider_slipstream.simulator.state import Fault, RequestRecord, SimulatorState, redact_headers

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Closes the server-side connection of the client at this address; False if not found.
CloseConnection = Callable[[tuple[str, int]], bool]

CONTROL_PREFIX = "/_sim/"
# The start of a plausible job body: a client that reads it sees a truncated response.
DROP_PREFIX = b'{"job_id": "'
DROP_DECLARED_LENGTH = b"1000"
MALFORMED_BODY = '{"job_id": "7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10", "status": proc'
HTML_PAGE = (
    "<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _default_detail(status: int, retry_after: str | None) -> dict[str, str]:
    if status == 429:
        # DRF's own throttling message, which names the wait when it knows it.
        wait = f" Expected available in {retry_after} seconds." if retry_after and retry_after.isdigit() else ""
        return {"detail": f"Request was throttled.{wait}"}
    return {"detail": f"{_phrase(status)}."}


def fault_response(fault: Fault) -> Response:
    """The canned response of a `status`, `malformed` or `html` fault."""
    headers = dict(fault.headers)
    if fault.kind == "malformed":
        text = fault.body if isinstance(fault.body, str) else MALFORMED_BODY
        return Response(text, fault.status or 200, headers, fault.content_type or "application/json")
    if fault.kind == "html":
        status = fault.status or 502
        page = fault.body if isinstance(fault.body, str) else HTML_PAGE.format(code=status, phrase=_phrase(status))
        return Response(page, status, headers, fault.content_type or "text/html")
    status = fault.status or 503
    if isinstance(fault.body, str):
        return Response(fault.body, status, headers, fault.content_type or "text/plain")
    retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    detail = fault.body if fault.body is not None else _default_detail(status, retry_after)
    return Response(json.dumps(detail), status, headers, fault.content_type or "application/json")


class FaultMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        state: SimulatorState,
        server: Literal["api", "s3"],
        close_connection: CloseConnection | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.server: Literal["api", "s3"] = server
        self.close_connection = close_connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        fault = self.state.take_fault(method, path)
        client = scope.get("client")
        record = RequestRecord(
            self.server,
            method,
            path,
            redact_headers(scope["headers"]),
            fault.kind if fault else None,
            client=None if client is None else (client[0], client[1]),
        )
        self.state.record(record)

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                if fault is not None and fault.kind == "hold":
                    await asyncio.sleep(fault.seconds)
                record.status = message["status"]
            await send(message)

        if fault is None or fault.kind in ("delay", "hold"):
            if fault is not None and fault.kind == "delay":  # a hold waits after handling, in send_recorded
                await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send_recorded)
        elif fault.kind == "drop":
            await self._drop(fault, scope, receive, send_recorded)
        else:
            await fault_response(fault)(scope, receive, send_recorded)

    async def _drop(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        """Promise 1000 bytes, send a few, then close: the client sees an incomplete read."""
        headers = [(b"content-type", b"application/json"), (b"content-length", DROP_DECLARED_LENGTH)]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in fault.headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": DROP_PREFIX, "more_body": True})
        client = scope.get("client")
        if self.close_connection is None or client is None or not self.close_connection(tuple(client)):
            # Without a handle on the connection, returning mid-response makes the server
            # close it too (uvicorn logs an error about the incomplete response).
            return
        # Wait until the server has seen the connection go, so it finds nothing to clean up.
        while (await receive())["type"] != "http.disconnect":
            pass
