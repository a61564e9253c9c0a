"""
Section 5 — a folder of videos on a real deployment: mapped recognize vs one batch vs sharded batches.

Each scenario gets a deployment of its own: PostgreSQL, then Airflow's API server, scheduler
(LocalExecutor), DAG processor and triggerer as separate processes (the e2e tests' harness,
tests/e2e), against the simulator in its own process. Once the DAG is parsed and idle, one run
of a DAG of ``dags/deployment/`` recognises ``clips`` distinct clips; every job takes
``job_seconds`` in the simulator. Measured from the trigger to the run's end:

- wall: the trigger call to the run's ``end_date`` (the last result is in by then);
- CPU seconds per component, read from each process tree: the sum over its live processes of
  their own and their reaped children's CPU time (a LocalExecutor task process is a child of a
  worker, itself a child of the scheduler, so "workers" is the scheduler's tree less its leader);
- peak memory: the sum of the processes' PSS (proportional set size: a page shared by forked
  processes counts once in all), sampled each second, per component and of all at one moment;
- metadata-DB rows written: inserted + updated + deleted tuples of every table
  (``pg_stat_user_tables``, read after the components stopped so each backend's counts are in).

The mapped form over ``max_clips`` clips is also run once, to show where it stops: its list
task's XCom is longer than ``[core] max_map_length`` (1024 by default), so the run fails there.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psutil
from common import BENCH_DIR, REPO, Row

if TYPE_CHECKING:
    from pathlib import Path

    from common import SimulatorProcess

SECTION = "5. A folder of videos on a deployment (LocalExecutor, PostgreSQL)"
DAG_FOLDER = BENCH_DIR / "dags" / "deployment"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: The same settings for every scenario: Airflow's defaults (the e2e harness tunes heartbeats and
#: parsing for fast tests; a partner's deployment does not), with room for 32 tasks at once.
DEPLOYMENT_ENV = {
    "AIRFLOW__CORE__PARALLELISM": "32",
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "32",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "5",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "5",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "5",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "300",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
}
#: PostgreSQL backends flush their table counts up to 10 s after going idle (PGSTAT_IDLE_INTERVAL):
#: the idle wait before the baseline, so that start-up writes are not counted in the run.
SETTLE_SECONDS = 12


@dataclass
class Tree:
    """One reading of a component's process tree."""

    cpu: float  # seconds, every process's own and reaped children's
    leader_cpu: float  # seconds, the component's own process
    pss: int  # bytes, the whole tree
    leader_pss: int  # bytes, the component's own process


def read_tree(pid: int) -> Tree:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return Tree(0.0, 0.0, 0, 0)
    tree = Tree(0.0, 0.0, 0, 0)
    for proc in procs:
        try:
            with proc.oneshot():
                times, pss = proc.cpu_times(), proc.memory_full_info().pss
        except psutil.Error:
            continue  # ended between the listing and the read: its parent counts it once reaped
        tree.cpu += times.user + times.system + times.children_user + times.children_system
        tree.pss += pss
        if proc.pid == pid:
            tree.leader_cpu, tree.leader_pss = times.user + times.system, pss
    return tree


@dataclass
class Sampler:
    """
    Reads every component's tree at the start, each second (memory) and at the end (CPU).

    The scheduler's tree is split in two: its own process, and "workers" (the LocalExecutor's worker
    processes and their task processes). Peaks are per part, and of the sum at one moment.
    """

    pids: dict[str, int]
    start: dict[str, Tree] = field(default_factory=dict)
    end: dict[str, Tree] = field(default_factory=dict)
    peak_pss: dict[str, int] = field(default_factory=dict)
    peak_total_pss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[str, Tree]:
        trees = {name: read_tree(pid) for name, pid in self.pids.items()}
        parts = {name: tree.pss for name, tree in trees.items()}
        scheduler = trees["scheduler"]
        parts["scheduler"], parts["workers"] = scheduler.leader_pss, scheduler.pss - scheduler.leader_pss
        for name, pss in parts.items():
            self.peak_pss[name] = max(self.peak_pss.get(name, 0), pss)
        self.peak_total_pss = max(self.peak_total_pss, sum(parts.values()))
        return trees

    def cpu(self) -> dict[str, float]:
        """CPU seconds per part between the start and the end."""
        used = {name: self.end[name].cpu - self.start[name].cpu for name in self.pids}
        scheduler = self.end["scheduler"].leader_cpu - self.start["scheduler"].leader_cpu
        used["workers"], used["scheduler"] = used["scheduler"] - scheduler, scheduler
        return used

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def __enter__(self) -> Sampler:
        self.start = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.end = self.sample()


