"""
Crash faults on a real CeleryExecutor deployment: PostgreSQL, Redis, two Celery workers, scheduler,
DAG processor, API server and (at first) two triggerers, all separate processes on loopback.

Each test runs ``slipstream_chaos`` (tests/e2e/dags) over clips of its own, kills one component
with SIGKILL at a chosen moment, restarts what a supervisor (systemd, Kubernetes) would restart,
and checks the ledger (:func:`check_ledger`): the run succeeded, every task instance is in a final
state, each clip was recognised exactly once (one simulator job per file name) with the result its
name asks for, and nothing is left behind (task state store rows, ledger Variables, triggers).
Each test prints a ``[chaos]`` line with the figures of the table in docs/reliability.md.

The tests share one deployment, in file order: the first kills one of the two triggerers, the
second the survivor. Switched like the Celery e2e test (``SLIPSTREAM_E2E_CELERY=1``, ``-m celery``
or this file named); ``-m "not slow"`` leaves out the two 60 s outages.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_slipstream.simulator import Fault, SimulatorServer, SimulatorState
from tests.contract import expected_result
from tests.e2e.conftest import TaskInstanceWatcher, wait_until
from tests.e2e.services import celery_deployment, host_named, start_celery_worker, wait_celery_ready

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from tests.e2e.conftest import AirflowApi, AirflowDeployment, ManagedProcess, ProcessRegistry
    from tests.e2e.services import PostgresServer

pytestmark = [pytest.mark.e2e, pytest.mark.celery, pytest.mark.chaos, pytest.mark.timeout(480)]

DAG_ID = "slipstream_chaos"
DAGS = Path(__file__).resolve().parent / "dags"
WORKERS = ("chaos-worker-a", "chaos-worker-b")
TRIGGERERS = ("chaos-triggerer-a", "chaos-triggerer-b")
#: Each of the two triggerers runs at most this many triggers, fewer than the first test's 20 waits:
#: Airflow gives unassigned triggers to whichever triggerer asks first, so only a cap makes both
#: hold some (on a loaded machine one took all 20).
SHARED_CAPACITY = 12
CONCURRENCY = 4
#: Scenario keyword in a clip's name -> the match kind the provider reports.
SCENARIOS = {"internal": "internal", "competitor": "competitor", "external": "external", "no_music": "no_match"}
#: The conf lists of the DAG -> the mapped task that returns each clip's result.
RESULT_TASKS = {
    "deferred": "recognize_deferred",
    "worker": "recognize_worker",
    "sense_deferred": "sense_deferred",
    "sense_reschedule": "sense_reschedule",
    "sense_poke": "sense_poke",
}
DEFERRING_TASKS = ("recognize_deferred", "sense_deferred")
#: Detection bounds of this deployment, short so that a recovery shows within a minute: a task whose
#: worker died is failed (then retried) after this many seconds without a heartbeat (default 300);
#: a dead triggerer's triggers move after this many seconds without its heartbeat (default 30).
#: The heartbeat timeout stays above this deployment's API server restart (kill, RESTART_DELAY,
#: start: 19.5 s in the recorded run), or Airflow fails tries that still run (docs/reliability.md,
#: "The API server restarting").
TASK_HEARTBEAT_TIMEOUT = 45
TRIGGERER_HEALTH_THRESHOLD = 10
OUTAGE_SECONDS = 60
#: What a supervisor takes to restart a dead process (Kubernetes: 10 s at first, systemd: 100 ms).
RESTART_DELAY = 3
RUN_TIMEOUT = 360
STARTUP_TIMEOUT = 240
#: A clip big enough that a kill lands mid-upload (presigned: over the 25 MiB threshold).
LARGE_CLIP_BYTES = 40 * 1024 * 1024
JOB_PATH = "/api/v4/video-recognition/{}/"
SUBMIT_PATH = "/api/v4/video-recognition/"
FINAL = frozenset({"success", "skipped"})


@dataclass
class Ledger:
    """What one run left: checked by check_ledger, printed for the reliability table."""

    clips: int
    jobs: int
    failed_tries: int
    recovery_seconds: float

    def row(self, case: str, happened: str) -> str:
        return (
            f"[chaos] {case}: {happened}; clips {self.clips}, jobs {self.jobs}, failed tries "
            f"{self.failed_tries}, fault to run finished {self.recovery_seconds:.1f}s"
        )


@dataclass
class Chaos:
    deployment: AirflowDeployment
    sim: SimulatorServer
    postgres: PostgresServer
    folder: Path
    #: job id -> milliseconds from Slipstream creating it to the task state store holding it.
    store_delays: dict[str, float] = field(default_factory=dict)

    @property
    def api(self) -> AirflowApi:
        return self.deployment.api

    @property
    def procs(self) -> ProcessRegistry:
        return self.deployment.procs

    def clips(self, case: str, counts: dict[str, int], size: int = 0) -> dict[str, list[Path]]:
        """``counts[list]`` clips for each conf list, ``<case>_<list>_<i>_<scenario>.mp4``, scenarios in turn."""
        made: dict[str, list[Path]] = {}
        for kind, count in counts.items():
            for i in range(count):
                path = self.folder / f"{case}_{kind}_{i:02d}_{list(SCENARIOS)[i % len(SCENARIOS)]}.mp4"
                body = f"{path.name} ".encode() * 64
                path.write_bytes(body + b"\0" * max(0, size - len(body)))
                made.setdefault(kind, []).append(path)
        return made

    def trigger(self, run_id: str, clips: dict[str, list[Path]]) -> None:
        self.api.trigger(DAG_ID, run_id, {kind: [str(p) for p in paths] for kind, paths in clips.items()})

    def tis(self, run_id: str, *task_ids: str) -> list[dict[str, Any]]:
        return [ti for ti in self.api.task_instances(DAG_ID, run_id) if not task_ids or ti["task_id"] in task_ids]

    def wait(self, condition: Callable[[], Any], what: str, timeout: float = 240) -> Any:
        return wait_until(condition, timeout, what, interval=0.5, check=self.procs.check_alive)

    def jobs_for(self, clips: dict[str, list[Path]]) -> Counter[str]:
        """Simulator jobs per clip name."""
        names = {path.name for paths in clips.values() for path in paths}
        return Counter(name for job in self.sim.state.jobs.values() if (name := clip_name(job.filename)) in names)

    def triggerer_hosts(self) -> dict[int, str]:
        """TriggererJob id -> the host name its process recorded (one of TRIGGERERS)."""
        return {job["id"]: job["hostname"] for job in self.api.get("/jobs", job_type="TriggererJob")["jobs"]}

    def worker(self, name: str) -> ManagedProcess:
        """The live process of Celery worker ``name`` (the newest one started under that name)."""
        return self.procs.latest(f"celery-worker-{name}")

    def sample_store(self, _tis: list[dict[str, Any]]) -> None:
        """For the duplicate window: when each job id reached the task state store (read while runs go on)."""
        jobs = self.sim.state.jobs
        for value, updated_at in self.postgres.query("SELECT value, updated_at FROM task_state_store"):
            job_id = json.loads(value).get("job_id")
            if job_id in jobs and job_id not in self.store_delays:
                delay = (updated_at - jobs[job_id].created_at).total_seconds() * 1000
                self.store_delays[job_id] = delay


def clip_name(filename: str) -> str:
    """The clip a job was made from: a presigned upload's job is named after its storage key, ``<hex>_<clip>``."""
    prefix, _, rest = filename.partition("_")
    return rest if len(prefix) == 32 and all(c in "0123456789abcdef" for c in prefix) else filename


