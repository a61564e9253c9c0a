"""The triggers' shared HTTP session: one per event loop, bounded, closed by its last user, no leaks.

Against the real simulator, which records the client address (one per connection) of every request
and reports the connections it holds open, so a leaked or per-trigger client shows at the server.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_slipstream import _async_session
from airflow_provider_slipstream._async_session import MAX_CONNECTIONS, open_sessions
from airflow_provider_slipstream.exceptions import SlipstreamTransientError
from airflow_provider_slipstream.triggers.slipstream import SlipstreamJobTrigger
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
    sim_conn.state.configure(queued_seconds=1.5, processing_seconds=0.5)
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


@pytest.mark.parametrize("bypass", [False, True])
def test_the_proxy_from_the_environment_applies_unless_no_proxy_names_the_host(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch, bypass: bool
) -> None:
    """As the workers' requests does: HTTP(S)_PROXY is used, NO_PROXY exempts a host."""
    with socket.socket() as probe:  # a proxy port where nothing listens
        probe.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1" if bypass else "example.invalid")
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
    if bypass:
        assert event == {"status": "success", "job_id": job_id, "result": expected_result(job_id, kind)}
    else:  # the poll went to the (dead) proxy, never to the simulator
        assert (event["status"], event["error"]) == ("error", SlipstreamTransientError.__name__)
        assert sim_conn.state.count("GET", JOB_GLOB) == 0


def counting_new_session(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every session made from here on, in order."""
    made: list[Any] = []
    original = _async_session._new_session

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(_async_session, "_new_session", counted)
    return made
