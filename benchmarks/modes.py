"""
Section 4 — one job, three ways to wait: ``SlipstreamJobSensor`` in poke, reschedule and deferrable mode.

Each mode is a DAG of ``dags/modes/`` (submit a tiny clip -> wait), run with ``airflow dags test``
(through ``scripts/airflow_harness.py``) while the simulator takes ``job_seconds`` per job. The
submit task comes first so it, not the sensor, absorbs the one-off warm-up of ``dags test``.

- worker-slot seconds: the sum of the sensor's task runs, i.e. from each ``[DAG TEST] running
  task`` of the sensor to its ``[DAG TEST] end task`` or, for a deferral, to ``[DAG TEST] running
  trigger in line`` (the trigger's wait is the triggerer's, not a worker's);
- scheduler round trips: reschedules (``task_reschedule`` rows of the metadata DB) + deferrals
  (``Pausing task as DEFERRED``) + 1.

``dags test`` runs every task in one process, so a run's slot time excludes the start of a
fresh task process (a real worker pays that once per round trip).
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
from typing import TYPE_CHECKING, Any

from common import BENCH_DIR, REPO, Row

if TYPE_CHECKING:
    from pathlib import Path

    from common import SimulatorProcess

SECTION = "4. Reschedule vs deferrable vs poke (one job)"
MODES = ("poke", "reschedule", "deferrable")
DAG_FOLDER = BENCH_DIR / "dags" / "modes"
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")
JOB_PATH = "GET /api/v4/video-recognition/{job_id}/"


def _log_time(line: str) -> float | None:
    match = TIMESTAMP.match(line)
    if not match:
        return None
    return dt.datetime.fromisoformat(match.group(1)).replace(tzinfo=dt.timezone.utc).timestamp()


def _db_time(value: str | None) -> float | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()


def task_runs(output: str, dag_id: str, task_id: str = "wait") -> dict[str, Any]:
    """The sensor's runs (worker-slot periods) and triggerer periods, from the ``dags test`` log."""
    runs: list[tuple[float, float]] = []
    triggers: list[tuple[float, float]] = []
    run_start = trigger_start = None
    deferrals = reschedules = 0
    in_task = False
    for line in output.splitlines():
        when = _log_time(line)
        if when is None:
            continue
        if f"[DAG TEST] running task <TaskInstance: {dag_id}.{task_id} " in line:
            run_start, in_task = when, True
        elif not in_task:
            continue
        elif "[DAG TEST] running trigger in line" in line and run_start is not None:
            runs.append((run_start, when))
            run_start, trigger_start = None, when
        elif "[DAG TEST] Trigger completed" in line and trigger_start is not None:
            triggers.append((trigger_start, when))
            trigger_start = None
        elif f"[DAG TEST] end task task_id={task_id} " in line:
            if run_start is not None:
                runs.append((run_start, when))
            run_start, in_task = None, False
        elif "Pausing task as DEFERRED" in line:
            deferrals += 1
        elif "marking task as UP_FOR_RESCHEDULE" in line:
            reschedules += 1
    return {"runs": runs, "triggers": triggers, "deferrals": deferrals, "log_reschedules": reschedules}


def run(
    sim: SimulatorProcess, workdir: Path, env: dict[str, str], *, job_seconds: float
) -> tuple[list[Row], dict[str, Any]]:
    sys.path.insert(0, str(REPO / "scripts"))
    from airflow_harness import AirflowHarness

    saved = sim.call("configure")["config"]
    sim.call("configure", queued_seconds=0.0, processing_seconds=job_seconds)
    harness = AirflowHarness(
        workdir / "airflow_home_modes",
        sim.conn_json(),
        dags_folder=DAG_FOLDER,
        **{k: v for k, v in env.items() if k.startswith(("AIRFLOW__", "PYTHON"))},
    )
    rows: list[Row] = []
    details: dict[str, Any] = {"job_seconds": job_seconds}
    try:
        print("  modes: airflow db migrate ...", flush=True)
        harness.migrate()
        for mode in MODES:
            print(f"  modes: {mode} ({job_seconds:g} s job) ...", flush=True)
            details[mode] = measure(harness, sim, mode, workdir)
    finally:
        sim.call("configure", queued_seconds=saved["queued_seconds"], processing_seconds=saved["processing_seconds"])
    for mode in MODES:
        d = details[mode]
        rows.append(
            Row(
                SECTION,
                f"{mode}: worker-slot seconds",
                d["worker_slot_seconds"],
                note=(
                    f"{mode}: {len(d['runs'])} task run(s); sensor done {d['detected_after_job_s']:.2f} s after the "
                    f"job; {d['api_polls']} API polls; triggerer {d['triggerer_seconds']:.1f} s; "
                    f"DB ti.duration {d['db_ti_duration']:.2f} s; task {d['state']}, dags test exit {d['returncode']}"
                ),
            )
        )
        rows.append(Row(SECTION, f"{mode}: scheduler round trips", d["round_trips"]))
    return rows, details


def measure(harness: Any, sim: SimulatorProcess, mode: str, workdir: Path) -> dict[str, Any]:
    dag_id = f"slipstream_bench_{mode}"
    started = time.monotonic()
    run = harness.dags_test(dag_id, timeout=900)
    wall = time.monotonic() - started
    (workdir / f"modes_{mode}.log").write_text(run.output)
    parsed = task_runs(run.output, dag_id)
    ti = harness.query(
        "SELECT state, try_number, start_date, end_date, duration, id FROM task_instance "
        "WHERE dag_id = ? AND run_id = ? AND task_id = 'wait'",
        dag_id,
        run.run_id,
    )[0]
    reschedules = harness.query(
        "SELECT start_date, end_date, reschedule_date FROM task_reschedule WHERE ti_id = ?", ti[5]
    )
    job_id = harness.xcom(run, "submit")
    job = sim.call("job_times", job_ids=[job_id])["jobs"].get(job_id, {})
    polls = len(sim.call("polls", paths=[JOB_PATH.format(job_id=job_id)])["arrivals"][JOB_PATH.format(job_id=job_id)])
    done_wall = job["created_wall"] + job["duration"] if job else None
    last_end = parsed["runs"][-1][1] if parsed["runs"] else None
    return {
        "returncode": run.returncode,
        "state": ti[0],
        "try_number": ti[1],
        "job_id": job_id,
        "job_duration": job.get("duration"),
        "runs": [{"start": a, "seconds": b - a} for a, b in parsed["runs"]],
        "worker_slot_seconds": sum(b - a for a, b in parsed["runs"]),
        "triggerer_seconds": sum(b - a for a, b in parsed["triggers"]),
        "db_reschedules": len(reschedules),
        "log_reschedules": parsed["log_reschedules"],
        "deferrals": parsed["deferrals"],
        "round_trips": len(reschedules) + parsed["deferrals"] + 1,
        "db_ti_start": ti[2],
        "db_ti_end": ti[3],
        "db_ti_duration": ti[4] or 0.0,
        "db_reschedule_rows": reschedules,
        "api_polls": polls,
        "detected_after_job_s": (last_end - done_wall) if last_end and done_wall else float("nan"),
        "dags_test_wall_seconds": wall,
    }
