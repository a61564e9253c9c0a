"""The triggers' shared HTTP session: one per event loop, bounded, closed by its last user, no leaks.

Against the real simulator, which records the client address (one per connection) of every request
and reports the connections it holds open, so a leaked or per-trigger client shows at the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_slipstream import _async_session
from airflow_provider_slipstream._async_session import MAX_CONNECTIONS, open_sessions
from airflow_provider_slipstream.exceptions import SlipstreamApiError, SlipstreamTransientError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.simulator import Fault
from airflow_provider_slipstream.triggers.slipstream import SlipstreamJobTrigger
from tests.conftest import FAST_RETRY_EXTRA
from tests.contract import EXPECTED_TRACKS, expected_result

if TYPE_CHECKING:
    from airflow_provider_slipstream.simulator import SimulatorServer

JOB_GLOB = "/api/v4/video-recognition/*/"
KINDS = list(EXPECTED_TRACKS)
#: A safety net so a wedged trigger fails the test instead of hanging it; not an assertion on speed.
HANG_GUARD_SECONDS = 60.0


def create_jobs(sim: SimulatorServer, count: int) -> list[tuple[str, str]]:
    """(job id, match kind) pairs, created in the simulator's state (no upload to pay for)."""
    jobs = []
    for i in range(count):
        kind = KINDS[i % 4]
        scenario = "no_music" if kind == "no_match" else kind  # the simulator's name for that outcome
        jobs.append((sim.state.create_job(f"clip{i}.mp4", f"{i:064x}", scenario)["job_id"], kind))
    return jobs


async def wait_for(job_id: str, poll_interval: float = 0.3) -> list[dict[str, Any]]:
    return [event.payload async for event in SlipstreamJobTrigger(job_id, poll_interval=poll_interval).run()]


async def until_server_holds_no_connection(sim: SimulatorServer) -> int:
    """The simulator's open connections once they have had a moment to close (0 unless a client leaks)."""
    for _ in range(100):
        if sim.open_connections() == 0:
            return 0
        await asyncio.sleep(0.02)
    return sim.open_connections()


