"""
Clearing recognize tasks on a real deployment (LocalExecutor, scheduler, triggerer): what Airflow's
clear does to a stored job, in the worker and on the triggerer.

Run 1 recognises [a clip that never completes, a competitor clip]: map index 0 times out after
submitting (its job stays stored for a later try), index 1 succeeds. Then the upstream list changes
to [a catalog clip, the competitor clip] and the whole run is cleared. Index 0 is now another video:
it must submit it, not resume the stored job of the stalled clip. Index 1 succeeded before: clearing a
succeeded task recognises its video afresh (the stored job was dropped on success).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import SimulatorServer, SimulatorState
from tests.contract import expected_result
from tests.e2e.conftest import AirflowDeployment

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DAG_ID = "slipstream_clear"
DAGS = Path(__file__).resolve().parent / "dags"
VARIABLE = "slipstream_clear_videos"
TASKS = ("recognize_in_worker", "recognize_deferrable")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorState(queued_seconds=0.2, processing_seconds=1.0)) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(sim, process_registry, tmp_path_factory) -> AirflowDeployment:
    conn = json.dumps({"conn_type": "slipstream", "host": sim.url, "password": sim.state.api_key})
    airflow = AirflowDeployment(
        tmp_path_factory.mktemp("airflow_home"),
        process_registry,
        executor="LocalExecutor",
        slipstream_conn=conn,
        extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)},
    )
    airflow.start_core([DAG_ID])
    airflow.api.unpause(DAG_ID)
    return airflow


def set_videos(deployment: AirflowDeployment, videos: list[str], *, create: bool) -> None:
    body = {"key": VARIABLE, "value": json.dumps(videos)}
    if create:
        deployment.api.request("POST", "/variables", ok=(201,), json=body)
    else:
        deployment.api.request("PATCH", f"/variables/{VARIABLE}", json=body)


def results(deployment: AirflowDeployment, run_id: str) -> dict[tuple[str, int], dict]:
    tis = deployment.api.task_instances(DAG_ID, run_id)
    found = {}
    for ti in tis:
        if ti["task_id"] in TASKS:
            key = (ti["task_id"], ti["map_index"])
            job_id = deployment.api.xcom(DAG_ID, run_id, ti["task_id"], ti["map_index"], key="job_id")
            value = (
                deployment.api.xcom(DAG_ID, run_id, ti["task_id"], ti["map_index"])
                if ti["state"] == "success"
                else None
            )
            found[key] = {"state": ti["state"], "job_id": job_id, "result": value}
    return found


def print_duplicate_window(deployment: AirflowDeployment, sim: SimulatorServer, job_ids: list[str]) -> None:
    """
    The window in which a worker's death would lose a submitted job: from Slipstream creating it to
    the task state store holding its id (Airflow 3.3+; before 3.3 a Variable write, the same kind of
    API round trip, with no timestamp to read). Printed for docs/reliability.md, not asserted.
    """
    with sqlite3.connect(f"file:{deployment.home / 'airflow.db'}?mode=ro", uri=True, timeout=30) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'task_state_store'").fetchall():
            return
        stored = dict(db.execute("SELECT value, updated_at FROM task_state_store WHERE key = 'slipstream_job'"))
    jobs = sim.state.jobs
    windows = []
    for value, updated_at in stored.items():
        job_id = json.loads(value)["job_id"]
        if job_id in job_ids:
            written = datetime.fromisoformat(str(updated_at)).replace(tzinfo=timezone.utc)
            windows.append((written - jobs[job_id].created_at).total_seconds() * 1000)
    print(f"\n[e2e] job created -> id stored (ms): {', '.join(f'{ms:.0f}' for ms in sorted(windows))}")


def test_cleared_tasks_recognize_their_current_input(deployment, sim, process_registry, tmp_path_factory):
    stalled = tmp_path_factory.mktemp("clips") / "stall_clip.mp4"
    stalled.write_bytes(b"never completes " * 64)
    clips = sample_videos()
    set_videos(deployment, [str(stalled), str(clips["competitor"])], create=True)
    api = deployment.api

    api.trigger(DAG_ID, "clear_me")
    assert api.wait_for_runs([(DAG_ID, "clear_me")], 240, check=process_registry.check_alive) == {
        (DAG_ID, "clear_me"): "failed"
    }
    first = results(deployment, "clear_me")
    assert {key: entry["state"] for key, entry in first.items()} == {
        **{(task, 0): "failed" for task in TASKS},
        **{(task, 1): "success" for task in TASKS},
    }, deployment.failure_report(api.task_instances(DAG_ID, "clear_me"))
    assert sim.state.jobs_created == 4
    print_duplicate_window(deployment, sim, [first[(task, 0)]["job_id"] for task in TASKS])

    # The upstream list changes, then the user clears the whole run.
    set_videos(deployment, [str(clips["internal"]), str(clips["competitor"])], create=False)
    api.request(
        "POST",
        f"/dags/{DAG_ID}/clearTaskInstances",
        json={"dag_run_id": "clear_me", "dry_run": False, "only_failed": False, "reset_dag_runs": True},
    )
    assert api.wait_for_runs([(DAG_ID, "clear_me")], 240, check=process_registry.check_alive) == {
        (DAG_ID, "clear_me"): "success"
    }, deployment.failure_report(api.task_instances(DAG_ID, "clear_me"))
    second = results(deployment, "clear_me")

    for task in TASKS:
        # Index 0 now holds the catalog clip: its own job and result, not the stalled clip's job.
        now = second[(task, 0)]
        assert now["job_id"] != first[(task, 0)]["job_id"], task
        assert now["result"] == expected_result(now["job_id"], "internal"), task
        # Index 1 had succeeded: clearing it recognised the clip afresh.
        again = second[(task, 1)]
        assert again["job_id"] != first[(task, 1)]["job_id"], task
        assert again["result"] == expected_result(again["job_id"], "competitor"), task
    assert sim.state.jobs_created == 8
