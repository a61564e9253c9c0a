"""
The fault-injection suite: every fault the API or the network can throw at a wait, against every
component that waits, on the real simulator (a fresh one per case: 0.2 s queued, 0.5 s processing;
``slipstream_default`` with fast retries: max_retries 3, backoff 0.05-0.2 s, see tests/conftest.py).

``test_fault_matrix`` runs FAULTS (on the job GET path) x COMPONENTS, the six ways a DAG waits for a
job: ``SlipstreamHook.wait_for_job``; the sensor in poke mode and in reschedule mode (every poke a
fresh sensor sharing one task state store, as Airflow runs it); ``SlipstreamJobTrigger`` as the
deferrable recognize operator uses it (``keep_waiting_on_transient=False``) and as the deferrable
sensor uses it (``True``); and ``SlipstreamRecognizeVideoOperator`` waiting in the worker.
``test_submit_faults`` runs SUBMIT_FAULTS (on the submit POST) against the recognize operator, and
``test_timeout_bounds_a_server_requested_wait`` a Retry-After longer than the wait's timeout.

Every case checks three things:

* the outcome: success with the exact contract result dict (``tests.contract``),
  or the specific exception class with a message that says what to do;
* the API calls, from the simulator's own request log: exact counts of faulted requests (and of all
  requests where the outcome fixes them), otherwise an upper bound from the elapsed time, plus
  the pacing between consecutive polls (at least ``POLL`` after every unfinished answer): no tight loop;
* the jobs created: exactly one per submit, none extra.

docs/reliability.md lists every case in its table (a); tests/test_reliability_doc.py keeps the two in sync.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_slipstream._resumable import LEDGER_KEY
from airflow_provider_slipstream.exceptions import (
    SlipstreamAuthError,
    SlipstreamError,
    SlipstreamJobNotFoundError,
    SlipstreamJobTimeoutError,
    SlipstreamSubmitUncertainError,
    SlipstreamTransientError,
)
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.operators.slipstream import SlipstreamRecognizeVideoOperator
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.sensors.slipstream import SlipstreamJobSensor
from airflow_provider_slipstream.simulator import Fault, SimulatorServer, SimulatorState
from airflow_provider_slipstream.simulator.state import RequestRecord
from airflow_provider_slipstream.triggers.slipstream import SlipstreamJobTrigger, result_from_event
from tests.conftest import FAST_RETRY_EXTRA
from tests.contract import expected_result
from tests.fakes import LogRecorder

try:
    from airflow.sdk.exceptions import AirflowRescheduleException
except ImportError:  # Airflow < 3.2 has it only in airflow.exceptions, and common.compat has no alias for it.
    from airflow.exceptions import AirflowRescheduleException  # type: ignore[no-redef]

JOB_GLOB = "/api/v4/video-recognition/*/"
SUBMIT_PATH = "/api/v4/video-recognition/"
#: Matches the submit path only (a plain fault path is a prefix and would also hit job paths).
SUBMIT_ONLY = "/api/v4/video-recognition[/]"
#: Where the recognize operator keeps its job id for the next try (its public ``external_id_key``).
#: Where the recognize operator keeps its job for the next try ({"job_id", "video"}), until it succeeds.
JOB_KEY = LEDGER_KEY
API_KEY = "sim-partner-key"  # the simulator's default key, used by the sim_conn fixture

#: Poll/poke interval of every component.
POLL = 0.2
#: Each component's own wait timeout: far beyond every case, so only the fault decides the outcome.
WAIT_TIMEOUT = 20.0
#: Fails a hung case instead of blocking the suite; not an assertion on speed.
HANG_GUARD_SECONDS = 30.0
#: When the mid-wait faults (expiry, key revocation) strike, after the wait started.
MID_WAIT = 0.6
#: A read timeout shorter than the injected delay.
SHORT_READ_TIMEOUT = 0.5
SLOW_ANSWER = 1.5
#: The fastest retry the policy can make (the first backoff is 0.025-0.05 s), less a margin.
MIN_RETRY_GAP = 0.02
#: asyncio and time.sleep may wake a hair early or late; pacing bounds allow this much.
PACE_SLACK = 0.02


COMPONENTS = ("hook", "sensor-poke", "sensor-reschedule", "trigger", "trigger-keep-waiting", "recognize")


# -- expectations -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Succeeds:
    """Completes with the contract result of this match kind."""

    match: str


@dataclass(frozen=True)
class Fails:
    """Ends with exactly this exception class; its message holds every phrase of ``advice``."""

    error: type[SlipstreamError]
    advice: tuple[str, ...]


TRANSIENT = Fails(SlipstreamTransientError, ("503", "temporary", "retried"))
NOT_FOUND = Fails(SlipstreamJobNotFoundError, ("404", "expired", "Submit the video again"))
REVOKED = Fails(SlipstreamAuthError, ("403", "password field", "revoked"))
SUBMIT_UNCERTAIN = Fails(
    SlipstreamSubmitUncertainError, ("may still have created a job", "not re-sent", "Clear the task")
)


@dataclass(frozen=True)
class FaultCase:
    """One fault, the video it strikes, and what each component must make of it."""

    video: str  # a sample kind (internal, competitor, external, no_match) or a file name to create
    faults: Callable[[int], list[Fault]] = lambda _budget: []  # given the connection's max_retries
    outcome: Succeeds | Fails = Succeeds("internal")
    per_component: dict[str, Succeeds | Fails] = field(default_factory=dict)
    mid_wait: Callable[[SimulatorState], None] | None = None  # run by a timer MID_WAIT s into the wait
    final_status: int | None = None  # the status of the last poll, for faults that end a wait with one answer
    read_timeout: float | None = None

    def expected(self, component: str) -> Succeeds | Fails:
        return self.per_component.get(component, self.outcome)


def job_fault(kind: str, remaining: int, **kwargs: Any) -> Fault:
    return Fault(kind, path=JOB_GLOB, method="GET", remaining=remaining, **kwargs)  # type: ignore[arg-type]


def retry_after_date(_budget: int) -> list[Fault]:
    # An HTTP date has whole seconds: the next full second plus one is 1-2 s ahead.
    when = formatdate(math.floor(time.time()) + 2, usegmt=True)
    return [job_fault("status", 1, status=429, headers={"Retry-After": when})]


def expire_every_job(state: SimulatorState) -> None:
    for job_id in state.jobs:
        assert state.expire_job(job_id)


FAULTS: dict[str, FaultCase] = {
    "5xx-burst-short": FaultCase(
        video="internal",
        faults=lambda _budget: [job_fault("status", 2, status=503)],
    ),
    "5xx-burst-beyond-budget": FaultCase(
        video="external",
        # One more 503 than a single request's whole budget (max_retries + 1 attempts): every wait
        # rides it out until its timeout, but a trigger told not to keep waiting.
        faults=lambda budget: [job_fault("status", budget + 2, status=503)],
        outcome=Succeeds("external"),
        per_component={"trigger": TRANSIENT},
    ),
    "429-retry-after-seconds": FaultCase(
        video="competitor",
        faults=lambda _budget: [job_fault("status", 1, status=429, headers={"Retry-After": "1"})],
        outcome=Succeeds("competitor"),
    ),
    "429-retry-after-http-date": FaultCase(
        video="no_match",
        faults=retry_after_date,
        outcome=Succeeds("no_match"),
    ),
    "read-timeout": FaultCase(
        video="internal",
        faults=lambda _budget: [job_fault("delay", 1, seconds=SLOW_ANSWER)],
        read_timeout=SHORT_READ_TIMEOUT,
    ),
    "dropped-connection": FaultCase(
        video="competitor",
        faults=lambda _budget: [job_fault("drop", 1)],
        outcome=Succeeds("competitor"),
    ),
    "malformed-json": FaultCase(
        video="external",
        faults=lambda _budget: [job_fault("malformed", 1)],
        outcome=Succeeds("external"),
    ),
    "html-502-page": FaultCase(
        video="no_match",
        faults=lambda _budget: [job_fault("html", 1, status=502)],
        outcome=Succeeds("no_match"),
    ),
    "unknown-status": FaultCase(video="odd_status_clip.mp4"),
    "job-expired-mid-wait": FaultCase(
        video="stall_clip.mp4", outcome=NOT_FOUND, mid_wait=expire_every_job, final_status=404
    ),
    "key-revoked-mid-wait": FaultCase(
        video="stall_clip.mp4",
        outcome=REVOKED,
        mid_wait=lambda state: state.set_api_key("revoked"),
        final_status=403,
    ),
}


@dataclass(frozen=True)
class SubmitCase:
    fault: Callable[[], Fault]
    posts: int
    jobs: int
    outcome: Succeeds | Fails
    read_timeout: float | None = None


#: Faults on the submit POST, for the one component that submits: the recognize operator.
SUBMIT_FAULTS: dict[str, SubmitCase] = {
    # 503 says "not processed": the POST is re-sent, and one job results.
    "submit-503-once": SubmitCase(
        lambda: Fault("status", path=SUBMIT_ONLY, method="POST", status=503, remaining=1),
        posts=2,
        jobs=1,
        outcome=Succeeds("internal"),
    ),
    # Refused for longer than the connection's retry budget: re-sent until the wait's bound instead.
    "submit-503-beyond-the-retry-budget": SubmitCase(
        lambda: Fault(
            "status", path=SUBMIT_ONLY, method="POST", status=503, remaining=FAST_RETRY_EXTRA["max_retries"] + 2
        ),
        posts=FAST_RETRY_EXTRA["max_retries"] + 3,
        jobs=1,
        outcome=Succeeds("internal"),
    ),
    # A 500 or a dropped answer may come after the job was created: never re-sent (no idempotency
    # key), although a second POST would succeed here (the faults strike once).
    "submit-500": SubmitCase(
        lambda: Fault("status", path=SUBMIT_ONLY, method="POST", status=500, remaining=1),
        posts=1,
        jobs=0,
        outcome=SUBMIT_UNCERTAIN,
    ),
    "submit-drop": SubmitCase(
        lambda: Fault("drop", path=SUBMIT_ONLY, method="POST", remaining=1),
        posts=1,
        jobs=0,
        outcome=SUBMIT_UNCERTAIN,
    ),
    # The answer is slower than the read timeout: the request was sent in full, and a real server may
    # be creating the job right now. (The simulator handles a delayed request only after the delay,
    # when this client has gone, and then creates none.)
    "submit-read-timeout": SubmitCase(
        lambda: Fault("delay", path=SUBMIT_ONLY, method="POST", seconds=SLOW_ANSWER, remaining=1),
        posts=1,
        jobs=0,
        outcome=SUBMIT_UNCERTAIN,
        read_timeout=SHORT_READ_TIMEOUT,
    ),
}
SUBMIT_COMPONENTS = ("recognize",)


# -- fakes for the task context ---------------------------------------------------------------------


class FakeTI:
    """What the sensor, the resumable mixin and the operators use of a task instance."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, Any]] = []
        self.dag_id, self.run_id, self.task_id, self.map_index = "faults", "run", "task", -1
        self.try_number = 1
        self.stats_tags: dict[str, str] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed.append((key, value))

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


