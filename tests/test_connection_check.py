"""
``SlipstreamHook.test_connection()`` (the UI's Test button, ``airflow connections test``) against
real servers: the simulator, a plain web server that answers 404 to everything, and a port where
nothing listens. And ``aget_config()`` (the triggerer's connection read) on a running event loop.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_slipstream.exceptions import SlipstreamTransientError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.simulator import Fault

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_slipstream.simulator import SimulatorServer

KEY = "sim-partner-key"  # the simulator's default partner key
PROBE_JOB = "00000000-0000-0000-0000-000000000000"
#: The form's own words; a message in them tells the user which field to fix.
FORM_TERMS = ("Base URL", "Partner API key")


class _NotFoundHandler(http.server.BaseHTTPRequestHandler):
    """Any web server that is not Slipstream: 404 to every request, with or without a key."""

    def do_GET(self) -> None:
        self.server.authorization.append(self.headers.get("Authorization"))  # type: ignore[attr-defined]
        body = b"<html><head><title>404 Not Found</title></head><body>nothing here</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def not_found_server() -> Iterator[tuple[str, list[str | None]]]:
    """A plain ``http.server`` on loopback; yields its URL and the Authorization header of each request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFoundHandler)
    server.authorization = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", server.authorization  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def use_conn(monkeypatch: pytest.MonkeyPatch, host: str, password: str = KEY, **extra: Any) -> SlipstreamHook:
    conn = {"conn_type": "slipstream", "host": host, "password": password, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_SLIPSTREAM_DEFAULT", json.dumps(conn))
    return SlipstreamHook()


def check(hook: SlipstreamHook, *fragments: str, secret: str = KEY) -> tuple[bool, str]:
    ok, message = hook.test_connection()
    assert secret not in message
    assert PROBE_JOB not in message  # an internal detail that means nothing in the connection form
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return ok, message


# -- test_connection() -------------------------------------------------------------------


def test_test_connection_accepts_the_simulator_with_one_anonymous_and_one_keyed_read(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The simulator answers like the API: 401 without a key, 404 for an unknown job with one.
    hook = use_conn(monkeypatch, sim_conn.url)

    ok, _ = check(hook, "Base URL", sim_conn.url, "Partner API key", "accepted")

    assert ok is True
    anonymous, keyed = sim_conn.state.requests
    assert (anonymous.method, anonymous.path, anonymous.status) == (
        "GET",
        f"/api/v4/video-recognition/{PROBE_JOB}/",
        401,
    )
    assert "authorization" not in anonymous.headers
    assert (keyed.path, keyed.status, keyed.headers["authorization"]) == (anonymous.path, 404, "Bearer [redacted]")


def test_test_connection_fails_against_a_server_that_answers_404_to_everything(
    not_found_server: tuple[str, list[str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, authorization = not_found_server
    hook = use_conn(monkeypatch, url)

    ok, message = check(hook, "Base URL", url, "not the Slipstream API", "404")

    assert ok is False
    assert "accepted" not in message
    assert authorization == [None]  # refused on the anonymous read: the key never went to that server


def test_test_connection_answers_at_once_when_nothing_listens(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The production retry settings: a test that spent the retry budget would take ~25 s.
    url = f"http://127.0.0.1:{closed_port}"
    hook = use_conn(monkeypatch, url, connect_timeout=2)

    started = time.monotonic()
    ok, _ = check(hook, "Base URL", url, "Could not reach")
    elapsed = time.monotonic() - started

    assert ok is False
    assert elapsed < 2 + 3, f"took {elapsed:.1f} s"


def test_test_connection_makes_no_retries(sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use_conn(monkeypatch, sim_conn.url, max_retries=3, retry_backoff=0.01, retry_backoff_max=0.02)
    sim_conn.state.add_fault(Fault("status", method="GET", status=503, path="/api/v4/video-recognition/*/"))

    ok, _ = check(hook, "Base URL", "503")

    assert ok is False
    assert sim_conn.state.count("GET") == 1


def test_test_connection_speaks_in_the_forms_terms_about_a_wrong_key(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-partner-key-42"
    hook = use_conn(monkeypatch, sim_conn.url, password=wrong)

    ok, message = check(hook, *FORM_TERMS, "403", "Invalid partner API key.", secret=wrong)

    assert ok is False
    assert KEY not in message
    assert "job" not in message.lower()


def test_test_connection_never_shows_a_key_that_the_server_echoes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A misconfigured proxy may echo the request; the message quotes the server's answer, never the key.
    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"detail": f"bad token {self.headers.get('Authorization')}"}).encode()
            self.send_response(401 if self.headers.get("Authorization") is None else 403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        secret = "echoed-partner-key-1234"
        hook = use_conn(monkeypatch, f"http://127.0.0.1:{server.server_port}", password=secret)
        ok, message = check(hook, "Partner API key", "403", secret=secret)
    finally:
        server.shutdown()
        server.server_close()
    assert ok is False
    assert "***" in message


# -- aget_config() on the triggerer's event loop ------------------------------------------------


class LoopGuardComms:
    """
    Stands in for the triggerer's supervisor channel, with its rule: a synchronous ``send`` from
    the event loop's own thread blocks the loop (Airflow 3.0 refuses it outright, 3.3 needs a
    greenback portal). ``asend`` and ``send`` from a worker thread are fine.
    """

    def __init__(self) -> None:
        self.on_loop: list[str] = []
        self.delivered: list[str] = []

    def send(self, msg: Any) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.delivered.append(type(msg).__name__)
            return None
        self.on_loop.append(type(msg).__name__)
        raise RuntimeError("a synchronous supervisor call on the event loop's thread")

    async def asend(self, msg: Any) -> None:
        self.delivered.append(type(msg).__name__)


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> LoopGuardComms:
    from airflow.sdk.execution_time import task_runner

    comms = LoopGuardComms()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    return comms


EXTRA = {"timeout": 7, "max_retries": 2, "competitor_labels": "Artlist, Epidemic Sound"}


def test_aget_config_works_inside_a_running_event_loop(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fails on Airflow 3.0 without the compat helper: its BaseHook has no aget_connection.
    hook = use_conn(monkeypatch, sim_conn.url, **EXTRA)

    config = asyncio.run(hook.aget_config())

    assert config == SlipstreamHook().config
    assert (config.read_timeout, config.retry.max_retries) == (7.0, 2)
    assert config.competitor_labels == ("Artlist", "Epidemic Sound")


def test_aget_config_makes_no_synchronous_supervisor_call_on_the_event_loop(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch, supervisor: LoopGuardComms
) -> None:
    hook = use_conn(monkeypatch, sim_conn.url, **EXTRA)

    config = asyncio.run(hook.aget_config())

    assert supervisor.on_loop == []
    assert config.read_timeout == 7.0
    assert "MaskSecret" in supervisor.delivered  # the key and the extra still reach the supervisor's masker


def test_aget_config_reads_connection_and_extra_with_the_async_helpers(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat import connection as compat

    calls: list[str] = []

    def spy(name: str) -> Any:
        real = getattr(compat, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return await real(*args, **kwargs)

        return wrapper

    for name in ("get_async_connection", "get_async_extra_dejson"):
        monkeypatch.setattr(compat, name, spy(name))
    hook = use_conn(monkeypatch, sim_conn.url, **EXTRA)

    asyncio.run(hook.aget_config())

    assert calls == ["get_async_connection", "get_async_extra_dejson"]


# -- no traceback local holds the key ---------------------------------------------------------------


def _locals_showing(exc: BaseException | None, secret: str) -> list[str]:
    """The frame locals, across the exception chain a traceback prints, whose repr shows ``secret``
    (Airflow 3.0's console prints every frame's locals, unmasked)."""
    found: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            found += [
                f"{tb.tb_frame.f_code.co_name}: {name}"
                for name, value in tb.tb_frame.f_locals.items()
                if secret in repr(value)
            ]
            tb = tb.tb_next
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return found


#: A module constant, not a local: the test's own frame is part of the traceback it inspects.
NETWORK_KEY = "sk-live-NETWORK-9d2c"


@pytest.mark.parametrize("path", ["worker", "triggerer"])
def test_a_network_failure_shows_the_key_in_no_traceback_local(
    monkeypatch: pytest.MonkeyPatch, closed_port: int, path: str
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    hook = use_conn(monkeypatch, url, password=NETWORK_KEY, max_retries=0, connect_timeout=1)

    async def poll() -> None:
        async with hook.async_client() as client:
            await hook.aget_job(PROBE_JOB, client)

    def fetch() -> None:
        hook.get_job(PROBE_JOB) if path == "worker" else asyncio.run(poll())

    with pytest.raises(SlipstreamTransientError) as err:
        fetch()
    assert NETWORK_KEY not in str(err.value)
    assert _locals_showing(err.value, NETWORK_KEY) == []