def triggerer_args(capacity: int | None = None) -> list[str]:
    return ["triggerer", "--skip-serve-logs", *(["--capacity", str(capacity)] if capacity else [])]


def start_triggerer(airflow: AirflowDeployment, name: str, capacity: int) -> ManagedProcess:
    """A triggerer whose job records ``name`` as its host, so that the triggerers can be told apart."""
    return airflow.start(name, *triggerer_args(capacity), env=host_named(name))


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorState(queued_seconds=0.5, processing_seconds=20)) as server:
        yield server


@pytest.fixture(scope="module")
def chaos(sim, postgres, redis, process_registry, tmp_path_factory) -> Chaos:
    airflow = celery_deployment(
        tmp_path_factory.mktemp("airflow_home"),
        process_registry,
        sim,
        postgres,
        redis,
        concurrency=CONCURRENCY,
        extra_env={
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__PARALLELISM": "64",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH_THRESHOLD),
        },
    )
    airflow.start_core([DAG_ID], timeout=STARTUP_TIMEOUT, triggerer=False)
    for name in TRIGGERERS:
        start_triggerer(airflow, name, SHARED_CAPACITY)
    for name in WORKERS:
        start_celery_worker(airflow, name, CONCURRENCY, STARTUP_TIMEOUT)
    chaos = Chaos(airflow, sim, postgres, tmp_path_factory.mktemp("clips"))
    chaos.wait(lambda: set(TRIGGERERS) <= set(chaos.triggerer_hosts().values()), "both triggerers to register")
    airflow.api.unpause(DAG_ID)
    return chaos


