"""
The example DAGs on a real Airflow deployment: API server, scheduler (LocalExecutor), DAG
processor and triggerer as separate processes on SQLite, driven only through the REST API.

One run of ``slipstream_audioverify`` per match kind and one run of the batch DAG, all at
once. Checked: the branch of each clip, the reschedule sensor giving its worker slot back
between pokes (seen in the REST states, the task_reschedule records and the executor's worker
processes), the deferrable tasks waiting on the triggerer with our trigger, and one Slipstream
job per clip.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import SimulatorServer, SimulatorState
from tests.contract import expected_catalog, expected_result
from tests.e2e.conftest import AirflowDeployment, ProcessRegistry, TaskInstanceWatcher

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SINGLE = "slipstream_audioverify"
BATCH = "slipstream_audioverify_batch"
BRANCH_FOR = {
    "internal": "catalog_match",
    "competitor": "flag_competitor",
    "external": "review_outside_track",
    "no_match": "no_music",
}
#: Simulated processing outlasts several 2 s pokes, so the sensor reschedules more than once.
PROCESSING_SECONDS = 8.0
#: Bounds of the whole module: start-up, and the runs once triggered.
STARTUP_TIMEOUT = 180
RUNS_TIMEOUT = 240

TRIGGER_CLASSPATH = "airflow_provider_slipstream.triggers.slipstream.SlipstreamJobTrigger"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Sample:
    at: float  # Unix time, taken after the process snapshot
    states: dict[str, tuple[str | None, str | None]]  # ti id -> (state, end_date), from the REST poll before
    slots: set[str]  # ti ids that a LocalExecutor worker process (a slot) is busy with
    tasks: set[str]  # ti ids that have a live task process

    @property
    def wall(self) -> str:
        """UTC time of day, to compare with the components' logs."""
        return datetime.fromtimestamp(self.at, timezone.utc).strftime("%H:%M:%S.%f")[:-3]


@dataclass
class SlotSampler:
    """
    After each REST poll, which task instances the LocalExecutor's worker processes are running.

    A slot of the LocalExecutor is a child process of the scheduler titled
    ``airflow worker -- LocalExecutor: <ti id>`` while busy (``... <idle>`` otherwise); the task
    process it supervises is titled ``airflow worker -- <ti id>``.
    """

    registry: ProcessRegistry
    samples: list[Sample] = field(default_factory=list)

    def __call__(self, tis: list[dict[str, Any]]) -> None:
        slots: set[str] = set()
        tasks: set[str] = set()
        for proc in self.registry.get("scheduler").descendants():
            try:
                title = " ".join(proc.cmdline())
            except Exception:  # gone meanwhile
                continue
            if "airflow worker --" in title:
                (slots if "LocalExecutor" in title else tasks).update(UUID.findall(title))
        states = {ti["id"]: (ti["state"], ti["end_date"]) for ti in tis}
        self.samples.append(Sample(time.time(), states, slots, tasks))

    def waits(self, ti_ids: set[str], state: str) -> dict[tuple[str, str], list[tuple[float, Sample]]]:
        """
        The waits in ``state`` of these task instances: {(ti id, start): [(seconds in, sample), ...]}.

        One wait is one value of (state, ``end_date``): each poke or deferral sets ``end_date``,
        and a wait starts there (else when first seen). A sample counts when the polls before
        and after it show the same wait, so it was taken inside it, not at a transition.
        """
        found: dict[tuple[str, str], list[tuple[float, Sample]]] = {}
        for ti_id in ti_ids:
            period: tuple[str | None, str | None] | None = None
            first_seen = 0.0
            for sample, after in pairwise(self.samples):
                current = sample.states.get(ti_id)
                if current is None or current[0] != state:
                    period = None
                    continue
                if current != period:
                    period, first_seen = current, sample.at
                if after.states.get(ti_id) != current:
                    continue
                entered = datetime.fromisoformat(current[1]).timestamp() if current[1] else first_seen
                found.setdefault((ti_id, current[1] or str(first_seen)), []).append((sample.at - entered, sample))
        return found

    def ever_busy(self) -> set[str]:
        return set().union(*(sample.slots for sample in self.samples))


