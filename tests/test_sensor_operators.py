"""The sensor and the operators, method by method, against the running simulator.

No DAG runs here (tests/test_dags.py does those): each test builds the task standalone and calls
``poke`` / ``execute`` / ``execute_complete`` / ``choose_branch`` with a minimal context, a
recording fake ``ti`` and a dict-backed ``task_state_store``. Everything behind them is real: the
hook, the trigger and the simulator from the ``slipstream_simulator`` fixture (0.2 s queued,
0.5 s processing), reached through ``slipstream_default`` set by ``sim_conn`` (max_retries 3).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS
from airflow.sdk import DAG, PokeReturnValue

from airflow_provider_slipstream._resumable import LEDGER_KEY
from airflow_provider_slipstream.exceptions import (
    SlipstreamApiError,
    SlipstreamAuthError,
    SlipstreamError,
    SlipstreamJobNotCompletedError,
    SlipstreamJobNotFoundError,
    SlipstreamJobTimeoutError,
)
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.operators.slipstream import (
    SlipstreamGetTrackOperator,
    SlipstreamMatchBranchOperator,
    SlipstreamRecognizeVideoOperator,
    SlipstreamSubmitVideoOperator,
)
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.sensors.slipstream import SlipstreamJobSensor
from airflow_provider_slipstream.simulator import Fault, SimulatorServer, SimulatorState
from airflow_provider_slipstream.triggers.slipstream import (
    DEFAULT_WAIT_TIMEOUT,
    DEFERRED_TRY_XCOM,
    SlipstreamJobTrigger,
)
from tests.contract import EXPECTED_TRACKS, expected_result
from tests.fakes import LogRecorder

JOB_GLOB = "/api/v4/video-recognition/*/"
#: Where the submit/recognize operators keep their job for the next try: {"job_id", "video"}.
JOB_KEY = LEDGER_KEY
#: Bounds loops that wait for the simulator, so a job that never completes fails instead of hanging.
MAX_POKES = 200
HANG_GUARD_SECONDS = 30.0

KINDS = list(EXPECTED_TRACKS)


# -- fakes for the parts of the task context these methods use --------------------------------


class FakeTI:
    """Records XCom pushes and pulls; answers pulls from ``xcoms`` (task id -> return value)."""

    def __init__(self, xcoms: dict[str, Any] | None = None) -> None:
        self.xcoms = xcoms or {}
        self.pushed: list[tuple[str, Any]] = []
        self.pulled: list[dict[str, Any]] = []
        self.dag_id, self.run_id, self.task_id, self.map_index = "dag", "run", "task", -1
        self.try_number = 1
        self.stats_tags: dict[str, str] = {}

    def get_first_reschedule_date(self, context: Any) -> None:
        return None  # the first poke of a reschedule-mode sensor

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed.append((key, value))

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **kwargs: Any) -> Any:
        self.pulled.append({"task_ids": task_ids, "key": key, **kwargs})
        return self.xcoms.get(str(task_ids)) if key == "return_value" else None


class FakeStateStore:
    """Dict-backed ``task_state_store`` (get/set as in Airflow 3.3), shared across tries and pokes."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data = dict(data or {})
        self.writes: list[tuple[str, Any]] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.data[key] = value
        self.writes.append((key, value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
        self.writes.append((key, None))


def make_context(ti: FakeTI | None = None, store: FakeStateStore | None = None) -> dict[str, Any]:
    return {"ti": ti or FakeTI(), "task_state_store": store if store is not None else FakeStateStore()}


# -- helpers ------------------------------------------------------------------------------------


def video(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video " + name.encode())
    return path


def job_gets(sim: SimulatorServer) -> int:
    return sim.state.count("GET", JOB_GLOB)


def run_trigger(trigger: SlipstreamJobTrigger) -> dict[str, Any]:
    """The one event payload of a real trigger run."""

    async def collect() -> list[Any]:
        return [event async for event in trigger.run()]

    events = asyncio.run(asyncio.wait_for(collect(), HANG_GUARD_SECONDS))
    assert len(events) == 1, events
    payload: dict[str, Any] = events[0].payload
    return payload


def poke_until_done(make_sensor: Any, context: dict[str, Any]) -> tuple[PokeReturnValue, int]:
    """Poke like reschedule mode does (a fresh sensor each time) until done; the result and the poke count."""
    for pokes in range(1, MAX_POKES + 1):
        outcome = make_sensor().poke(context)
        if outcome:
            assert isinstance(outcome, PokeReturnValue), outcome
            return outcome, pokes
        assert outcome is False
        time.sleep(0.05)
    pytest.fail(f"the job did not complete within {MAX_POKES} pokes")


@pytest.fixture
def max_retries(sim_conn: SimulatorServer) -> int:
    budget = SlipstreamHook().config.retry.max_retries
    assert budget >= 1
    return budget


@pytest.fixture(scope="module")
def error_events(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Error events produced by real trigger runs (timeout, 404, 403), for the execute_complete tests."""
    events: dict[str, dict[str, Any]] = {}
    state = SimulatorState(queued_seconds=0.0, processing_seconds=0.5)
    with SimulatorServer(state) as sim, pytest.MonkeyPatch.context() as mp:
        conn = {"conn_type": "slipstream", "host": sim.url, "password": state.api_key}
        mp.setenv("AIRFLOW_CONN_SLIPSTREAM_DEFAULT", json.dumps(conn))
        stalled = SlipstreamHook().submit_video(video(tmp_path_factory.mktemp("videos"), "stall_clip.mp4")).job_id
        events["timeout"] = run_trigger(SlipstreamJobTrigger(stalled, poll_interval=0.1, deadline=time.time() + 0.3))
        events["not_found"] = run_trigger(SlipstreamJobTrigger(str(uuid.uuid4()), poll_interval=0.1))
        state.set_api_key("a-rotated-key")
        events["auth"] = run_trigger(SlipstreamJobTrigger(stalled, poll_interval=0.1))
    assert {name: event["error"] for name, event in events.items()} == {
        "timeout": "SlipstreamJobTimeoutError",
        "not_found": "SlipstreamJobNotFoundError",
        "auth": "SlipstreamAuthError",
    }
    return events


# == SlipstreamJobSensor ========================================================================


def test_sensor_defaults() -> None:
    sensor = SlipstreamJobSensor(task_id="wait", job_id="{{ ti.xcom_pull('submit') }}")
    assert sensor.mode == "reschedule"
    # Above [workers] min_heartbeat_interval (5 s), clear of apache/airflow#71172.
    assert sensor.poke_interval == 10
    # Waits that do not reschedule keep to the API's 2-5 s guidance.
    assert SlipstreamJobSensor(task_id="w", job_id="x", mode="poke").poke_interval == 3
    assert SlipstreamJobSensor(task_id="w", job_id="x", deferrable=True).poke_interval == 3
    # Bounded by what a job can take, not by Airflow's seven days.
    assert sensor.timeout == DEFAULT_WAIT_TIMEOUT.total_seconds() == 3600
    assert sensor.deferrable is False
    assert sensor.slipstream_conn_id == "slipstream_default"
    assert "job_id" in sensor.template_fields


def test_sensor_pokes_false_while_queued_or_processing(
    hook: SlipstreamHook, sim_conn: SimulatorServer, tmp_path: Path
) -> None:
    sim_conn.state.configure(queued_seconds=600)
    queued = hook.submit_video(sample_videos()["internal"]).job_id
    sim_conn.state.configure(queued_seconds=0)
    processing = hook.submit_video(video(tmp_path, "stall_clip.mp4")).job_id

    for job_id, status in ((queued, "queued"), (processing, "processing")):
        store = FakeStateStore()
        for _ in range(2):
            assert SlipstreamJobSensor(task_id="wait", job_id=job_id).poke(make_context(store=store)) is False
        # The sensor saw the status it waited on (and remembered it for the next poke).
        assert [value for _key, value in store.writes] == [status]


@pytest.mark.parametrize("match", KINDS)
def test_sensor_returns_the_contract_result_when_completed(
    hook: SlipstreamHook, sim_conn: SimulatorServer, match: str
) -> None:
    job_id = hook.submit_video(sample_videos()[match]).job_id
    context = make_context()

    outcome, pokes = poke_until_done(lambda: SlipstreamJobSensor(task_id="wait", job_id=job_id), context)

    assert outcome.is_done is True
    assert outcome.xcom_value == expected_result(job_id, match)
    assert pokes >= 2, "the first poke, right after submission, must have found the job unfinished"


def test_sensor_pokes_are_its_retries_one_request_each_through_an_outage(
    hook: SlipstreamHook, sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LogRecorder()
    monkeypatch.setattr(SlipstreamJobSensor, "log", log)
    job_id = hook.submit_video(sample_videos()["internal"]).job_id
    sim_conn.state.add_fault(Fault("status", path=JOB_GLOB, method="GET", status=503, headers={"Retry-After": "1"}))

    for _ in range(3):
        assert SlipstreamJobSensor(task_id="wait", job_id=job_id).poke(make_context()) is False

    # No retry sleeps inside a poke: the poke loop is the retry loop, so the sensor's timeout holds.
    assert job_gets(sim_conn) == 3
    assert sum(level == "warning" and "poke again" in msg for level, msg in log.records) == 3, log.records


def test_sensor_timeout_comes_from_default_args_too() -> None:
    with DAG("d", schedule=None, default_args={"timeout": 300}):
        sensor = SlipstreamJobSensor(task_id="wait", job_id="x")
    assert sensor.timeout == 300


@pytest.mark.parametrize("policy", ["soft_fail", "never_fail"])
@pytest.mark.parametrize("error", ["Trigger timeout", "Trigger failure"])
def test_a_lost_trigger_is_skipped_under_soft_fail_and_never_fail(policy: str, error: str) -> None:
    try:
        from airflow.triggers.base import TriggerFailureReason
    except ImportError:  # Airflow < 3.1
        from airflow.models.trigger import TriggerFailureReason  # type: ignore[no-redef]
    reason = {
        "Trigger timeout": TriggerFailureReason.TRIGGER_TIMEOUT,
        "Trigger failure": TriggerFailureReason.TRIGGER_FAILURE,
    }[error]
    sensor = SlipstreamJobSensor(task_id="wait", job_id="x", deferrable=True, **{policy: True})

    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("__fail__", {"error": reason}, make_context())


def test_reschedule_poke_gives_its_slot_back_instead_of_sleeping_out_a_long_retry_after(
    hook: SlipstreamHook, sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LogRecorder()
    monkeypatch.setattr(SlipstreamJobSensor, "log", log)
    job_id = hook.submit_video(sample_videos()["internal"]).job_id
    sim_conn.state.add_fault(
        Fault("status", path=JOB_GLOB, method="GET", status=429, headers={"Retry-After": "30"}, remaining=1)
    )

    started = time.monotonic()
    assert SlipstreamJobSensor(task_id="wait", job_id=job_id, poke_interval=0.5).poke(make_context()) is False

    assert time.monotonic() - started < 10, "the poke slept out the 30 s Retry-After"
    assert job_gets(sim_conn) == 1
    assert any(level == "warning" and "poke again" in msg for level, msg in log.records), log.records
    # The next poke (a later reschedule) polls again and finds the job.
    time.sleep(0.8)
    result = SlipstreamJobSensor(task_id="wait", job_id=job_id).poke(make_context())
    assert isinstance(result, PokeReturnValue)
    assert result.xcom_value == expected_result(job_id, "internal")


@pytest.mark.parametrize("case", ["wrong-key-403", "unknown-job-404", "expired-job-404"])
def test_sensor_fails_at_once_on_auth_and_not_found(hook: SlipstreamHook, sim_conn: SimulatorServer, case: str) -> None:
    job_id = hook.submit_video(sample_videos()["internal"]).job_id
    if case == "wrong-key-403":
        sim_conn.state.set_api_key("a-rotated-key")
        expected, advice = SlipstreamAuthError, "password field"
    elif case == "unknown-job-404":
        job_id = str(uuid.uuid4())
        expected, advice = SlipstreamJobNotFoundError, "Submit the video again"
    else:
        sim_conn.state.expire_job(job_id)
        expected, advice = SlipstreamJobNotFoundError, "Submit the video again"
    gets_before = job_gets(sim_conn)

    with pytest.raises(expected) as raised:
        SlipstreamJobSensor(task_id="wait", job_id=job_id).poke(make_context())

    # AirflowFailException: Airflow fails the task without spending its retries.
    assert isinstance(raised.value, AirflowFailException)
    assert advice in str(raised.value)
    assert job_gets(sim_conn) - gets_before == 1, "not retried"


def test_sensor_logs_each_status_change_once_across_rescheduled_pokes(
    hook: SlipstreamHook, sim_conn: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = LogRecorder()
    monkeypatch.setattr(SlipstreamJobSensor, "log", log)
    sim_conn.state.configure(queued_seconds=0.3, processing_seconds=0.3)
    job_id = hook.submit_video(video(tmp_path, "odd_status_clip.mp4")).job_id
    # Reschedule mode: every poke is a new sensor object; only the task state store survives.
    context = make_context()

    outcome, pokes = poke_until_done(lambda: SlipstreamJobSensor(task_id="wait", job_id=job_id), context)

    assert outcome.xcom_value == expected_result(job_id, "internal")
    status_lines = [(level, msg) for level, msg in log.records if job_id in msg]
    assert status_lines == [
        ("info", f"Slipstream job {job_id} is queued"),
        ("warning", f"Slipstream job {job_id} reports undocumented status 'transcoding'; still waiting"),
        ("info", f"Slipstream job {job_id} is completed"),
    ]
    assert pokes > len(status_lines), "some pokes must have seen an unchanged status"


def test_deferrable_sensor_defers_to_the_trigger_and_completes_with_its_event(
    hook: SlipstreamHook, sim_conn: SimulatorServer
) -> None:
    sim_conn.state.configure(queued_seconds=1.0)
    job_id = hook.submit_video(sample_videos()["competitor"]).job_id
    sensor = SlipstreamJobSensor(task_id="wait", job_id=job_id, deferrable=True, poke_interval=0.2, timeout=600)
    context = make_context()

    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    after = time.time()

    trigger = deferred.value.trigger
    assert isinstance(trigger, SlipstreamJobTrigger)
    assert trigger.job_id == job_id
    assert trigger.keep_waiting_on_transient is True
    assert trigger.poll_interval == 0.2
    assert trigger.slipstream_conn_id == "slipstream_default"
    assert trigger.deadline is not None
    assert before + 600 <= trigger.deadline <= after + 600
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is not None
    assert deferred.value.timeout >= timedelta(seconds=600)

    # What the triggerer would do next: run the trigger, then resume the task with its event.
    event = run_trigger(trigger)
    assert sensor.execute_complete(context, event) == expected_result(job_id, "competitor")
    # Finished on the triggerer: its first poke (in the worker) left nothing in the task state store.
    assert context["task_state_store"].data == {}


def test_deferrable_sensor_returns_a_finished_result_without_deferring(
    hook: SlipstreamHook, sim_conn: SimulatorServer
) -> None:
    job = hook.wait_for_job(hook.submit_video(sample_videos()["no_match"]).job_id, poll_interval=0.1, timeout=20)
    sensor = SlipstreamJobSensor(task_id="wait", job_id=job.job_id, deferrable=True)

    assert sensor.execute(make_context()) == expected_result(job.job_id, "no_match")


def test_sensor_execute_complete_maps_error_events(error_events: dict[str, dict[str, Any]]) -> None:
    sensor = SlipstreamJobSensor(task_id="wait", job_id=str(uuid.uuid4()))
    context = make_context()

    with pytest.raises(AirflowSensorTimeout) as timed_out:
        sensor.execute_complete(context, error_events["timeout"])
    assert str(timed_out.value) == error_events["timeout"]["message"]
    assert isinstance(timed_out.value.__cause__, SlipstreamJobTimeoutError)

    with pytest.raises(SlipstreamJobNotFoundError, match="Submit the video again"):
        sensor.execute_complete(context, error_events["not_found"])
    with pytest.raises(SlipstreamAuthError):
        sensor.execute_complete(context, error_events["auth"])
    with pytest.raises(SlipstreamError):
        sensor.execute_complete(context, None)


# == SlipstreamSubmitVideoOperator ===============================================================


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of video_path"),
        ({"video_path": "clip.mp4", "storage_key": "video-recognition/x_clip.mp4"}, "exactly one of video_path"),
        ({"video_path": "clip.mp4", "upload_method": "ftp"}, "upload_method"),
    ],
    ids=["neither", "both", "bad-upload-method"],
)
@pytest.mark.parametrize("operator_class", [SlipstreamSubmitVideoOperator, SlipstreamRecognizeVideoOperator])
def test_submit_operators_reject_bad_arguments_before_any_request(
    sim_conn: SimulatorServer, operator_class: type, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        operator_class(task_id="submit", **kwargs)
    assert sim_conn.state.requests == []
    assert sim_conn.state.jobs_created == 0


def test_submit_operator_returns_the_job_id_and_pushes_it(sim_conn: SimulatorServer) -> None:
    ti, store = FakeTI(), FakeStateStore()
    operator = SlipstreamSubmitVideoOperator(task_id="submit", video_path=str(sample_videos()["external"]))

    job_id = operator.execute(make_context(ti, store))

    assert str(uuid.UUID(job_id)) == job_id
    assert sim_conn.state.jobs_created == 1
    assert job_id in sim_conn.state.jobs
    assert ti.pushed == [("job_id", job_id)]
    assert store.writes == [(JOB_KEY, {"job_id": job_id, "video": operator.video}), (JOB_KEY, None)]
    assert store.data == {}, "the stored job is removed once the task succeeded"


@pytest.mark.parametrize("status", ["queued", "completed"])
def test_submit_operator_retry_reuses_the_stored_job(
    hook: SlipstreamHook, sim_conn: SimulatorServer, status: str
) -> None:
    job_id = hook.submit_video(sample_videos()["internal"]).job_id
    if status == "completed":
        hook.wait_for_job(job_id, poll_interval=0.1, timeout=20)
    ti, store = FakeTI(), FakeStateStore({JOB_KEY: {"job_id": job_id, "video": str(sample_videos()["internal"])}})

    returned = SlipstreamSubmitVideoOperator(task_id="submit", video_path=sample_videos()["internal"]).execute(
        make_context(ti, store)
    )

    assert returned == job_id
    assert sim_conn.state.jobs_created == 1, "the video was submitted again"
    assert ti.pushed == [("job_id", job_id)]
    assert store.data == {}


def test_submit_operator_submits_anew_when_the_stored_job_expired(
    hook: SlipstreamHook, sim_conn: SimulatorServer
) -> None:
    old = hook.submit_video(sample_videos()["internal"]).job_id
    sim_conn.state.expire_job(old)
    ti, store = FakeTI(), FakeStateStore({JOB_KEY: {"job_id": old, "video": str(sample_videos()["internal"])}})

    new = SlipstreamSubmitVideoOperator(task_id="submit", video_path=sample_videos()["internal"]).execute(
        make_context(ti, store)
    )

    assert new != old
    assert new in sim_conn.state.jobs
    assert sim_conn.state.jobs_created == 2
    assert ti.pushed == [("job_id", new)]
    assert store.writes[0] == (JOB_KEY, {"job_id": new, "video": str(sample_videos()["internal"])})


def test_submit_operator_accepts_a_presigned_storage_key(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    target = hook.create_upload_url("competitor_clip.mov")
    hook.upload_to_url(target, sample_videos()["competitor"])
    ti = FakeTI()

    job_id = SlipstreamSubmitVideoOperator(task_id="submit", storage_key=target.storage_key).execute(make_context(ti))

    assert ti.pushed == [("job_id", job_id)]
    assert hook.wait_for_job(job_id, poll_interval=0.1, timeout=20).to_result() == expected_result(job_id, "competitor")


# == SlipstreamRecognizeVideoOperator ============================================================


def test_recognize_operator_returns_the_contract_result(sim_conn: SimulatorServer) -> None:
    ti, store = FakeTI(), FakeStateStore()
    operator = SlipstreamRecognizeVideoOperator(
        task_id="recognize", video_path=sample_videos()["competitor"], deferrable=False, poll_interval=0.2
    )

    result = operator.execute(make_context(ti, store))

    assert sim_conn.state.jobs_created == 1
    job_id = ti.pushed[0][1]
    assert ti.pushed == [("job_id", job_id)]
    assert store.writes[0] == (JOB_KEY, {"job_id": job_id, "video": str(sample_videos()["competitor"])})
    assert store.data == {}
    assert result == expected_result(job_id, "competitor")


def test_recognize_operator_retry_resumes_the_submitted_job(sim_conn: SimulatorServer) -> None:
    store = FakeStateStore()
    # The job takes longer than the task's timeout: the first try fails after submitting.
    sim_conn.state.configure(processing_seconds=1.5)

    def operator() -> SlipstreamRecognizeVideoOperator:
        return SlipstreamRecognizeVideoOperator(
            task_id="recognize", video_path=sample_videos()["external"], poll_interval=0.2, timeout=0.5
        )

    first_ti = FakeTI()
    with pytest.raises(SlipstreamJobTimeoutError):
        operator().execute(make_context(first_ti, store))
    assert sim_conn.state.jobs_created == 1
    job_id = store.data[JOB_KEY]["job_id"]
    assert first_ti.pushed == [("job_id", job_id)], "the job id must be in XCom as soon as it is known"

    # The retry: a new operator object, the same task state store, a job that has completed meanwhile.
    time.sleep(1.5)
    second_ti = FakeTI()
    result = operator().execute(make_context(second_ti, store))

    assert result == expected_result(job_id, "external")
    assert sim_conn.state.jobs_created == 1, "the retry submitted the video again"
    assert ("job_id", job_id) in second_ti.pushed


def test_recognize_in_the_worker_rides_out_an_outage_like_the_trigger(
    sim_conn: SimulatorServer, max_retries: int
) -> None:
    # Three polls' retry budgets fail: the worker waits on (as the triggerer does) instead of failing the try.
    fault = sim_conn.state.add_fault(
        Fault("status", path=JOB_GLOB, method="GET", status=503, remaining=3 * (max_retries + 1))
    )
    ti = FakeTI()
    operator = SlipstreamRecognizeVideoOperator(
        task_id="recognize", video_path=sample_videos()["external"], poll_interval=0.2, timeout=30
    )

    result = operator.execute(make_context(ti, FakeStateStore()))

    assert fault.remaining == 0
    assert result == expected_result(ti.pushed[0][1], "external")
    assert sim_conn.state.jobs_created == 1


@pytest.mark.parametrize("timeout", [None, 120])
def test_deferrable_recognize_operator_defers_after_submitting(
    sim_conn: SimulatorServer, timeout: float | None
) -> None:
    ti, store = FakeTI(), FakeStateStore()
    operator = SlipstreamRecognizeVideoOperator(
        task_id="recognize",
        video_path=sample_videos()["no_match"],
        deferrable=True,
        poll_interval=0.2,
        timeout=timeout,
    )
    context = make_context(ti, store)

    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    after = time.time()

    job_id = store.data[JOB_KEY]["job_id"]
    assert [push for push in ti.pushed if push[0] != DEFERRED_TRY_XCOM] == [("job_id", job_id)]
    trigger = deferred.value.trigger
    assert isinstance(trigger, SlipstreamJobTrigger)
    assert trigger.job_id == job_id
    assert trigger.keep_waiting_on_transient is True
    assert trigger.poll_interval == 0.2
    bound = DEFAULT_WAIT_TIMEOUT.total_seconds() if timeout is None else timeout
    assert trigger.deadline is not None
    assert before + bound <= trigger.deadline <= after + bound
    assert deferred.value.method_name == "execute_complete"
    # Airflow's own defer timeout backs the trigger's deadline up.
    assert deferred.value.timeout is not None
    assert deferred.value.timeout.total_seconds() > bound

    event = run_trigger(trigger)
    assert operator.execute_complete(context, event) == expected_result(job_id, "no_match")
    assert sim_conn.state.jobs_created == 1


#: What failed try 1 of a deferred wait: Airflow 3.0 hands it to try 2 again (apache/airflow#56704).
def _event_of_try(try_number: int, job_id: str) -> dict[str, Any]:
    return {
        "event": {
            "status": "error",
            "job_id": job_id,
            "error": "SlipstreamApiError",
            "message": "HTTP 400",
            "try_number": try_number,
        }
    }


#: What Airflow 3.0 leaves for the retries after a lost trigger: no event at all.
LOST_TRIGGER = ("__fail__", {"error": "TRIGGER_TIMEOUT"})


def _deferred_by(ti: FakeTI, try_number: int) -> None:
    """Answer the deferring try's XCom (Airflow 3.0 only) the way Airflow would."""
    ti.xcom_pull = lambda task_ids=None, key="return_value", **kw: try_number if key == DEFERRED_TRY_XCOM else None


def _resume_after_lost_trigger(
    task: Any, ti: FakeTI, context: dict[str, Any], *, deferred_by: int, ended_by: type[BaseException]
) -> TaskDeferred | None:
    """
    Resume ``task`` after a lost trigger of try ``deferred_by``. On 3.0 an earlier try's loss starts
    the retry over (it defers again: returned); this try's own loss, and any on 3.1+ (which never
    resumes a retry with it), ends the try with ``ended_by``.
    """
    _deferred_by(ti, deferred_by)
    if deferred_by != ti.try_number and not AIRFLOW_V_3_1_PLUS:
        with pytest.raises(TaskDeferred) as again:
            task.resume_execution(*LOST_TRIGGER, context)
        return again.value
    with pytest.raises(ended_by):
        task.resume_execution(*LOST_TRIGGER, context)
    return None


def test_deferred_sensor_retry_handed_an_earlier_trys_outcome_starts_over(
    hook: SlipstreamHook, sim_conn: SimulatorServer
) -> None:
    sim_conn.state.configure(queued_seconds=60)
    job_id = hook.submit_video(sample_videos()["competitor"]).job_id
    # soft_fail: the restarted try must not be treated as a deferral's outcome (which it would skip).
    sensor = SlipstreamJobSensor(task_id="wait", job_id=job_id, deferrable=True, poke_interval=0.2, soft_fail=True)
    ti = FakeTI()
    context = make_context(ti)
    with pytest.raises(TaskDeferred) as first:
        sensor.execute(context)
    assert first.value.trigger.try_number == 1

    ti.try_number = 2
    with pytest.raises(TaskDeferred) as second:  # pokes again and defers with try 2's own trigger
        sensor.resume_execution("execute_complete", _event_of_try(1, job_id), context)
    assert second.value.trigger.try_number == 2
    # The try's own event still decides (soft_fail skips it).
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("execute_complete", _event_of_try(2, job_id), context)
    _resume_after_lost_trigger(sensor, ti, context, deferred_by=1, ended_by=AirflowSkipException)
    _resume_after_lost_trigger(sensor, ti, context, deferred_by=2, ended_by=AirflowSkipException)


def test_deferred_recognize_retry_handed_an_earlier_trys_outcome_resumes_its_job(sim_conn: SimulatorServer) -> None:
    sim_conn.state.configure(queued_seconds=60)
    ti, store = FakeTI(), FakeStateStore()
    operator = SlipstreamRecognizeVideoOperator(
        task_id="recognize", video_path=sample_videos()["internal"], deferrable=True, poll_interval=0.2
    )
    context = make_context(ti, store)
    with pytest.raises(TaskDeferred):
        operator.execute(context)
    job_id = store.data[JOB_KEY]["job_id"]

    ti.try_number = 2
    with pytest.raises(TaskDeferred) as second:
        operator.resume_execution("execute_complete", _event_of_try(1, job_id), context)
    assert (second.value.trigger.job_id, second.value.trigger.try_number) == (job_id, 2)  # the same job, again
    with pytest.raises(SlipstreamApiError):
        operator.resume_execution("execute_complete", _event_of_try(2, job_id), context)
    again = _resume_after_lost_trigger(operator, ti, context, deferred_by=1, ended_by=AirflowException)
    if again is not None:
        assert again.trigger.job_id == job_id
    _resume_after_lost_trigger(operator, ti, context, deferred_by=2, ended_by=AirflowException)
    assert sim_conn.state.jobs_created == 1


def test_recognize_operator_execute_complete_maps_error_events(error_events: dict[str, dict[str, Any]]) -> None:
    operator = SlipstreamRecognizeVideoOperator(task_id="recognize", video_path="clip.mp4", deferrable=True)
    context = make_context()
    for name, expected in (
        ("timeout", SlipstreamJobTimeoutError),
        ("not_found", SlipstreamJobNotFoundError),
        ("auth", SlipstreamAuthError),
    ):
        with pytest.raises(expected) as raised:
            operator.execute_complete(context, error_events[name])
        assert str(raised.value) == error_events[name]["message"]
    with pytest.raises(SlipstreamError):
        operator.execute_complete(context, None)


# == SlipstreamGetTrackOperator ===================================================================


def test_get_track_returns_the_contract_result_of_completed_jobs(
    hook: SlipstreamHook, sim_conn: SimulatorServer
) -> None:
    job_ids = {kind: hook.submit_video(sample_videos()[kind]).job_id for kind in KINDS}
    for job_id in job_ids.values():
        hook.wait_for_job(job_id, poll_interval=0.1, timeout=20)

    for kind, job_id in job_ids.items():
        result = SlipstreamGetTrackOperator(task_id="get", job_id=job_id).execute(make_context())
        assert result == expected_result(job_id, kind)

    # Labels passed to the operator replace the defaults: Epidemic Sound is no longer a competitor.
    relabelled = SlipstreamGetTrackOperator(
        task_id="get", job_id=job_ids["competitor"], competitor_labels=["Independent Records"]
    ).execute(make_context())
    assert relabelled["match"] == "external"
    external = SlipstreamGetTrackOperator(
        task_id="get", job_id=job_ids["external"], competitor_labels=["independent  records"]
    ).execute(make_context())
    assert external["match"] == "competitor"


def test_get_track_on_an_unfinished_job_says_to_wait_first(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    sim_conn.state.configure(queued_seconds=600)
    job_id = hook.submit_video(sample_videos()["internal"]).job_id

    with pytest.raises(SlipstreamJobNotCompletedError) as raised:
        SlipstreamGetTrackOperator(task_id="get", job_id=job_id).execute(make_context())

    assert "SlipstreamJobSensor" in str(raised.value)
    assert "queued" in str(raised.value)


# == SlipstreamMatchBranchOperator =================================================================

BRANCHES = {
    "internal": "publish",
    "competitor": ["flag_competitor", "notify_legal"],
    "external": ("review",),
}


def result_of(match: str) -> dict[str, Any]:
    return expected_result(str(uuid.uuid4()), match)


def test_branch_rejects_unknown_match_kinds() -> None:
    with pytest.raises(ValueError, match="epidemic"):
        SlipstreamMatchBranchOperator(task_id="branch", branches={"internal": "a", "epidemic": "b"}, result={})


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"result": {"match": "internal"}, "result_task_id": "recognize"}],
    ids=["neither", "both"],
)
def test_branch_needs_exactly_one_result_source(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="result"):
        SlipstreamMatchBranchOperator(task_id="branch", branches=BRANCHES, **kwargs)


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("internal", ["publish"]),
        ("competitor", ["flag_competitor", "notify_legal"]),
        ("external", ["review"]),
        ("no_match", []),
    ],
)
def test_branch_follows_the_tasks_mapped_to_the_match(match: str, expected: list[str]) -> None:
    operator = SlipstreamMatchBranchOperator(task_id="branch", branches=BRANCHES, result=result_of(match))
    assert operator.choose_branch(make_context()) == expected