@pytest.fixture(scope="module", autouse=True)
def duplicate_window(chaos: Chaos) -> Iterator[None]:
    """After the module: how long the window is in which a dead worker leaves a job unstored."""
    yield
    delays = sorted(chaos.store_delays.values())
    if delays:
        p95 = delays[min(len(delays) - 1, int(len(delays) * 0.95))]
        print(
            f"\n[chaos] job created -> id in the task state store, {len(delays)} jobs: median {median(delays):.0f} ms, "
            f"p95 {p95:.0f} ms, max {delays[-1]:.0f} ms"
        )


def check_ledger(
    chaos: Chaos,
    run_id: str,
    clips: dict[str, list[Path]],
    fault_at: float,
    *,
    jobs_per_clip: dict[str, int] | None = None,
) -> Ledger:
    """The run's outcome after a fault: everything recognised once, correct, final, and cleaned up."""
    chaos.api.wait_for_runs([(DAG_ID, run_id)], RUN_TIMEOUT, check=chaos.procs.check_alive)
    run = chaos.api.dag_run(DAG_ID, run_id)
    tis = chaos.tis(run_id)
    assert run["state"] == "success", chaos.deployment.failure_report(tis)
    unfinished = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in tis if ti["state"] not in FINAL}
    assert not unfinished, unfinished

    names = [path.name for paths in clips.values() for path in paths]
    jobs = chaos.jobs_for(clips)
    assert jobs == Counter({name: (jobs_per_clip or {}).get(name, 1) for name in names})
    for kind, paths in clips.items():
        for i, path in enumerate(paths):
            result = chaos.api.xcom(DAG_ID, run_id, RESULT_TASKS[kind], i)
            scenario = next(s for s in SCENARIOS if path.stem.endswith(s))
            assert result == expected_result(result["job_id"], SCENARIOS[scenario]), (kind, i)
            assert clip_name(chaos.sim.state.jobs[result["job_id"]].filename) == path.name

    # Nothing left behind: no stored job, no fallback Variable, no trigger.
    assert chaos.postgres.query("SELECT task_id, map_index FROM task_state_store WHERE run_id = %s", run_id) == []
    assert chaos.postgres.query("SELECT key FROM variable WHERE key LIKE 'slipstream_job%%'") == []
    chaos.wait(lambda: chaos.postgres.query("SELECT count(*) FROM trigger") == [(0,)], "the triggers to be removed", 60)

    ended = datetime.fromisoformat(run["end_date"]).timestamp()
    failed_tries = sum(max(0, (ti["try_number"] or 0) - 1) for ti in tis)
    return Ledger(len(names), sum(jobs.values()), failed_tries, ended - fault_at)


