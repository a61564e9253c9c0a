"""Run the simulator in a background thread: uvicorn on two loopback sockets bound here.

Binding the sockets ourselves (port 0 = any free port) means the ports are known before
the thread starts and a bind failure raises in the caller. The API and the fake S3 live on
different ports, so "the partner key never reaches the upload host" can be checked.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING

import uvicorn

from airflow_provider_slipstream.simulator.app import create_app
from airflow_provider_slipstream.simulator.s3 import create_s3_app
from airflow_provider_slipstream.simulator.state import SimulatorState

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from starlette.types import ASGIApp

    from airflow_provider_slipstream.simulator.faults import CloseConnection

HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 5.0
# Bounds stop() when a request is still held open (a delay fault, a slow upload).
GRACEFUL_SHUTDOWN_SECONDS = 1


def _bind(port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: with protocol 0 asyncio does not set TCP_NODELAY on accepted
    # connections, and every keep-alive response then waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


class _Listener:
    """One uvicorn server on one socket."""

    def __init__(self, port: int, build_app: Callable[[CloseConnection], ASGIApp], access_log: bool) -> None:
        self.socket = _bind(port)
        config = uvicorn.Config(
            build_app(self.close_connection),
            lifespan="off",
            ws="none",
            log_config=None,  # leave the host process's logging configuration alone
            access_log=access_log,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        self.server = uvicorn.Server(config)

    @property
    def port(self) -> int:
        return int(self.socket.getsockname()[1])

    def close_connection(self, client: tuple[str, int]) -> bool:
        # Called on the server's loop by a `drop` fault: ASGI offers no way to cut a
        # connection, so find the protocol serving this client and close its transport.
        for connection in list(self.server.server_state.connections):
            if getattr(connection, "client", None) == client:
                connection.transport.close()
                return True
        return False


class SimulatorServer:
    """The Slipstream API simulator on 127.0.0.1, in a background thread.

    Use as a context manager or call `start()`/`stop()`. `port`/`s3_port` 0 pick free ports.
    `stop()` then `start()` again is an outage: clients are refused meanwhile, and the server comes
    back on the same ports with the same state (jobs, uploads, counters), as a restarted API would.
    """

    def __init__(
        self,
        state: SimulatorState | None = None,
        *,
        port: int = 0,
        s3_port: int = 0,
        access_log: bool = False,
    ) -> None:
        self._state = state if state is not None else SimulatorState()
        self._ports = (port, s3_port)
        self._access_log = access_log
        self._listeners: list[_Listener] = []
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def state(self) -> SimulatorState:
        return self._state

    @property
    def url(self) -> str:
        """The API base URL, e.g. `http://127.0.0.1:PORT`."""
        return f"http://{HOST}:{self._listener(0).port}"

    @property
    def s3_url(self) -> str:
        """The base URL of the fake S3 host that presigned upload URLs point to."""
        return f"http://{HOST}:{self._listener(1).port}"

    def open_connections(self) -> int:
        """Client connections the API listener holds open right now (a client that leaks them keeps this up)."""
        return len(self._listener(0).server.server_state.connections)

    def _listener(self, index: int) -> _Listener:
        if not self._listeners:
            raise RuntimeError("The simulator is not running; call start() first.")
        return self._listeners[index]

    def start(self) -> SimulatorServer:
        if self._thread is not None:
            raise RuntimeError("The simulator is already running.")
        api_port, s3_port = self._ports
        api = _Listener(api_port, lambda close: create_app(self._state, close_connection=close), self._access_log)
        try:
            s3 = _Listener(s3_port, lambda close: create_s3_app(self._state, close_connection=close), self._access_log)
        except OSError:
            api.socket.close()
            raise
        self._listeners = [api, s3]
        # A later start() (after an outage) binds these same ports again.
        self._ports = (api.port, s3.port)
        self._state.s3_base_url = self.s3_url
        self._error = None
        self._thread = threading.Thread(target=self._run, name="slipstream-simulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not all(listener.server.started for listener in self._listeners):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("The simulator failed to start.") from self._error
            time.sleep(0.002)
        return self

    def _run(self) -> None:
        async def serve() -> None:
            await asyncio.gather(*(lis.server.serve(sockets=[lis.socket]) for lis in self._listeners))

        try:
            asyncio.run(serve())
        except BaseException as exc:  # uvicorn reports a failed startup with SystemExit
            self._error = exc

    def stop(self) -> None:
        """Stop serving, wait for the thread and close both sockets; safe to call twice."""
        if self._thread is None:
            return
        for listener in self._listeners:
            listener.server.should_exit = True
        self._thread.join(timeout=STARTUP_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            for listener in self._listeners:
                listener.server.force_exit = True
            self._thread.join(timeout=STARTUP_TIMEOUT_SECONDS)
        for listener in self._listeners:
            listener.socket.close()
        self._listeners, self._thread = [], None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