@pytest.mark.parametrize(
    "value",
    [None, "internal", ["internal"], {"status": "completed"}, {"match": "epidemic"}, {"match": None}],
    ids=["none", "str", "list", "no-match-key", "unknown-match", "null-match"],
)
def test_branch_rejects_a_value_that_is_not_a_result(value: Any) -> None:
    # Built with a placeholder, then given the bad value the way templating would hand it over.
    operator = SlipstreamMatchBranchOperator(task_id="branch", branches=BRANCHES, result=result_of("internal"))
    operator.result = value
    with pytest.raises(ValueError, match="result"):
        operator.choose_branch(make_context())


def test_branch_pulls_the_result_by_task_id() -> None:
    ti = FakeTI({"recognize": result_of("competitor")})
    operator = SlipstreamMatchBranchOperator(task_id="branch", branches=BRANCHES, result_task_id="recognize")

    assert operator.choose_branch(make_context(ti)) == ["flag_competitor", "notify_legal"]
    assert [pull["task_ids"] for pull in ti.pulled] == ["recognize"]


def test_operators_compose_in_a_dag_with_xcom_args() -> None:
    with DAG(dag_id="slipstream_compose", schedule=None) as dag:
        recognize = SlipstreamRecognizeVideoOperator(task_id="recognize", video_path="{{ params.video }}")
        branch = SlipstreamMatchBranchOperator(task_id="branch", branches=BRANCHES, result=recognize.output)
        recognize >> branch

    assert set(dag.task_ids) == {"recognize", "branch"}
    assert branch.upstream_task_ids == {"recognize"}
    assert "video_path" in recognize.template_fields
    assert "result" in branch.template_fields