def deferred_on(chaos: Chaos, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Deferred task instances of the run whose trigger a triggerer runs, by the triggerer's host name."""
    hosts = chaos.triggerer_hosts()
    found: dict[str, list[dict[str, Any]]] = {}
    for ti in chaos.tis(run_id, *DEFERRING_TASKS):
        triggerer_id = (ti.get("trigger") or {}).get("triggerer_id")
        if ti["state"] == "deferred" and triggerer_id in hosts:
            found.setdefault(hosts[triggerer_id], []).append(ti)
    return found


def fired_by(chaos: Chaos, ti: dict[str, Any]) -> set[str]:
    """Host names of the triggerers whose log of this task instance's trigger shows it fired."""
    hosts = chaos.triggerer_hosts()
    files = chaos.deployment.task_log_files(DAG_ID, ti["dag_run_id"], ti["task_id"], ti["map_index"])
    return {
        hosts.get(int(path.name.rsplit(".", 2)[-2]), "?")
        for path in files
        if ".trigger." in path.name and "Trigger fired event" in path.read_text(errors="replace")
    }


# --------------------------------------------------------------------------------------------
# The triggerer
# --------------------------------------------------------------------------------------------


def test_two_triggerers_one_killed_the_survivor_takes_over(chaos: Chaos):
    chaos.sim.state.configure(processing_seconds=30)
    clips = chaos.clips("two_triggerers", {"deferred": 12, "sense_deferred": 8})
    chaos.trigger("two_triggerers", clips)
    with TaskInstanceWatcher(chaos.api, interval=1.0, sample=chaos.sample_store):
        holders = chaos.wait(
            lambda: (found := deferred_on(chaos, "two_triggerers")) and sum(map(len, found.values())) == 20 and found,
            "all 20 waits deferred to a triggerer",
        )
        assert set(holders) == set(TRIGGERERS), {host: len(tis) for host, tis in holders.items()}
        victim = max(holders, key=lambda host: len(holders[host]))
        survivor = next(host for host in TRIGGERERS if host != victim)
        fault_at = time.time()
        chaos.procs.kill(chaos.procs.get(victim))
        ledger = check_ledger(chaos, "two_triggerers", clips, fault_at)
    # Every trigger the dead triggerer held fired on the survivor (as its own finished and freed
    # capacity): no restart was needed.
    moved = holders[victim]
    assert all(fired_by(chaos, ti) == {survivor} for ti in moved), [fired_by(chaos, ti) for ti in moved]
    print(ledger.row("two triggerers, one killed", f"{len(moved)} of 20 triggers moved to the survivor"))


def test_triggerer_killed_with_50_deferred_tasks_a_new_one_finishes_them(chaos: Chaos):
    # Long jobs: 70 task runs (30 recognitions, 20 submits, 20 sensors) start before all 50 defer.
    chaos.sim.state.configure(processing_seconds=90)
    # The one triggerer left, without the cap the first test needed (it holds nothing now: that run
    # is over), as its supervisor would restart it after a configuration change.
    capped = next(p for p in chaos.procs.processes if p.name in TRIGGERERS and p.killed_at is None)
    chaos.procs.kill(capped)
    survivor = chaos.procs.restart(capped, [*capped.argv[:1], *triggerer_args()])
    host = capped.name
    clips = chaos.clips("triggerer_kill", {"deferred": 30, "sense_deferred": 20})
    chaos.trigger("triggerer_kill", clips)
    with TaskInstanceWatcher(chaos.api, interval=1.0, sample=chaos.sample_store):
        chaos.wait(
            lambda: len(deferred_on(chaos, "triggerer_kill").get(host, [])) == 50,
            "all 50 waits deferred to the triggerer",
        )
        jobs_before = sum(chaos.jobs_for(clips).values())
        fault_at = time.time()
        chaos.procs.kill(survivor)
        time.sleep(RESTART_DELAY)
        chaos.procs.restart(survivor)
        ledger = check_ledger(chaos, "triggerer_kill", clips, fault_at)
    assert jobs_before == 50
    tis = chaos.tis("triggerer_kill", *DEFERRING_TASKS)
    assert len(tis) == 50
    assert all(fired_by(chaos, ti) == {host} for ti in tis)  # the new process, same host name
    print(ledger.row("triggerer killed, restarted", "50 deferred waits resumed on the new triggerer"))


# --------------------------------------------------------------------------------------------
# A Celery worker
# --------------------------------------------------------------------------------------------


def kill_worker_running(chaos: Chaos, ti: dict[str, Any]) -> tuple[str, float]:
    """Kill the Celery worker running this task instance; return its name and the time."""
    victim = ti["hostname"]
    assert victim in WORKERS, ti
    fault_at = time.time()
    chaos.procs.kill(chaos.worker(victim))
    return victim, fault_at


def retried_elsewhere_then_restart(chaos: Chaos, run_id: str, task_id: str, victim: str) -> dict[str, Any]:
    """Wait for the retry of the killed task on the other worker, then restart the dead worker."""
    other = next(name for name in WORKERS if name != victim)
    retry = chaos.wait(
        lambda: next(
            (ti for ti in chaos.tis(run_id, task_id) if ti["try_number"] >= 2 and ti["hostname"] == other), None
        ),
        f"{task_id} to be retried on {other}",
    )
    restarted = chaos.procs.restart(chaos.worker(victim))
    wait_celery_ready(chaos.deployment, restarted, STARTUP_TIMEOUT)
    return retry


def test_worker_killed_during_a_worker_side_wait_the_retry_resumes_its_job(chaos: Chaos):
    chaos.sim.state.configure(processing_seconds=45)
    clips = chaos.clips("worker_wait", {"worker": 1})
    chaos.trigger("worker_wait", clips)
    with TaskInstanceWatcher(chaos.api, interval=1.0, sample=chaos.sample_store):
        # Waiting in the worker: its job exists and has been polled.
        ti = chaos.wait(
            lambda: next(
                (
                    ti
                    for ti in chaos.tis("worker_wait", "recognize_worker")
                    if ti["state"] == "running" and chaos.jobs_for(clips) and polls(chaos, clips) >= 2
                ),
                None,
            ),
            "the worker-side wait to be under way",
        )
        victim, fault_at = kill_worker_running(chaos, ti)
        retried_elsewhere_then_restart(chaos, "worker_wait", "recognize_worker", victim)
        ledger = check_ledger(chaos, "worker_wait", clips, fault_at)
    (job_id,) = (job.job_id for job in chaos.sim.state.jobs.values() if job.filename == clips["worker"][0].name)
    log = chaos.deployment.task_log(DAG_ID, "worker_wait", "recognize_worker", 0)
    assert f"Resuming Slipstream job {job_id}" in log
    print(ledger.row("worker killed in a worker-side wait", "retried on the other worker, resumed its job"))


def polls(chaos: Chaos, clips: dict[str, list[Path]]) -> int:
    """Status requests for the jobs of these clips."""
    names = {path.name for paths in clips.values() for path in paths}
    paths = {JOB_PATH.format(job.job_id) for job in chaos.sim.state.jobs.values() if clip_name(job.filename) in names}
    return sum(chaos.sim.state.count("GET", path) for path in paths)


def test_worker_killed_during_a_reschedule_poke_the_retry_waits_for_the_same_job(chaos: Chaos):
    chaos.sim.state.configure(processing_seconds=45)
    clips = chaos.clips("worker_poke", {"sense_reschedule": 1})
    chaos.trigger("worker_poke", clips)
    with TaskInstanceWatcher(chaos.api, interval=1.0, sample=chaos.sample_store) as watcher:
        chaos.wait(
            lambda: "up_for_reschedule" in watcher.states(DAG_ID, "worker_poke", "sense_reschedule", 0),
            "the sensor's first poke",
        )
        job_id = chaos.api.xcom(DAG_ID, "worker_poke", "submit_reschedule", 0)
        # The next poke hangs in its status request, so the kill lands inside a poke.
        hang = chaos.sim.state.add_fault(
            Fault("delay", path=JOB_PATH.format(job_id), method="GET", seconds=15, remaining=1)
        )
        chaos.wait(lambda: hang.remaining == 0, "the next poke to reach Slipstream", 60)
        (ti,) = chaos.tis("worker_poke", "sense_reschedule")
        assert ti["state"] == "running", ti
        victim, fault_at = kill_worker_running(chaos, ti)
        retried_elsewhere_then_restart(chaos, "worker_poke", "sense_reschedule", victim)
        ledger = check_ledger(chaos, "worker_poke", clips, fault_at)
    print(ledger.row("worker killed during a reschedule poke", "the sensor's retry waited for the same job"))


def test_worker_killed_mid_upload_the_retry_submits_once(chaos: Chaos):
    chaos.sim.state.configure(processing_seconds=5)
    clips = chaos.clips("worker_upload", {"deferred": 1}, size=LARGE_CLIP_BYTES)
    name = clips["deferred"][0].name
    # The storage host reads nothing of the first PUT for 30 s: the worker is stuck mid-body when killed.
    stall = chaos.sim.state.add_fault(Fault("delay", path="/sim-bucket/temp/*", method="PUT", seconds=30, remaining=1))
    chaos.trigger("worker_upload", clips)
    with TaskInstanceWatcher(chaos.api, interval=1.0, sample=chaos.sample_store):
        chaos.wait(lambda: stall.remaining == 0, "the upload to start")
        (ti,) = chaos.tis("worker_upload", "recognize_deferred")
        assert ti["state"] == "running", ti
        victim, fault_at = kill_worker_running(chaos, ti)
        retried_elsewhere_then_restart(chaos, "worker_upload", "recognize_deferred", victim)
        ledger = check_ledger(chaos, "worker_upload", clips, fault_at)
    uploads = [upload for key, upload in chaos.sim.state.uploads.items() if key.endswith(name)]
    # Two presigned URLs: the first never received its body (no job can have used it), the second did.
    assert sorted(upload.state for upload in uploads) == ["issued", "uploaded"], uploads
    assert next(u for u in uploads if u.state == "uploaded").size == LARGE_CLIP_BYTES
    print(ledger.row("worker killed mid-upload (40 MiB)", "the retry uploaded and submitted once"))


def test_worker_killed_after_slipstream_created_the_job_resubmits_once(chaos: Chaos):
    """The window that cannot be closed: the job exists, its id never reached the worker."""
    chaos.sim.state.configure(processing_seconds=5)
    clips = chaos.clips("worker_window", {"deferred": 1})
    held = chaos.sim.state.add_fault(Fault("hold", path=SUBMIT_PATH, method="POST", seconds=30, remaining=1))
    chaos.trigger("worker_window", clips)
    chaos.wait(lambda: held.remaining == 0 and chaos.jobs_for(clips), "the first job to be created")
    (ti,) = chaos.tis("worker_window", "recognize_deferred")
    victim, fault_at = kill_worker_running(chaos, ti)
    retried_elsewhere_then_restart(chaos, "worker_window", "recognize_deferred", victim)
    name = clips["deferred"][0].name
    ledger = check_ledger(chaos, "worker_window", clips, fault_at, jobs_per_clip={name: 2})
    print(ledger.row("worker killed between job creation and its answer", "one duplicate job, as documented"))


# --------------------------------------------------------------------------------------------
# The scheduler and the API server
# --------------------------------------------------------------------------------------------


def mixed_run(chaos: Chaos, case: str) -> dict[str, list[Path]]:
    """A run with every kind of wait, triggered; returns its clips once all waits are under way."""
    clips = chaos.clips(case, {"deferred": 4, "worker": 2, "sense_deferred": 2, "sense_reschedule": 2, "sense_poke": 2})
    chaos.trigger(case, clips)

    def under_way() -> bool:
        states = Counter(ti["state"] for ti in chaos.tis(case, *RESULT_TASKS.values()))
        return sum(chaos.jobs_for(clips).values()) == 12 and states["deferred"] >= 4 and states["running"] >= 2

    chaos.wait(under_way, f"{case}: every wait under way")
    return clips


def restart_under_load(chaos: Chaos, component: str) -> Ledger:
    """Kill ``component`` (its newest process) while every kind of wait is under way, restart it, check."""
    chaos.sim.state.configure(processing_seconds=25)
    with TaskInstanceWatcher(chaos.api, interval=1.0, sample=chaos.sample_store):
        clips = mixed_run(chaos, component)
        victim = chaos.procs.latest(component)
        fault_at = time.time()
        chaos.procs.kill(victim)
        time.sleep(RESTART_DELAY)
        chaos.procs.restart(victim)
        chaos.wait(chaos.api.healthy, f"the API server to answer after the {component} restart", 120)
        # An API server away for longer than the heartbeat timeout makes Airflow fail tries that still
        # run (docs/reliability.md, "The API server restarting"): the case is for a shorter restart.
        print(f"\n[chaos] {component}: killed to the API server answering again {time.time() - fault_at:.1f}s")
        return check_ledger(chaos, component, clips, fault_at)


def test_scheduler_killed_and_restarted_the_runs_complete(chaos: Chaos):
    ledger = restart_under_load(chaos, "scheduler")
    print(ledger.row("scheduler killed, restarted", "the new scheduler adopted the running tasks"))


def test_api_server_killed_and_restarted_tasks_survive_or_retry_cleanly(chaos: Chaos):
    ledger = restart_under_load(chaos, "api-server")
    print(ledger.row("API server killed, restarted", "tasks carried on, or were retried and resumed their jobs"))


# --------------------------------------------------------------------------------------------
# Slipstream itself, for a minute
# --------------------------------------------------------------------------------------------


def ride_out(chaos: Chaos, case: str, outage: Callable[[], None], back: Callable[[], None]) -> list[Ledger]:
    """Every kind of wait under way, then the outage for a minute, with new submits during it."""
    chaos.sim.state.configure(processing_seconds=10)
    with TaskInstanceWatcher(chaos.api, interval=1.0, sample=chaos.sample_store):
        waiting = mixed_run(chaos, case)
        fault_at = time.time()
        outage()
        # Submitted during the outage: they provably never reach Slipstream, so they are sent again
        # until the task's bound (here the default hour), in the same try.
        submitting = chaos.clips(f"{case}_submits", {"deferred": 2, "worker": 1})
        chaos.trigger(f"{case}_submits", submitting)
        time.sleep(OUTAGE_SECONDS)
        back()
        ledgers = [
            check_ledger(chaos, case, waiting, fault_at),
            check_ledger(chaos, f"{case}_submits", submitting, fault_at),
        ]
    # Nothing failed for lack of patience: waits and submits alike rode the minute out in their tries,
    # and the submits did meet the outage: they re-sent past the connection's retry budget.
    assert [ledger.failed_tries for ledger in ledgers] == [0, 0], ledgers
    logs = [
        chaos.deployment.task_log(DAG_ID, f"{case}_submits", RESULT_TASKS[kind], i)
        for kind, paths in submitting.items()
        for i in range(len(paths))
    ]
    assert any("past max_retries, within the task's bound" in log for log in logs)
    return ledgers


@pytest.mark.slow
def test_slipstream_unreachable_for_a_minute_every_wait_rides_it_out(chaos: Chaos):
    ledgers = ride_out(chaos, "unreachable", chaos.sim.stop, chaos.sim.start)
    print(ledgers[0].row("Slipstream unreachable 60 s", "waits rode it out"))
    print(ledgers[1].row("Slipstream unreachable 60 s, submits during it", "re-sent after the outage"))


@pytest.mark.slow
def test_slipstream_answering_503_for_a_minute_every_wait_rides_it_out(chaos: Chaos):
    fault = Fault("status", path="/", status=503)
    ledgers = ride_out(chaos, "outage_503", lambda: chaos.sim.state.add_fault(fault), chaos.sim.state.clear_faults)
    print(ledgers[0].row("Slipstream 503 for 60 s", "waits rode it out"))
    print(ledgers[1].row("Slipstream 503 for 60 s, submits during it", "re-sent after the outage"))