@dataclass
class Outcome:
    deployment: AirflowDeployment
    sim: SimulatorServer
    run_ids: dict[str, str]
    batch_run_id: str
    states: dict[tuple[str, str], str]
    tis: dict[tuple[str, str, int], dict[str, Any]]
    watcher: TaskInstanceWatcher
    slots: SlotSampler
    jobs_before: int
    seconds: float

    def ti(self, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        return self.tis[(run_id, task_id, map_index)]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorState(queued_seconds=0.5, processing_seconds=PROCESSING_SECONDS)) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(sim, process_registry, tmp_path_factory, wall_clock) -> AirflowDeployment:
    conn = json.dumps({"conn_type": "slipstream", "host": sim.url, "password": sim.state.api_key})
    airflow = AirflowDeployment(
        tmp_path_factory.mktemp("airflow_home"),
        process_registry,
        executor="LocalExecutor",
        slipstream_conn=conn,
        extra_env={"AIRFLOW__CORE__PARALLELISM": "4"},
    )
    start = time.monotonic()
    airflow.start_core([SINGLE, BATCH], timeout=STARTUP_TIMEOUT)
    wall_clock["start-up (migrate + components + parse)"] = time.monotonic() - start
    return airflow


@pytest.fixture(scope="module")
def outcome(deployment, sim, process_registry, wall_clock) -> Outcome:
    api = deployment.api
    api.unpause(SINGLE)
    api.unpause(BATCH)
    jobs_before = sim.state.jobs_created
    slots = SlotSampler(process_registry)
    start = time.monotonic()
    with TaskInstanceWatcher(api, interval=0.3, sample=slots) as watcher:
        run_ids = {}
        for match, path in sample_videos().items():
            run_ids[match] = api.trigger(SINGLE, f"e2e_{match}", {"video_path": str(path)})["dag_run_id"]
        batch_run_id = api.trigger(BATCH, "e2e_batch")["dag_run_id"]
        runs = [(SINGLE, run_id) for run_id in run_ids.values()] + [(BATCH, batch_run_id)]
        states = api.wait_for_runs(runs, RUNS_TIMEOUT, check=process_registry.check_alive)
    seconds = time.monotonic() - start
    wall_clock["DAG runs (trigger to finished)"] = seconds
    tis = {(ti["dag_run_id"], ti["task_id"], ti["map_index"]): ti for ti in api.task_instances()}
    print(f"\n[e2e] LocalExecutor: {len(runs)} DAG runs finished in {seconds:.1f}s: {states}")
    print(f"[e2e] simulator jobs created: {sim.state.jobs_created - jobs_before}")
    return Outcome(deployment, sim, run_ids, batch_run_id, states, tis, watcher, slots, jobs_before, seconds)


def test_every_run_succeeded(outcome: Outcome):
    failed = {run: state for run, state in outcome.states.items() if state != "success"}
    assert not failed, f"runs not successful: {failed}\n{outcome.deployment.failure_report(outcome.tis.values())}"


@pytest.mark.parametrize("match", list(BRANCH_FOR))
def test_each_clip_takes_the_branch_of_its_match(outcome: Outcome, match: str):
    run_id = outcome.run_ids[match]
    api = outcome.deployment.api
    for kind, branch in BRANCH_FOR.items():
        assert outcome.ti(run_id, branch)["state"] == ("success" if kind == match else "skipped"), (kind, branch)
    job_id = api.xcom(SINGLE, run_id, "submit")
    assert outcome.sim.state.jobs[job_id] is not None
    assert api.xcom(SINGLE, run_id, "wait") == expected_result(job_id, match)
    catalog = {"catalog": expected_catalog()} if match == "internal" else {}
    assert api.xcom(SINGLE, run_id, "get_track") == {**expected_result(job_id, match), **catalog}
    assert api.xcom(SINGLE, run_id, BRANCH_FOR[match])["job_id"] == job_id
    # The catalog match is licensed for the uploader (the DAG's default user_id); nothing else is.
    assert outcome.ti(run_id, "license_track")["state"] == ("success" if match == "internal" else "skipped")