# == Resuming: the same input only; stored before anything else can fail ==========================


def test_stored_job_is_resumed_only_for_the_same_input(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    # A try for another clip (the map index's upstream list changed, then the task was cleared) stored its job.
    earlier = hook.wait_for_job(hook.submit_video(sample_videos()["internal"]).job_id, poll_interval=0.1, timeout=20)
    store = FakeStateStore({JOB_KEY: {"job_id": earlier.job_id, "video": str(sample_videos()["internal"])}})
    clip = str(sample_videos()["competitor"])

    result = SlipstreamRecognizeVideoOperator(task_id="recognize", video_path=clip, poll_interval=0.2).execute(
        make_context(FakeTI(), store)
    )

    assert result["match"] == "competitor"
    assert result["job_id"] != earlier.job_id
    assert result == expected_result(result["job_id"], "competitor")
    assert sim_conn.state.jobs_created == 2
    assert store.writes[0] == (JOB_KEY, {"job_id": result["job_id"], "video": clip})


class RecordingStore(FakeStateStore):
    """A task state store that logs its writes into a shared list of events."""

    def __init__(self, events: list[str], fail_writes: float = 0) -> None:
        super().__init__()
        #: How many writes fail (the API server restarting); ``math.inf``: all of them.
        self.events, self.fail_writes = events, fail_writes

    def set(self, key: str, value: Any, *, retention: timedelta | None = None) -> None:
        self.events.append("store")
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise ConnectionError("the execution API is down")
        super().set(key, value, retention=retention)


class FlakyTI(FakeTI):
    """An XCom push that fails once, as an execution-API round trip can."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events, self.failed = events, False

    def xcom_push(self, key: str, value: Any) -> None:
        self.events.append("xcom")
        if not self.failed:
            self.failed = True
            raise ConnectionError("the execution API is down")
        super().xcom_push(key, value)


def test_job_id_is_stored_before_any_other_round_trip_after_the_submit(sim_conn: SimulatorServer) -> None:
    events: list[str] = []
    store = RecordingStore(events)

    def operator() -> SlipstreamRecognizeVideoOperator:
        return SlipstreamRecognizeVideoOperator(
            task_id="recognize", video_path=sample_videos()["external"], poll_interval=0.2
        )

    # The XCom push right after the submit fails: the try fails, but the job was already stored.
    with pytest.raises(ConnectionError):
        operator().execute(make_context(FlakyTI(events), store))
    assert events == ["store", "xcom"]
    assert sim_conn.state.jobs_created == 1

    result = operator().execute(make_context(FakeTI(), store))

    assert sim_conn.state.jobs_created == 1, "the retry submitted the video again"
    assert result == expected_result(store.writes[0][1]["job_id"], "external")


def test_a_store_write_is_retried_until_the_api_server_takes_it(sim_conn: SimulatorServer) -> None:
    # An API server restart: without the record, a retry of this task would submit a second job.
    events: list[str] = []
    ti = FakeTI()
    store = RecordingStore(events, fail_writes=2)
    operator = SlipstreamSubmitVideoOperator(task_id="submit", video_path=sample_videos()["internal"])

    job_id = operator.execute(make_context(ti, store))

    assert events == ["store", "store", "store"]
    assert store.writes == [(JOB_KEY, {"job_id": job_id, "video": operator.video}), (JOB_KEY, None)]
    assert sim_conn.state.jobs_created == 1


def test_a_store_write_that_never_lands_does_not_fail_the_try(sim_conn: SimulatorServer) -> None:
    # Past the try's bound the try carries on: it finishes the one job there is.
    events: list[str] = []
    ti = FakeTI()
    operator = SlipstreamRecognizeVideoOperator(
        task_id="recognize", video_path=sample_videos()["internal"], timeout=3, poll_interval=0.2
    )

    result = operator.execute(make_context(ti, RecordingStore(events, fail_writes=math.inf)))

    assert len(events) >= 2, "retried within the bound"
    assert sim_conn.state.jobs_created == 1
    assert result == expected_result(ti.pushed[0][1], "internal")


def test_defaults_are_safe_on_a_default_deployment() -> None:
    import importlib.util

    from airflow.providers.common.compat.sdk import conf

    from airflow_provider_slipstream.sensors.slipstream import RESCHEDULE_POKE_INTERVAL

    # apache/airflow#71172: a reschedule poke close to the workers' heartbeat can fail the sensor.
    heartbeat = float(conf.get_default_value("workers", "min_heartbeat_interval"))
    assert 2 * heartbeat <= RESCHEDULE_POKE_INTERVAL
    # The example DAGs wait with the defaults.
    examples = Path(__file__).resolve().parent.parent / "example_dags"
    tasks = {}
    for path in examples.glob("*.py"):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        tasks.update({f"{module.dag.dag_id}.{t.task_id}": t for t in module.dag.tasks})
    wait = tasks["slipstream_audioverify.wait"]
    assert (wait.mode, wait.poke_interval, wait.timeout) == ("reschedule", RESCHEDULE_POKE_INTERVAL, 3600)
    recognize = tasks["slipstream_audioverify_batch.recognize"].partial_kwargs
    assert "poll_interval" not in recognize
    assert "timeout" not in recognize
