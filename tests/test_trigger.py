"""SlipstreamJobTrigger against the running simulator: one event, retries, timeouts, a free event loop.

Every test drives the real trigger (aiohttp, Airflow's async connection read) against the real
simulator from the ``slipstream_simulator`` fixture (0.2 s queued, 0.5 s processing), with the
``slipstream_default`` connection set by ``sim_conn`` (fast retries: max_retries 3, backoff <= 0.2 s).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from airflow.providers.common.compat.module_loading import import_string

from airflow_provider_slipstream.exceptions import (
    SlipstreamAuthError,
    SlipstreamJobNotFoundError,
    SlipstreamJobTimeoutError,
    SlipstreamTransientError,
)
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import Fault
from airflow_provider_slipstream.triggers.slipstream import SlipstreamJobTrigger, result_from_event
from tests.contract import EXPECTED_TRACKS, expected_result
from tests.fakes import LogRecorder

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.triggers.base import TriggerEvent

    from airflow_provider_slipstream.simulator import SimulatorServer

JOB_GLOB = "/api/v4/video-recognition/*/"
TRIGGER_CLASSPATH = "airflow_provider_slipstream.triggers.slipstream.SlipstreamJobTrigger"
#: A safety net so a trigger that never ends fails the test instead of hanging it; not an assertion on speed.
HANG_GUARD_SECONDS = 30.0


def run_trigger(trigger: SlipstreamJobTrigger) -> list[TriggerEvent]:
    """Every event the trigger yields, collected the way the triggerer iterates it."""

    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    async def guarded() -> list[TriggerEvent]:
        return await asyncio.wait_for(collect(), HANG_GUARD_SECONDS)

    return asyncio.run(guarded())


def single_event(trigger: SlipstreamJobTrigger) -> dict[str, Any]:
    events = run_trigger(trigger)
    assert len(events) == 1, f"expected exactly one event, got {events}"
    payload: dict[str, Any] = events[0].payload
    # The triggerer stores the payload as JSON: it must survive that unchanged.
    assert json.loads(json.dumps(payload)) == payload
    return payload


def assert_error_event(payload: dict[str, Any], job_id: str, error: type[Exception]) -> None:
    assert set(payload) == {"status", "job_id", "error", "message"}, payload
    assert payload["status"] == "error"
    assert payload["job_id"] == job_id
    assert payload["error"] == error.__name__
    assert payload["message"]
    with pytest.raises(error) as raised:
        result_from_event(payload)
    assert type(raised.value) is error
    assert str(raised.value) == payload["message"]


def job_gets(sim: SimulatorServer) -> int:
    return sim.state.count("GET", JOB_GLOB)


def video(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video " + name.encode())
    return path


@pytest.fixture
def max_retries(sim_conn: SimulatorServer) -> int:
    """The retry budget of the test connection, read the way the provider reads it."""
    budget = SlipstreamHook().config.retry.max_retries
    assert budget >= 1
    return budget


# -- success ------------------------------------------------------------------------------


@pytest.mark.parametrize("match", ["internal", "competitor", "external", "no_match"])
def test_success_event_carries_the_contract_result(hook: SlipstreamHook, sim_conn: SimulatorServer, match: str) -> None:
    job = hook.submit_video(sample_videos()[match])
    assert job.status == "queued"

    payload = single_event(SlipstreamJobTrigger(job.job_id, poll_interval=0.1))

    assert payload == {"status": "success", "job_id": job.job_id, "result": expected_result(job.job_id, match)}
    assert result_from_event(payload) == expected_result(job.job_id, match)
    # It polled until completion (queued 0.2 s + processing 0.5 s), not just once.
    assert job_gets(sim_conn) >= 2


def test_undocumented_status_keeps_waiting_and_completes_as_internal(
    hook: SlipstreamHook, sim_conn: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LogRecorder()
    monkeypatch.setattr(SlipstreamJobTrigger, "log", log)
    job = hook.submit_video(video(tmp_path, "odd_status_clip.mp4"))

    payload = single_event(SlipstreamJobTrigger(job.job_id, poll_interval=0.05))

    assert payload["status"] == "success"
    assert payload["result"] == expected_result(job.job_id, "internal")
    # The undocumented status was seen, logged once as a warning, and did not end the wait.
    odd = [record for record in log.records if "transcoding" in record[1]]
    assert len(odd) == 1, log.records
    assert odd[0][0] == "warning"


# -- serialization ---------------------------------------------------------------------------


def test_serialize_round_trips_and_the_rebuilt_trigger_works(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    job = hook.submit_video(sample_videos()["competitor"])
    original = SlipstreamJobTrigger(
        job_id=job.job_id,
        slipstream_conn_id="slipstream_default",
        poll_interval=0.1,
        deadline=time.time() + HANG_GUARD_SECONDS,
        competitor_labels=["Independent Records"],
        keep_waiting_on_transient=True,
        try_number=3,
    )
    classpath, kwargs = original.serialize()
    assert classpath == TRIGGER_CLASSPATH
    # The triggerer stores kwargs in its database: they must be plain JSON.
    kwargs = json.loads(json.dumps(kwargs))

    rebuilt = import_string(classpath)(**kwargs)

    assert type(rebuilt) is SlipstreamJobTrigger
    assert rebuilt.serialize() == original.serialize()
    assert kwargs == {
        "job_id": job.job_id,
        "slipstream_conn_id": "slipstream_default",
        "poll_interval": 0.1,
        "deadline": original.deadline,
        "competitor_labels": ["Independent Records"],
        "keep_waiting_on_transient": True,
        "try_number": 3,
    }
    # The rebuilt trigger keeps every setting: the overridden labels make Epidemic Sound "external",
    # and the event names the try that deferred.
    payload = single_event(rebuilt)
    assert payload["status"] == "success"
    assert payload["try_number"] == 3
    assert payload["result"] == {**expected_result(job.job_id, "competitor"), "match": "external"}


def test_serialize_round_trips_the_defaults() -> None:
    original = SlipstreamJobTrigger(str(uuid.uuid4()))
    classpath, kwargs = original.serialize()
    rebuilt = import_string(classpath)(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == original.serialize()
    assert kwargs["deadline"] is None
    assert kwargs["competitor_labels"] is None
    assert kwargs["keep_waiting_on_transient"] is True
    assert kwargs["try_number"] is None


# -- errors that no retry can fix ------------------------------------------------------------


@pytest.mark.parametrize("how", ["unknown", "expired"])
def test_unknown_or_expired_job_is_one_not_found_event(
    hook: SlipstreamHook, sim_conn: SimulatorServer, how: str
) -> None:
    if how == "unknown":
        job_id = str(uuid.uuid4())
    else:
        job_id = hook.submit_video(sample_videos()["internal"]).job_id
        assert sim_conn.state.expire_job(job_id)

    payload = single_event(SlipstreamJobTrigger(job_id, poll_interval=0.1, keep_waiting_on_transient=True))

    assert_error_event(payload, job_id, SlipstreamJobNotFoundError)
    assert "submit the video again" in payload["message"].lower()
    assert job_gets(sim_conn) == 1, "a 404 must not be retried"


def test_wrong_key_is_one_auth_error_event(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    job = hook.submit_video(sample_videos()["internal"])
    sim_conn.state.set_api_key("a-rotated-key")

    payload = single_event(SlipstreamJobTrigger(job.job_id, poll_interval=0.1, keep_waiting_on_transient=True))

    assert_error_event(payload, job.job_id, SlipstreamAuthError)
    assert "password" in payload["message"]
    assert job_gets(sim_conn) == 1, "a 403 must not be retried"
    assert sim_conn.state.requests[-1].status == 403


# -- deadline ---------------------------------------------------------------------------------


def test_deadline_ends_a_stalled_job_with_one_timeout_event(
    hook: SlipstreamHook, sim_conn: SimulatorServer, tmp_path: Path
) -> None:
    job = hook.submit_video(video(tmp_path, "stall_forever.mp4"))
    duration, poll_interval = 1.0, 0.2

    payload = single_event(
        SlipstreamJobTrigger(job.job_id, poll_interval=poll_interval, deadline=time.time() + duration)
    )

    assert_error_event(payload, job.job_id, SlipstreamJobTimeoutError)
    assert "processing" in payload["message"]
    gets = job_gets(sim_conn)
    assert 2 <= gets <= duration / poll_interval + 2, gets


def test_deadline_also_ends_a_wait_through_an_outage(
    hook: SlipstreamHook, sim_conn: SimulatorServer, tmp_path: Path
) -> None:
    job = hook.submit_video(video(tmp_path, "stall_forever.mp4"))
    sim_conn.state.add_fault(Fault("status", path=JOB_GLOB, method="GET", status=503))

    payload = single_event(
        SlipstreamJobTrigger(job.job_id, poll_interval=0.1, deadline=time.time() + 1.0, keep_waiting_on_transient=True)
    )

    assert_error_event(payload, job.job_id, SlipstreamJobTimeoutError)


# -- retries ----------------------------------------------------------------------------------


def test_retry_after_is_honoured_between_polls(
    hook: SlipstreamHook, sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = hook.submit_video(sample_videos()["internal"])
    arrivals: list[tuple[float, str, str]] = []
    record = sim_conn.state.record

    def stamped(entry: Any) -> None:
        # The simulator logs each request on arrival; stamp it with the time it arrived.
        arrivals.append((time.monotonic(), entry.method, entry.path))
        record(entry)

    monkeypatch.setattr(sim_conn.state, "record", stamped)
    fault = sim_conn.state.add_fault(
        Fault("status", path=JOB_GLOB, method="GET", status=429, headers={"Retry-After": "1"}, remaining=1)
    )

    payload = single_event(SlipstreamJobTrigger(job.job_id, poll_interval=0.1))

    assert payload["status"] == "success"
    assert fault.remaining == 0
    gets = [at for at, method, path in arrivals if method == "GET" and path.endswith(f"/{job.job_id}/")]
    assert len(gets) >= 2
    gap = gets[1] - gets[0]
    print(f"\nRetry-After: 1 -> measured gap between the 429 and the next GET: {gap:.3f} s")
    assert gap >= 1.0, f"retried {gap:.3f} s after a 429 with Retry-After: 1"
    # ... and it took the server's word rather than stacking its own backoff on top.
    assert gap < 2.5, gap


TRANSIENT_FAULTS = {
    "503": Fault("status", path=JOB_GLOB, method="GET", status=503),
    "429-no-retry-after": Fault("status", path=JOB_GLOB, method="GET", status=429),
    "502-html": Fault("html", path=JOB_GLOB, method="GET", status=502),
    "malformed-200": Fault("malformed", path=JOB_GLOB, method="GET"),
    "dropped-connection": Fault("drop", path=JOB_GLOB, method="GET"),
}


@pytest.mark.parametrize("fault_name", list(TRANSIENT_FAULTS))
def test_transient_errors_beyond_the_budget_end_with_one_transient_event(
    hook: SlipstreamHook, sim_conn: SimulatorServer, max_retries: int, fault_name: str
) -> None:
    job = hook.submit_video(sample_videos()["internal"])
    template = TRANSIENT_FAULTS[fault_name]
    sim_conn.state.add_fault(dataclasses.replace(template, headers=dict(template.headers)))

    payload = single_event(SlipstreamJobTrigger(job.job_id, poll_interval=0.1, keep_waiting_on_transient=False))

    assert_error_event(payload, job.job_id, SlipstreamTransientError)
    assert job_gets(sim_conn) == max_retries + 1


def test_keep_waiting_on_transient_outlasts_the_budget_and_succeeds(
    hook: SlipstreamHook, sim_conn: SimulatorServer, max_retries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LogRecorder()
    monkeypatch.setattr(SlipstreamJobTrigger, "log", log)
    job = hook.submit_video(sample_videos()["external"])
    # Two full retry budgets and then some: any single poll alone would give up.
    outage = 2 * (max_retries + 1) + 1
    fault = sim_conn.state.add_fault(Fault("status", path=JOB_GLOB, method="GET", status=503, remaining=outage))

    payload = single_event(SlipstreamJobTrigger(job.job_id, poll_interval=0.1, keep_waiting_on_transient=True))

    assert payload == {"status": "success", "job_id": job.job_id, "result": expected_result(job.job_id, "external")}
    assert fault.remaining == 0
    assert job_gets(sim_conn) >= outage + 1
    still_waiting = [msg for level, msg in log.records if level == "warning" and "Still waiting" in msg]
    assert len(still_waiting) >= 2, log.records


# -- the event loop -----------------------------------------------------------------------------


class BlockingConnectionRead(AssertionError):
    pass


def test_200_triggers_share_one_event_loop_without_blocking_it(
    sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, poll_interval, tick = 200, 0.5, 0.05
    # Jobs stay queued long enough that all triggers are still waiting, together, when they start.
    sim_conn.state.configure(queued_seconds=2.5, processing_seconds=0.5)
    samples = sample_videos()
    kinds = [list(EXPECTED_TRACKS)[i % 4] for i in range(count)]
    local = threading.local()

    def submit(kind: str) -> str:
        # Submitted from 20 threads only to keep the set-up short (the simulator answers a kept-alive
        # connection ~40 ms late); one hook, and so one requests session, per thread.
        if not hasattr(local, "hook"):
            local.hook = SlipstreamHook()
        return local.hook.submit_video(samples[kind]).job_id

    with ThreadPoolExecutor(max_workers=20) as pool:
        job_ids = list(pool.map(submit, kinds))
    assert sim_conn.state.jobs_created == count

    original_read = SlipstreamHook.get_connection
    loop_thread = threading.get_ident()  # asyncio.run below runs the loop in this thread

    def blocking_read(*args: Any, **kwargs: Any) -> Any:
        # Airflow < 3.1 has no async connection read: common-compat runs the sync one in a worker
        # thread, which is fine. On the loop's own thread it would block every trigger.
        if threading.get_ident() == loop_thread:
            raise BlockingConnectionRead("the trigger read the connection with a blocking call")
        return original_read(*args[1:], **kwargs)  # args[0] is the class: original_read is bound

    # The sync hooks are done; from here on a sync connection read can only come from the triggers.
    monkeypatch.setattr(SlipstreamHook, "get_connection", classmethod(blocking_read))
    gets_before = job_gets(sim_conn)

    async def main() -> tuple[list[list[TriggerEvent]], float, int]:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        max_gap, ticks = 0.0, 0

        async def heartbeat() -> None:
            nonlocal max_gap, ticks
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(tick)
                now = loop.time()
                max_gap, last, ticks = max(max_gap, now - last), now, ticks + 1

        async def collect(job_id: str) -> list[TriggerEvent]:
            return [event async for event in SlipstreamJobTrigger(job_id, poll_interval=poll_interval).run()]

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)  # the heartbeat is running before the first trigger starts
        try:
            events = await asyncio.wait_for(asyncio.gather(*(collect(j) for j in job_ids)), HANG_GUARD_SECONDS)
        finally:
            done.set()
            await beat
        return events, max_gap, ticks

    events, max_gap, ticks = asyncio.run(main())

    polls = job_gets(sim_conn) - gets_before
    print(f"\n{count} concurrent triggers: heartbeat max gap {max_gap * 1000:.0f} ms ({ticks} ticks), {polls} polls")
    for job_id, kind, job_events in zip(job_ids, kinds, events, strict=True):
        assert [e.payload for e in job_events] == [
            {"status": "success", "job_id": job_id, "result": expected_result(job_id, kind)}
        ]
    # 200 first polls landing in the same loop iteration cost ~0.2-0.45 s of plain CPU here (the simulator
    # shares the GIL); one blocking call of ~5 ms per trigger would already add 1 s.
    assert max_gap < 1.0, f"the event loop was blocked for {max_gap:.3f} s (heartbeat every {tick} s)"
    # They waited together: more polls than triggers, so most of them polled while the others waited.
    assert polls > count