def test_300_triggers_share_one_bounded_pool_that_closes_with_the_last(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Queued long enough that every trigger is still waiting when the last of 300 has started (which
    # takes over 2 s on Airflow 3.0, whose connection read goes through a thread per trigger).
    sim_conn.state.configure(queued_seconds=4.0, processing_seconds=0.5)
    jobs = create_jobs(sim_conn, 300)
    sessions_made = counting_new_session(monkeypatch)

    async def main() -> tuple[list[list[dict[str, Any]]], int, int]:
        events = await asyncio.wait_for(asyncio.gather(*(wait_for(j) for j, _ in jobs)), HANG_GUARD_SECONDS)
        # Still inside the loop: the last trigger's exit has closed the session and its connections.
        return events, open_sessions(), await until_server_holds_no_connection(sim_conn)

    events, sessions_left, connections_left = asyncio.run(main())

    for (job_id, kind), job_events in zip(jobs, events, strict=True):
        assert job_events == [{"status": "success", "job_id": job_id, "result": expected_result(job_id, kind)}]
    polls, connections = sim_conn.state.count("GET", JOB_GLOB), sim_conn.state.connections(JOB_GLOB)
    print(f"\n300 triggers: {polls} polls over {connections} connections, {len(sessions_made)} session(s)")
    assert len(sessions_made) == 1
    assert polls > len(jobs)  # they waited together, polling more than once each
    # One client per trigger would have opened at least 300.
    assert connections <= MAX_CONNECTIONS
    assert (sessions_left, connections_left) == (0, 0)


def test_triggers_starting_stopping_and_cancelled_at_any_time_share_the_session_safely(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The triggerer starts triggers as tasks defer and cancels them when a task is cleared or moves."""
    sim_conn.state.configure(queued_seconds=0.6, processing_seconds=0.3)
    sessions_made = counting_new_session(monkeypatch)

    async def main() -> dict[str, Any]:
        first, late, cancelled = create_jobs(sim_conn, 40), create_jobs(sim_conn, 40), create_jobs(sim_conn, 20)
        waits = {job_id: asyncio.create_task(wait_for(job_id, 0.1)) for job_id, _ in first + cancelled}
        await asyncio.sleep(0.3)
        for job_id, _ in cancelled:  # mid-wait, while others keep polling over the same session
            waits.pop(job_id).cancel()
        await asyncio.sleep(0.2)
        waits |= {job_id: asyncio.create_task(wait_for(job_id, 0.1)) for job_id, _ in late}
        done = await asyncio.wait_for(asyncio.gather(*waits.values()), HANG_GUARD_SECONDS)
        events = dict(zip(waits, done, strict=True))
        between = open_sessions(), await until_server_holds_no_connection(sim_conn)
        # Idle, then a new trigger: a new session, which closes again after it.
        ((again, kind),) = create_jobs(sim_conn, 1)
        events[again] = await wait_for(again, 0.1)
        expected = {job_id: kind for job_id, kind in first + late} | {again: kind}
        after = open_sessions(), await until_server_holds_no_connection(sim_conn)
        return {"events": events, "expected": expected, "between": between, "after": after}

    outcome = asyncio.run(main())

    assert outcome["events"] == {
        job_id: [{"status": "success", "job_id": job_id, "result": expected_result(job_id, kind)}]
        for job_id, kind in outcome["expected"].items()
    }
    assert len(sessions_made) == 2
    assert outcome["between"] == (0, 0)
    assert outcome["after"] == (0, 0)


def test_sessions_are_per_event_loop(sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two loops (as in two triggerer processes, or a test next to a triggerer) never share a session."""
    sim_conn.state.configure(queued_seconds=0.2, processing_seconds=0.2)
    sessions_made = counting_new_session(monkeypatch)
    (one, kind_one), (two, kind_two) = create_jobs(sim_conn, 2)
    assert asyncio.run(wait_for(one))[0]["result"] == expected_result(one, kind_one)
    assert asyncio.run(wait_for(two))[0]["result"] == expected_result(two, kind_two)
    assert len(sessions_made) == 2


PROXY_CASES = {
    "HTTP_PROXY": ({"HTTP_PROXY": "{proxy}"}, False),
    "ALL_PROXY only": ({"ALL_PROXY": "{proxy}"}, False),
    "NO_PROXY names the host": ({"HTTP_PROXY": "{proxy}", "NO_PROXY": "127.0.0.1"}, True),
    "NO_PROXY as a CIDR range": ({"HTTP_PROXY": "{proxy}", "NO_PROXY": "127.0.0.0/8"}, True),
    "NO_PROXY names another host": ({"HTTP_PROXY": "{proxy}", "NO_PROXY": "example.invalid"}, False),
}


@pytest.mark.parametrize("case", list(PROXY_CASES))
def test_the_trigger_picks_the_proxy_the_worker_picks(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch, closed_port: int, case: str
) -> None:
    """Same environment, same route: a proxy the worker uses, the trigger uses; one it skips, it skips."""
    env, bypassed = PROXY_CASES[case]
    proxy = f"http://127.0.0.1:{closed_port}"  # a proxy where nothing listens
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(proxy=proxy))
    _async_session.proxy_for.cache_clear()
    sim_conn.state.configure(queued_seconds=0.0, processing_seconds=0.0)
    ((job_id, kind),) = create_jobs(sim_conn, 1)
    trigger = SlipstreamJobTrigger(job_id, poll_interval=0.1, keep_waiting_on_transient=False)

    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    try:
        (event,) = asyncio.run(run())
    finally:
        _async_session.proxy_for.cache_clear()
    try:
        worker: str = SlipstreamHook().get_job(job_id).status
    except SlipstreamTransientError as exc:
        worker = type(exc).__name__
    if bypassed:
        assert event == {"status": "success", "job_id": job_id, "result": expected_result(job_id, kind)}
        assert worker == "completed"
    else:  # both went to the (dead) proxy, never to the simulator
        assert (event["status"], event["error"]) == ("error", SlipstreamTransientError.__name__)
        assert worker == SlipstreamTransientError.__name__
        assert sim_conn.state.count("GET", JOB_GLOB) == 0


def test_a_socks_proxy_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5h://127.0.0.1:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    _async_session.proxy_for.cache_clear()
    try:
        with pytest.raises(SlipstreamApiError, match="only http:// and https:// proxies"):
            _async_session.proxy_for("https://api.slipstreammusic.com")
    finally:
        _async_session.proxy_for.cache_clear()


def test_a_long_response_header_is_read_as_the_worker_reads_it(sim_conn: SimulatorServer) -> None:
    """A gateway's 9 KiB header (a CSP, a cookie) is no outage on the triggerer: both paths get the job."""
    ((job_id, _),) = create_jobs(sim_conn, 1)
    body = {"job_id": job_id, "status": "completed", "track": None}
    for _ in range(2):
        sim_conn.state.add_fault(
            Fault(
                "status",
                path=f"/api/v4/video-recognition/{job_id}/",
                method="GET",
                status=200,
                body=body,
                headers={"Content-Security-Policy": "x" * 9000},
                remaining=1,
            )
        )
    trigger = SlipstreamJobTrigger(job_id, poll_interval=0.1, keep_waiting_on_transient=False)

    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(run())
    assert event["status"] == "success", event
    assert event["result"]["match"] == "no_match"
    assert SlipstreamHook().get_job(job_id).status == "completed"


def test_a_queue_for_the_pool_does_not_carry_triggers_past_their_deadline(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 triggers share 4 connections while every answer hangs: each still ends near its own deadline."""
    monkeypatch.setattr(_async_session, "MAX_CONNECTIONS", 4)
    extra = {**FAST_RETRY_EXTRA, "timeout": 1, "max_retries": 0}
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLIPSTREAM_DEFAULT",
        json.dumps(
            {"conn_type": "slipstream", "host": sim_conn.url, "password": sim_conn.state.api_key, "extra": extra}
        ),
    )
    jobs = create_jobs(sim_conn, 40)
    sim_conn.state.add_fault(Fault("delay", path="/api/v4/video-recognition/", method="GET", seconds=5))
    deadline = time.time() + 1.5

    async def one(job_id: str) -> tuple[dict[str, Any], float]:
        trigger = SlipstreamJobTrigger(job_id, poll_interval=0.2, deadline=deadline)
        (event,) = [e.payload async for e in trigger.run()]
        return event, time.time() - deadline

    async def main() -> list[tuple[dict[str, Any], float]]:
        return await asyncio.wait_for(asyncio.gather(*(one(j) for j, _ in jobs)), HANG_GUARD_SECONDS)

    outcomes = asyncio.run(main())

    assert all(event["error"] == "SlipstreamJobTimeoutError" for event, _ in outcomes)
    late = max(lateness for _, lateness in outcomes)
    # A last attempt may take its pool wait and its read (1 s each); queueing behind 40 / 4 hung
    # answers would make it some 10 s.
    assert late < 3.0, f"the last trigger ended {late:.1f} s after its deadline"


def counting_new_session(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every session made from here on, in order."""
    made: list[Any] = []
    original = _async_session._new_session

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(_async_session, "_new_session", counted)
    return made


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_triggers_trust_the_ca_bundle_the_workers_trust(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, variable: str
) -> None:
    """A private CA (or a TLS-inspecting proxy's) set for requests is trusted on the triggerer too."""
    import certifi

    bundle = tmp_path / "private-ca.pem"
    first = certifi.contents().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    bundle.write_text(first)  # one CA only, so that the context provably loaded this file
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(bundle))
    _async_session._ssl_context.cache_clear()
    try:
        assert len(_async_session._ssl_context().get_ca_certs()) == 1
        monkeypatch.delenv(variable)
        _async_session._ssl_context.cache_clear()
        assert len(_async_session._ssl_context().get_ca_certs()) > 1  # without it: certifi's whole bundle
    finally:
        _async_session._ssl_context.cache_clear()
