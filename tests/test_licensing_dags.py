"""
The licensing loop in real ``airflow dags test`` runs against the simulator: enrichment on internal
matches only, a license spent once across a failed try, its retry and a later run, the quota
warning and refusal, and the operator extra links read back through Airflow's REST API.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from airflow_harness import AirflowHarness, DagRun, slipstream_conn

from airflow_provider_slipstream.models import LICENSE_PAGE
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import SimulatorServer, SimulatorState
from tests.conftest import FAST_RETRY_EXTRA
from tests.contract import expected_catalog, expected_license, expected_result

pytestmark = pytest.mark.dagrun

TEST_DAGS = Path(__file__).resolve().parent / "dags"
DAG_ID = "slipstream_licensing"
SAMPLES = sample_videos()


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(SimulatorState(queued_seconds=0.2, processing_seconds=1.0)) as server:
        yield server


@pytest.fixture(scope="module")
def airflow(sim, tmp_path_factory) -> AirflowHarness:
    harness = AirflowHarness(
        tmp_path_factory.mktemp("licensing_home"),
        slipstream_conn(sim.url, sim.state.api_key, **FAST_RETRY_EXTRA),
        dags_folder=TEST_DAGS,
        # The REST API read-back below: every request is an admin's.
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
    )
    harness.migrate()
    return harness


def _said(run, text: str) -> bool:
    """Whether the run's output says ``text``, also where a rich traceback (Airflow 3.0) wrapped it in a box."""
    return " ".join(text.split()) in re.sub(r"[\s│]+", " ", run.output)


def _links(airflow: AirflowHarness, *wanted: tuple[DagRun, str]) -> list[dict[str, str | None]]:
    """Each (run, task)'s extra links as Airflow's REST API (the UI's source) answers them."""
    # Airflow 3.0's `dags test` leaves the DAG unserialized, and the API server reads serialized DAGs.
    airflow.run_cli("dags", "reserialize")
    paths = [f"/api/v2/dags/{run.dag_id}/dagRuns/{run.run_id}/taskInstances/{task}/links" for run, task in wanted]
    script = (
        "import json, sys\n"
        "from fastapi.testclient import TestClient\n"
        "from airflow.api_fastapi.app import create_app\n"
        "client = TestClient(create_app())\n"
        "token = client.get('/auth/token').json()['access_token']\n"
        "headers = {'Authorization': 'Bearer ' + token}\n"
        f"answers = [client.get(path, headers=headers) for path in {paths!r}]\n"
        "print(json.dumps([[a.status_code, a.json()] for a in answers]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=airflow.env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [status for status, _ in answers] == [200] * len(wanted), answers
    return [body["extra_links"] for _, body in answers]


def test_a_catalog_match_is_enriched_and_licensed_once_across_a_failed_try_and_a_later_run(airflow, sim):
    sim.state.reset()
    run = airflow.dags_test(DAG_ID, {"video_path": str(SAMPLES["internal"]), "user_id": "uploader-7"})

    assert run.returncode == 0, run.output[-3000:]
    tries = dict(airflow.query("SELECT task_id, try_number FROM task_instance WHERE run_id = ?", run.run_id))
    assert tries["license"] == 2  # the first try failed after the license arrived
    for task in ("recognize", "recognize_deferred"):
        result = airflow.xcom(run, task)
        assert result == {**expected_result(result["job_id"], "internal"), "catalog": expected_catalog()}

    # One license for (track, user, project), spent once; both tasks' dicts are it.
    created = {lic.project_name: lic for lic in sim.state.licenses}
    assert sorted(created, key=str) == sorted([None, f"Video {SAMPLES['internal'].name}"], key=str)
    licensed = created[f"Video {SAMPLES['internal'].name}"]
    spent = sim.state.licenses.index(licensed) + 1  # license_or_skip (no project) may have run first
    assert airflow.xcom(run, "license") == expected_license(
        licensed, "uploader-7", daily_used=spent, monthly_used=spent
    )
    assert "Reusing Slipstream license" in run.output

    # Stored before the task ended, so a later run (or a cleared task) reuses it too: no quota spent.
    again = airflow.dags_test(DAG_ID, {"video_path": str(SAMPLES["internal"]), "user_id": "uploader-7"})
    assert again.returncode == 0, again.output[-3000:]
    assert len(sim.state.licenses) == 2
    assert airflow.xcom(again, "license")["license_id"] == licensed.license_id

    # The extra links of both runs, as the UI shows them.
    track = {"Slipstream track": expected_catalog()["short_url"]}
    granted = {"Slipstream license": LICENSE_PAGE.format(license_id=licensed.license_id)}
    tasks = ("recognize", "recognize_deferred", "license")
    assert _links(airflow, *((each, task) for each in (run, again) for task in tasks)) == [track, track, granted] * 2


@pytest.mark.parametrize("match", ["competitor", "external", "no_match"])
def test_other_matches_get_no_catalog_and_no_license(airflow, sim, match):
    sim.state.reset()
    run = airflow.dags_test(DAG_ID, {"video_path": str(SAMPLES[match]), "crash_first_try": False})

    states = {task: state for (task, _), state in airflow.task_states(run).items()}
    assert states == {
        "recognize": "success",
        "recognize_deferred": "success",
        "license": "failed",
        "license_or_skip": "skipped",
    }
    assert _said(run, f"the match is {match!r}, not a Slipstream catalog track")
    assert _said(run, "skip_non_catalog=True")
    for task in ("recognize", "recognize_deferred"):
        result = airflow.xcom(run, task)
        assert result == expected_result(result["job_id"], match)  # no catalog key
    assert sim.state.count(path_glob="/api/v4/en/tracks/*") == 0
    assert sim.state.licenses == []
    assert _links(airflow, (run, "recognize"), (run, "recognize_deferred")) == [{"Slipstream track": None}] * 2


def test_usage_near_its_cap_warns_and_a_used_up_quota_fails_without_retrying(airflow, sim):
    sim.state.reset()
    sim.state.configure(license_daily_limit=100, license_daily_used=79)
    params = {"video_path": str(SAMPLES["internal"]), "user_id": "near-cap", "crash_first_try": False}
    run = airflow.dags_test(DAG_ID, params)
    assert run.returncode == 0, run.output[-3000:]
    assert "near its cap (daily 80 of 100)" in run.output

    sim.state.configure(license_daily_used=100)
    run = airflow.dags_test(DAG_ID, {**params, "user_id": "over-cap"})
    tries = {
        task: (n, state)
        for task, n, state in airflow.query(
            "SELECT task_id, try_number, state FROM task_instance WHERE run_id = ?", run.run_id
        )
    }
    # Failed at once despite retries=1: a retry would only be refused again.
    assert tries["license"] == (1, "failed")
    assert _said(run, "license quota is used up")
    assert _said(run, "The window resets at")
    assert sim.state.count(method="POST", path_glob="/api/v1/licenses/generate") == 2 + 2  # 2 per run, no re-send