def write_clips(folder: Path, count: int) -> None:
    """``count`` distinct small clips (the four match kinds in turn), as the catalog example makes them."""
    from airflow_provider_slipstream.samples import sample_videos

    folder.mkdir(parents=True, exist_ok=True)
    samples = [path.read_bytes() for path in sample_videos().values()]
    stems = [path.stem for path in sample_videos().values()]
    for index in range(count):
        kind = index % len(samples)
        (folder / f"{stems[kind]}_{index:05d}.mp4").write_bytes(samples[kind] + f"#{index}".encode())


def db_writes(postgres: Any) -> dict[str, int]:
    """Tuples inserted + updated + deleted per table of the Airflow database (non-zero ones)."""
    rows = postgres.query(
        "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE schemaname = 'public'"
    )
    return {name: int(count) for name, count in rows if count}


def run_scenario(
    sim: SimulatorProcess, workdir: Path, name: str, dag_id: str, folder: Path, clips: int, *, expect: str = "success"
) -> dict[str, Any]:
    from tests.e2e.conftest import AirflowDeployment, ProcessRegistry
    from tests.e2e.services import PostgresServer

    registry = ProcessRegistry(workdir / f"deployment_{name}" / "logs")
    try:
        postgres = PostgresServer(registry).start()
        airflow = AirflowDeployment(
            workdir / f"deployment_{name}" / "airflow_home",
            registry,
            executor="LocalExecutor",
            slipstream_conn=sim.conn_json(),
            extra_env={
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.sqlalchemy_url,
                "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FOLDER),
                **DEPLOYMENT_ENV,
            },
        )
        print(f"  deployment: {name}: starting a deployment ...", flush=True)
        airflow.start_core([dag_id], timeout=300)
        airflow.api.unpause(dag_id)
        time.sleep(SETTLE_SECONDS)
        jobs_before = sim.call("stats")["jobs_created"]
        writes_before = db_writes(postgres)
        print(f"  deployment: {name}: {clips} clips ...", flush=True)
        with Sampler({c: registry.get(c).pid for c in COMPONENTS}) as sampler:
            triggered = time.time()
            airflow.api.trigger(dag_id, name, {"folder": str(folder)})
            states = airflow.api.wait_for_runs([(dag_id, name)], 3 * 3600, check=registry.check_alive)
        run = airflow.api.dag_run(dag_id, name)
        tis = airflow.api.task_instances(dag_id, name)
        summary = check_outcome(airflow, dag_id, name, tis, clips, states[(dag_id, name)], expect)
        for component in COMPONENTS:  # graceful stops flush every backend's table counts
            registry.get(component).stop()
        time.sleep(2)
        writes = {
            table: count - writes_before.get(table, 0)
            for table, count in db_writes(postgres).items()
            if count - writes_before.get(table, 0)
        }
    finally:
        registry.stop_all()
    cpu = sampler.cpu()
    return {
        "dag_id": dag_id,
        "clips": clips,
        "state": states[(dag_id, name)],
        "wall_seconds": datetime.fromisoformat(run["end_date"]).timestamp() - triggered,
        "cpu_seconds": cpu,
        "cpu_seconds_total": sum(cpu.values()),
        "peak_pss_mib": {part: pss / 2**20 for part, pss in sampler.peak_pss.items()},
        "peak_total_pss_mib": sampler.peak_total_pss / 2**20,
        "db_rows_written": sum(writes.values()),
        "db_rows_by_table": dict(sorted(writes.items(), key=lambda item: -item[1])),
        "task_instances": len(tis),
        "jobs_created": sim.call("stats")["jobs_created"] - jobs_before,
        **summary,
    }


def check_outcome(
    airflow: Any, dag_id: str, run_id: str, tis: list[dict[str, Any]], clips: int, state: str, expect: str
) -> dict[str, Any]:
    """Every clip recognised (the figures mean nothing otherwise), or the expected failure and its reason."""
    if state != expect:
        raise RuntimeError(f"{dag_id} ended {state}, expected {expect}:\n{airflow.failure_report(tis)}")
    if expect == "failed":
        failed = next(ti for ti in tis if ti["state"] == "failed")
        log = airflow.task_log(dag_id, run_id, failed["task_id"], failed["map_index"])
        if "unmappable_return_value_length" not in log:
            raise RuntimeError(f"{dag_id} failed, but not at max_map_length:\n{log[-3000:]}")
        return {
            "failed_task": failed["task_id"],
            "reason": f"{failed['task_id']} failed: the API server refused its XCom of {clips} paths "
            "(unmappable_return_value_length: longer than [core] max_map_length, 1024 by default)",
        }
    if dag_id == "bench_mapped":
        done = sum(1 for ti in tis if ti["task_id"] == "recognize" and ti["state"] == "success")
    else:
        done = sum(
            airflow.api.xcom(dag_id, run_id, "recognize", ti["map_index"])["videos"]
            for ti in tis
            if ti["task_id"] == "recognize"
        )
    if done != clips:
        raise RuntimeError(f"{dag_id}: {done} of {clips} clips recognised")
    return {}