def test_reschedule_sensor_gave_its_worker_slot_back_between_pokes(outcome: Outcome):
    deployment, watcher = outcome.deployment, outcome.watcher
    sensor_ids = set()
    for match, run_id in outcome.run_ids.items():
        ti = outcome.ti(run_id, "wait")
        sensor_ids.add(ti["id"])
        # Seen waiting between pokes, on its first and only try.
        seen = watcher.states(SINGLE, run_id, "wait")
        assert "up_for_reschedule" in seen, (match, seen)
        assert ti["try_number"] == 1
        assert watcher.tries(SINGLE, run_id, "wait") <= {0, 1}, watcher.seen[(SINGLE, run_id, "wait", -1)]

        # Each poke was a separate, short execution: rescheduled, then started again no earlier.
        pokes = reschedules(deployment, ti["id"])
        assert len(pokes) >= 1, (match, pokes)
        assert all(end <= reschedule_at for _, end, reschedule_at in pokes), (match, pokes)
        for (_, _, reschedule_at), (next_start, _, _) in pairwise(pokes):
            assert reschedule_at <= next_start, (match, pokes)
        log = deployment.task_log(SINGLE, run_id, "wait")
        assert log.count("Rescheduling task, marking task as UP_FOR_RESCHEDULE") == len(pokes), log[-3000:]

    # While a sensor was up_for_reschedule, no process ran it, and its LocalExecutor slot was free
    # (after the supervisor noticed the poke's exit: up to [workers] min_heartbeat_interval).
    assert_no_slot_held(outcome, sensor_ids, "up_for_reschedule")


def test_deferrable_tasks_waited_on_the_triggerer(outcome: Outcome):
    deployment, watcher = outcome.deployment, outcome.watcher
    kinds = list(sample_videos())
    recognize = [outcome.ti(outcome.batch_run_id, "recognize", i) for i in range(len(kinds))]
    assert [ti["state"] for ti in recognize] == ["success"] * len(kinds)
    results = [deployment.api.xcom(BATCH, outcome.batch_run_id, "recognize", i) for i in range(len(kinds))]
    for result, kind in zip(results, kinds, strict=True):
        assert result == expected_result(result["job_id"], kind)

    for i in range(len(kinds)):
        assert "deferred" in watcher.states(BATCH, outcome.batch_run_id, "recognize", i), watcher.seen
    assert_no_slot_held(outcome, {ti["id"] for ti in recognize}, "deferred")

    # Our trigger ran on the triggerer we started, and saw each job complete there.
    triggerer_jobs = {job["id"] for job in deployment.api.get("/jobs", job_type="TriggererJob")["jobs"]}
    assert triggerer_jobs, "no TriggererJob registered"
    for i, result in enumerate(results):
        trigger = watcher.triggers.get((BATCH, outcome.batch_run_id, "recognize", i))
        assert trigger is not None, f"recognize[{i}] was never seen with its trigger"
        assert trigger["classpath"] == TRIGGER_CLASSPATH
        # The triggerer writes the trigger's log beside the task's: attempt=1.log.trigger.<job id>.log
        files = [
            p for p in deployment.task_log_files(BATCH, outcome.batch_run_id, "recognize", i) if ".trigger." in p.name
        ]
        assert len(files) == 1, files
        assert int(files[0].name.rsplit(".", 2)[-2]) in triggerer_jobs
        trigger_log = files[0].read_text()
        assert f'"logger":"{TRIGGER_CLASSPATH}"' in trigger_log
        assert f"Slipstream job {result['job_id']} is completed" in trigger_log
        assert "Trigger fired event" in trigger_log

    summary = deployment.api.xcom(BATCH, outcome.batch_run_id, "summarize")
    assert summary["videos"] == len(kinds)
    assert summary["counts"] == {"internal": 1, "competitor": 1, "external": 1, "no_match": 1}