class FakeStateStore:
    """Dict-backed ``task_state_store``, shared by every poke (reschedule) and every try (retry)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes: list[tuple[str, Any]] = []

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_kwargs: Any) -> None:
        self.data[key] = value
        self.writes.append((key, value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


@dataclass
class Arrival:
    """One request as the simulator logged it, stamped with its arrival time."""

    at: float  # time.monotonic(), the clock of the simulator's job timings
    wall: float  # time.time(), the clock of HTTP dates
    record: RequestRecord


@dataclass
class Run:
    """One component run: its inputs, its context, and what it left behind."""

    sim: SimulatorServer
    video: Path
    job_id: str | None = None
    ti: FakeTI = field(default_factory=FakeTI)
    store: FakeStateStore = field(default_factory=FakeStateStore)
    reschedules: int = 0
    timeout: float = WAIT_TIMEOUT  # the wait's own timeout

    @property
    def context(self) -> dict[str, Any]:
        return {"ti": self.ti, "task_state_store": self.store}


# -- the components -----------------------------------------------------------------------------------


def run_hook(run: Run) -> dict[str, Any]:
    hook = SlipstreamHook()
    try:
        job = hook.wait_for_job(str(run.job_id), poll_interval=POLL, timeout=run.timeout)
        assert job.is_completed
        return job.to_result(hook.config.competitor_labels_for(None))
    finally:
        hook.session.close()


def sensor(run: Run, mode: str) -> SlipstreamJobSensor:
    return SlipstreamJobSensor(
        task_id="wait", job_id=str(run.job_id), mode=mode, poke_interval=POLL, timeout=run.timeout, deferrable=False
    )


def run_sensor_poke(run: Run) -> dict[str, Any]:
    task = sensor(run, "poke")
    try:
        return task.execute(run.context)  # type: ignore[no-any-return]
    finally:
        task.hook.session.close()


def run_sensor_reschedule(run: Run) -> dict[str, Any]:
    # Airflow runs each poke of a rescheduled sensor as a new task instance try of a fresh object;
    # only the task state store carries over. The scheduler's wait is the poke interval.
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while time.monotonic() < deadline:
        task = sensor(run, "reschedule")
        try:
            return task.execute(run.context)  # type: ignore[no-any-return]
        except AirflowRescheduleException:
            run.reschedules += 1
        finally:
            task.hook.session.close()
        time.sleep(POLL)
    pytest.fail(f"the rescheduled sensor did not finish within {HANG_GUARD_SECONDS} s")


def run_trigger(run: Run, *, keep_waiting: bool) -> dict[str, Any]:
    trigger = SlipstreamJobTrigger(
        str(run.job_id),
        poll_interval=POLL,
        deadline=time.time() + run.timeout,
        keep_waiting_on_transient=keep_waiting,
    )

    async def collect() -> list[Any]:
        return [event async for event in trigger.run()]

    events = asyncio.run(asyncio.wait_for(collect(), HANG_GUARD_SECONDS))
    assert len(events) == 1, f"a trigger emits exactly one event, got {events}"
    payload: dict[str, Any] = events[0].payload
    assert json.loads(json.dumps(payload)) == payload, "the triggerer stores the event as JSON"
    if payload["status"] == "success":
        assert set(payload) == {"status", "job_id", "result"}
    else:
        assert set(payload) == {"status", "job_id", "error", "message"}
        assert payload["status"] == "error"
    assert payload["job_id"] == run.job_id
    # What the deferred task does with the event: return the result or raise the named error.
    return result_from_event(payload)


def run_recognize(run: Run) -> dict[str, Any]:
    operator = SlipstreamRecognizeVideoOperator(
        task_id="recognize", video_path=str(run.video), deferrable=False, poll_interval=POLL, timeout=run.timeout
    )
    try:
        return operator.execute(run.context)
    finally:
        run.job_id = next((job_id for key, job_id in run.ti.pushed if key == "job_id"), None)
        operator.hook.session.close()


RUNNERS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "hook": run_hook,
    "sensor-poke": run_sensor_poke,
    "sensor-reschedule": run_sensor_reschedule,
    "trigger": lambda run: run_trigger(run, keep_waiting=False),
    "trigger-keep-waiting": lambda run: run_trigger(run, keep_waiting=True),
    "recognize": run_recognize,
}
assert set(RUNNERS) == set(COMPONENTS)


# -- helpers --------------------------------------------------------------------------------------


def video_for(case_video: str, tmp_path: Path) -> Path:
    samples = sample_videos()
    if case_video in samples:
        return samples[case_video]
    path = tmp_path / case_video
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video " + case_video.encode())
    return path


@pytest.fixture
def arrivals(sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> list[Arrival]:
    """Every request the simulator logs from now on, stamped on arrival."""
    stamped: list[Arrival] = []
    record = sim_conn.state.record

    def stamp(entry: RequestRecord) -> None:
        stamped.append(Arrival(time.monotonic(), time.time(), entry))
        record(entry)

    monkeypatch.setattr(sim_conn.state, "record", stamp)
    return stamped


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    """One recorder for the hook's, the sensor's, the trigger's and the operator's logs."""
    recorder = LogRecorder()
    for cls in (SlipstreamHook, SlipstreamJobSensor, SlipstreamJobTrigger, SlipstreamRecognizeVideoOperator):
        monkeypatch.setattr(cls, "log", recorder)
    return recorder


def use_read_timeout(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    conn = {
        "conn_type": "slipstream",
        "host": sim.url,
        "password": sim.state.api_key,
        "extra": {**FAST_RETRY_EXTRA, "timeout": seconds},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SLIPSTREAM_DEFAULT", json.dumps(conn))


def execute(runner: Callable[[Run], dict[str, Any]], run: Run) -> tuple[dict[str, Any] | None, Exception | None]:
    try:
        return runner(run), None
    except Exception as exc:  # pytest's own failures are BaseExceptions and pass through
        return None, exc


def check_outcome(
    expected: Succeeds | Fails, result: dict[str, Any] | None, error: Exception | None, job_id: str | None
) -> None:
    assert job_id is not None
    if isinstance(expected, Succeeds):
        assert error is None, f"expected success, got {type(error).__name__}: {error}"
        assert result == expected_result(job_id, expected.match)
        return
    assert error is not None, f"expected {expected.error.__name__}, got the result {result}"
    assert type(error) is expected.error, f"expected {expected.error.__name__}, got {type(error).__name__}: {error}"
    message = str(error)
    for phrase in expected.advice:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    assert API_KEY not in message
    # Errors no retry can fix fail the task at once; transient ones leave Airflow's retries to it.
    if expected.error in (SlipstreamJobNotFoundError, SlipstreamAuthError):
        assert isinstance(error, AirflowFailException)
    if expected.error is SlipstreamTransientError:
        assert not isinstance(error, AirflowFailException)


def check_pacing(gets: list[Arrival]) -> None:
    """No tight loop: polls are POLL apart after an unfinished answer, retries never back to back."""
    for before, after in itertools.pairwise(gets):
        gap = after.at - before.at
        assert gap >= MIN_RETRY_GAP, f"two requests {gap:.3f} s apart"
        if before.record.fault is None and before.record.status == 200:
            assert gap >= POLL - PACE_SLACK, f"polled again {gap:.3f} s after an unfinished answer"


# -- the matrix ------------------------------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_matrix(
    fault: str,
    component: str,
    sim_conn: SimulatorServer,
    arrivals: list[Arrival],
    log: LogRecorder,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    case, sim = FAULTS[fault], sim_conn
    expected = case.expected(component)
    if case.read_timeout is not None:
        use_read_timeout(sim, monkeypatch, case.read_timeout)
    budget = SlipstreamHook().config.retry.max_retries
    assert budget == FAST_RETRY_EXTRA["max_retries"]
    run = Run(sim, video_for(case.video, tmp_path))
    if component != "recognize":  # the recognize operator submits by itself
        submitter = SlipstreamHook()
        run.job_id = submitter.submit_video(run.video).job_id
        submitter.session.close()
    injected = [sim.state.add_fault(f) for f in case.faults(budget)]
    injected_total = sum(f.remaining or 0 for f in injected)
    fired: list[float] = []
    timer = None
    if case.mid_wait is not None:
        action = case.mid_wait

        def strike() -> None:
            action(sim.state)
            fired.append(time.monotonic())

        timer = threading.Timer(MID_WAIT, strike)
        timer.start()

    started = time.monotonic()
    try:
        result, error = execute(RUNNERS[component], run)
    finally:
        elapsed = time.monotonic() - started
        if timer is not None:
            timer.cancel()
            timer.join()

    # 1. The outcome.
    check_outcome(expected, result, error, run.job_id)

    # 2. The API calls.
    requests = [a for a in arrivals if a.record.server == "api"]
    posts = [a for a in requests if a.record.method == "POST" and a.record.path == SUBMIT_PATH]
    gets = [a for a in requests if a.record.method == "GET" and fnmatch.fnmatchcase(a.record.path, JOB_GLOB)]
    assert len(posts) + len(gets) == len(requests), [(a.record.method, a.record.path) for a in requests]
    assert {a.record.path for a in gets} == {f"{SUBMIT_PATH}{run.job_id}/"}
    faulted = [a for a in gets if a.record.fault is not None]
    answered = [a for a in gets if a.record.fault is None]
    if expected == TRANSIENT:
        # One request's whole budget, all of it faulted, then the give-up: nothing more.
        assert len(gets) == budget + 1
        assert len(faulted) == budget + 1
        assert [f.remaining for f in injected] == [injected_total - (budget + 1)]
        assert len(log.warnings("Retry ")) == budget
    else:
        assert len(faulted) == injected_total, "each injected fault strikes exactly once"
        assert all(f.remaining == 0 for f in injected)
        assert answered, "the wait ended on a real answer"
        if case.final_status is None:
            assert {a.record.status for a in answered} == {200}
        else:
            # The mid-wait fault is answered once and ends the wait: no retry, no further poll.
            assert [a.record.status for a in answered[:-1]] == [200] * (len(answered) - 1)
            assert answered[-1].record.status == case.final_status
            assert gets[-1] is answered[-1]
            assert fired, "the mid-wait fault never struck"
            assert len(answered) - 1 <= MID_WAIT / POLL + 2, "polls before the fault struck"
        if injected and not component.startswith("sensor"):
            assert log.warnings("Retry 1 of "), "retries are logged"
    check_pacing(gets)
    # An upper bound from the elapsed time: each unfinished answer costs at least one POLL.
    assert len(answered) <= elapsed / (POLL - PACE_SLACK) + 1, (len(answered), elapsed)

    # 3. The jobs: exactly the one submitted.
    assert len(posts) == 1
    assert sim.state.jobs_created == 1
    assert list(sim.state.jobs) == [run.job_id]

    # What each fault specifically promises.
    if component == "recognize":
        # The job is kept for the next try from the moment it is known, until the task succeeds.
        assert run.store.writes[0] == (JOB_KEY, {"job_id": run.job_id, "video": str(run.video)})
        stored = {} if isinstance(expected, Succeeds) else {JOB_KEY: {"job_id": run.job_id, "video": str(run.video)}}
        assert run.store.data == stored
        assert run.ti.pushed == [("job_id", run.job_id)]
    # A poll that gave up after one request's whole budget (a sensor's poke is one request: each
    # faulted poke gave up); the waits that keep going log it and go on.
    per_poll = 1 if component.startswith("sensor") else budget + 1
    gave_up = len(faulted) // per_poll if isinstance(expected, Succeeds) else 0
    if component == "sensor-reschedule":
        # Every poke that did not end the wait rescheduled: each unfinished answer, each poll given up.
        assert run.reschedules == len(answered) - 1 + gave_up
    if component.startswith("sensor"):
        assert len(log.warnings("will poke again")) == gave_up, log.records
    if component in ("trigger-keep-waiting", "hook", "recognize"):
        assert len(log.warnings("Still waiting")) == gave_up, log.records
    if component.startswith("sensor") and fault.startswith("429"):
        # The pokes are the retries: the next one comes at the poke interval, not at Retry-After.
        after = gets[gets.index(faulted[0]) + 1]
        assert POLL - PACE_SLACK <= after.at - faulted[0].at < 1.0
    elif fault == "429-retry-after-seconds":
        after = gets[gets.index(faulted[0]) + 1]
        gap = after.at - faulted[0].at
        assert 1.0 - PACE_SLACK <= gap < 2.0, f"Retry-After: 1, retried after {gap:.3f} s"
    if fault == "429-retry-after-http-date" and not component.startswith("sensor"):
        retry_at = parsedate_to_datetime(injected[0].headers["Retry-After"]).timestamp()
        asked = retry_at - faulted[0].wall
        after = gets[gets.index(faulted[0]) + 1]
        assert after.wall >= retry_at - 0.05, f"retried {retry_at - after.wall:.3f} s before the date asked"
        assert after.wall - faulted[0].wall < asked + 1.0, "the server's date, not its own backoff on top"
    if fault == "read-timeout":
        after = gets[gets.index(faulted[0]) + 1]
        gap = after.at - faulted[0].at
        assert SHORT_READ_TIMEOUT <= gap < SLOW_ANSWER - 0.2, f"gave up the slow answer after {gap:.3f} s"
    if fault == "unknown-status":
        job = sim.state.jobs[str(run.job_id)]
        window = (job.started + job.queued_seconds, job.started + job.queued_seconds + job.processing_seconds)
        assert any(window[0] <= a.at < window[1] for a in answered), "no poll saw the undocumented status"
        assert any("transcoding" in msg for _level, msg in log.records), log.records


@pytest.mark.parametrize("component", SUBMIT_COMPONENTS)
@pytest.mark.parametrize("fault", list(SUBMIT_FAULTS))
def test_submit_faults(
    fault: str,
    component: str,
    sim_conn: SimulatorServer,
    arrivals: list[Arrival],
    log: LogRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case, sim = SUBMIT_FAULTS[fault], sim_conn
    if case.read_timeout is not None:
        use_read_timeout(sim, monkeypatch, case.read_timeout)
    injected = sim.state.add_fault(case.fault())
    run = Run(sim, sample_videos()["internal"])

    result, error = execute(RUNNERS[component], run)

    posts = [a for a in arrivals if a.record.method == "POST" and a.record.path == SUBMIT_PATH]
    gets = [a for a in arrivals if a.record.method == "GET"]
    assert len(posts) == case.posts
    assert injected.remaining == 0
    assert sim.state.jobs_created == case.jobs
    if isinstance(case.outcome, Succeeds):
        check_outcome(case.outcome, result, error, run.job_id)
        assert list(sim.state.jobs) == [run.job_id]
        assert run.store.writes[0] == (JOB_KEY, {"job_id": run.job_id, "video": str(run.video)})
        assert run.store.data == {}, "removed once the task succeeded"
        assert gets, "it waited for the job"
        check_pacing(gets)
        assert posts[1].at - posts[0].at >= MIN_RETRY_GAP
    else:
        check_outcome(case.outcome, result, error, "no job")
        assert gets == [], "nothing to wait for"
        # No job id is known, so none is stored: nothing for a task retry to resume.
        assert run.store.data == {}
        assert run.ti.pushed == []
    if fault == "submit-read-timeout":
        assert "ReadTimeout" in str(error), "the message names what happened"


# -- a server-requested wait beyond the wait's own timeout ---------------------------------------------

#: The wait's timeout in this test, and the wait Slipstream asks for with its 429: far longer.
SHORT_TIMEOUT = 0.6
LONG_RETRY_AFTER = 2
#: The components that own their timeout (a sensor's timeout is Airflow's, checked between pokes).
TIMEOUT_COMPONENTS = ("hook", "trigger", "trigger-keep-waiting", "recognize")
TIMED_OUT = Fails(SlipstreamJobTimeoutError, ("Raise the timeout",))


@pytest.mark.parametrize("component", TIMEOUT_COMPONENTS)
@pytest.mark.parametrize("fault", ["retry-after-beyond-timeout"])
def test_timeout_bounds_a_server_requested_wait(
    fault: str, component: str, sim_conn: SimulatorServer, arrivals: list[Arrival], tmp_path: Path
) -> None:
    """
    A wait ends at its timeout even when Slipstream asks for a longer pause (429 + Retry-After).

    The job never completes; the first poll is throttled with a Retry-After far beyond the timeout.
    Sleeping it out cannot help (the deadline passes meanwhile), and every Retry-After of the
    budget would add up: with the production defaults (max_retries 5, Retry-After honoured up to
    300 s) a wait with a 60 s timeout could last 25 minutes.
    """
    sim = sim_conn
    run = Run(sim, video_for("stall_clip.mp4", tmp_path), timeout=SHORT_TIMEOUT)
    if component != "recognize":
        submitter = SlipstreamHook()
        run.job_id = submitter.submit_video(run.video).job_id
        submitter.session.close()
    sim.state.add_fault(job_fault("status", 1, status=429, headers={"Retry-After": str(LONG_RETRY_AFTER)}))

    started = time.monotonic()
    result, error = execute(RUNNERS[component], run)
    elapsed = time.monotonic() - started

    assert error is not None, result
    assert type(error) is SlipstreamJobTimeoutError, (
        f"{type(error).__name__} after {elapsed:.2f} s (timeout {SHORT_TIMEOUT} s): {error}"
    )
    assert elapsed <= SHORT_TIMEOUT + POLL + 0.3, (
        f"a wait with a {SHORT_TIMEOUT} s timeout lasted {elapsed:.2f} s: it slept out a "
        f"Retry-After of {LONG_RETRY_AFTER} s past its deadline"
    )
    check_outcome(TIMED_OUT, result, error, run.job_id)
    gets = [a for a in arrivals if a.record.method == "GET"]
    assert 1 <= len(gets) <= SHORT_TIMEOUT / POLL + 2
    assert sim.state.jobs_created == 1