def run(
    sim: SimulatorProcess, workdir: Path, env: dict[str, str], *, clips: int, max_clips: int, job_seconds: float
) -> tuple[list[Row], dict[str, Any]]:
    del env  # each deployment builds its own environment (tests/e2e)
    sys.path.insert(0, str(REPO))
    saved = sim.call("configure")["config"]
    sim.call("configure", queued_seconds=min(2.0, job_seconds), processing_seconds=max(0.0, job_seconds - 2.0))
    details: dict[str, Any] = {"clips": clips, "max_clips": max_clips, "job_seconds": job_seconds}
    try:
        small, large = workdir / f"clips_{clips}", workdir / f"clips_{max_clips}"
        write_clips(large, max_clips)
        write_clips(small, clips)
        # The short failure first, then the long runs; each saved as it ends, for a run cut short.
        scenarios = [
            (f"mapped_{max_clips}", "bench_mapped", large, max_clips, "failed"),
            (f"sharded_{max_clips}", "bench_sharded", large, max_clips, "success"),
            ("mapped", "bench_mapped", small, clips, "success"),
            ("batch", "bench_batch", small, clips, "success"),
            ("sharded", "bench_sharded", small, clips, "success"),
        ]
        for name, dag_id, folder, count, expect in scenarios:
            details[name] = run_scenario(sim, workdir, name, dag_id, folder, count, expect=expect)
            (workdir / "deployment.json").write_text(json.dumps(details, indent=2))
    finally:
        sim.call("configure", queued_seconds=saved["queued_seconds"], processing_seconds=saved["processing_seconds"])
    return rows(details, clips, max_clips), details


def rows(details: dict[str, Any], clips: int, max_clips: int) -> list[Row]:
    mapped = details["mapped"]
    out: list[Row] = []
    for name in ("batch", "sharded"):
        d = details[name]
        label = "one batch" if name == "batch" else "4 shards"
        cpu_ratio = d["cpu_seconds_total"] / mapped["cpu_seconds_total"]
        wall_ratio = d["wall_seconds"] / mapped["wall_seconds"]
        out += [
            Row(
                SECTION,
                f"{clips} clips, {label}: CPU ms per clip",
                1000 * d["cpu_seconds_total"] / clips,
                1000 * mapped["cpu_seconds_total"] / clips,
                "mapped",
                "<= 0.2x",
                cpu_ratio <= 0.2,
                note=breakdown(d) + "; mapped: " + breakdown(mapped),
            ),
            Row(
                SECTION,
                f"{clips} clips, {label}: wall seconds",
                d["wall_seconds"],
                mapped["wall_seconds"],
                "mapped",
                "<= 0.5x",
                wall_ratio <= 0.5,
            ),
            Row(
                SECTION,
                f"{clips} clips, {label}: DB rows written",
                d["db_rows_written"],
                mapped["db_rows_written"],
                "mapped",
            ),
            Row(
                SECTION,
                f"{clips} clips, {label}: peak memory MiB (PSS, all components)",
                d["peak_total_pss_mib"],
                mapped["peak_total_pss_mib"],
                "mapped",
            ),
        ]
    big = details[f"sharded_{max_clips}"]
    out += [
        Row(SECTION, f"{max_clips} clips, 4 shards: wall seconds", big["wall_seconds"], note=breakdown(big)),
        Row(SECTION, f"{max_clips} clips, 4 shards: CPU ms per clip", 1000 * big["cpu_seconds_total"] / max_clips),
        Row(SECTION, f"{max_clips} clips, 4 shards: DB rows written", big["db_rows_written"]),
        Row(
            SECTION,
            f"{max_clips} clips, 4 shards: peak memory MiB (PSS, all components)",
            big["peak_total_pss_mib"],
        ),
        Row(
            SECTION,
            f"{max_clips} clips, mapped",
            details[f"mapped_{max_clips}"]["state"],
            note=details[f"mapped_{max_clips}"]["reason"],
        ),
    ]
    return out


def breakdown(d: dict[str, Any]) -> str:
    cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in d["cpu_seconds"].items())
    pss = ", ".join(f"{name} {mib:.0f}" for name, mib in d["peak_pss_mib"].items())
    return (
        f"{d['clips']} clips, {d['task_instances']} task instances, {d['jobs_created']} jobs, "
        f"{d['wall_seconds']:.0f} s; CPU s: {cpu}; peak PSS MiB: {pss}"
    )