def test_one_slipstream_job_per_clip(outcome: Outcome):
    clips = len(outcome.run_ids) + len(sample_videos())
    assert outcome.sim.state.jobs_created - outcome.jobs_before == clips
    submitted = {outcome.deployment.api.xcom(SINGLE, run_id, "submit") for run_id in outcome.run_ids.values()}
    recognized = {
        outcome.deployment.api.xcom(BATCH, outcome.batch_run_id, "recognize", i)["job_id"]
        for i in range(len(sample_videos()))
    }
    assert len(submitted | recognized) == clips


def assert_no_slot_held(outcome: Outcome, ti_ids: set[str], state: str) -> None:
    """
    While waiting in ``state``, each task instance gave its LocalExecutor slot back.

    A worker's supervisor notices its task process ended at its next wake-up (up to
    ``[workers] min_heartbeat_interval``), so a slot may still carry the task instance at the
    start of a wait. What must hold: in each wait, once the slot is free it stays free, and
    every task instance was seen waiting with no process and no slot running it. Holding the
    slot (``mode="poke"``, or a worker-side wait) would show it busy for the whole wait.
    """
    waits = outcome.slots.waits(ti_ids, state)
    assert waits, f"never saw a task instance waiting in {state}; polls: {outcome.watcher.polls}"

    def busy(ti_id: str, sample: Sample) -> bool:
        return ti_id in sample.slots or ti_id in sample.tasks

    reacquired, busy_for = [], []
    for (ti_id, start), samples in waits.items():
        flags = [busy(ti_id, sample) for _, sample in samples]
        if False in flags and True in flags[flags.index(False) :]:
            timeline = [(round(t, 2), sample.wall, flag) for (t, sample), flag in zip(samples, flags, strict=True)]
            reacquired.append((ti_id, start, timeline))
        busy_for += [t for (t, _), flag in zip(samples, flags, strict=True) if flag]
    free = {ti_id for (ti_id, _), samples in waits.items() for _, sample in samples if not busy(ti_id, sample)}
    print(
        f"[e2e] {state}: {len(waits)} waits of {len(ti_ids)} task instances, "
        f"{sum(map(len, waits.values()))} samples; slot still busy at most {max(busy_for, default=0):.2f}s in"
    )
    assert reacquired == [], f"a slot ran a task instance again during one wait in {state}: {reacquired}"
    assert free == ti_ids, f"never seen waiting in {state} with its slot free: {sorted(ti_ids - free)}"
    # The sampling itself sees busy slots running our task instances.
    ours = {ti["id"] for ti in outcome.tis.values()}
    assert outcome.slots.ever_busy() & ours, "the slot sampler never saw a busy LocalExecutor worker"


def reschedules(deployment: AirflowDeployment, ti_id: str) -> list[tuple[str, str, str]]:
    """The task_reschedule records of one task instance: (start, end, reschedule_date), in order."""
    db = sqlite3.connect(f"file:{deployment.home / 'airflow.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute(
            "SELECT start_date, end_date, reschedule_date FROM task_reschedule WHERE ti_id = ? ORDER BY id",
            (ti_id.replace("-", ""),),
        ).fetchall()
        if not rows:  # stored with dashes on some SQLAlchemy versions
            rows = db.execute(
                "SELECT start_date, end_date, reschedule_date FROM task_reschedule WHERE ti_id = ? ORDER BY id",
                (ti_id,),
            ).fetchall()
    finally:
        db.close()
    return rows
