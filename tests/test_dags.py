"""
The example DAGs, run for real with ``airflow dags test`` against the simulator.

Each run is a separate Airflow process; outcomes are read back from its metadata database.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS
from airflow_harness import DAGS_FOLDER, AirflowHarness, slipstream_conn

from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import SimulatorServer, SimulatorState
from tests.conftest import FAST_RETRY_EXTRA
from tests.contract import expected_catalog, expected_result

pytestmark = pytest.mark.dagrun

TEST_DAGS = Path(__file__).resolve().parent / "dags"
BRANCH_FOR = {
    "internal": "catalog_match",
    "competitor": "flag_competitor",
    "external": "review_outside_track",
    "no_match": "no_music",
}


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(SimulatorState(queued_seconds=0.2, processing_seconds=1.5)) as server:
        yield server


@pytest.fixture(scope="module")
def airflow(sim, tmp_path_factory) -> AirflowHarness:
    harness = AirflowHarness(
        tmp_path_factory.mktemp("airflow_home"), slipstream_conn(sim.url, sim.state.api_key, **FAST_RETRY_EXTRA)
    )
    harness.migrate()
    return harness


def test_example_dags_parse_without_import_errors(airflow):
    script = (
        "import json\n"
        # Airflow 3.2 moved DagBag to airflow.dag_processing; 3.0 and 3.1 have it in airflow.models only.
        "try:\n    from airflow.dag_processing.dagbag import DagBag\n"
        "except ImportError:\n    from airflow.models.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_FOLDER)!r}); "
        "print(json.dumps({'errors': bag.import_errors, 'dags': {d: sorted(bag.dags[d].task_ids) for d in bag.dags}}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=airflow.env, capture_output=True, text=True, check=True, timeout=300
    )
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parsed["errors"] == {}
    assert parsed["dags"] == {
        "slipstream_audioverify": sorted(
            ["submit", "wait", "get_track", "branch_on_match", "license_track", *BRANCH_FOR.values()]
        ),
        "slipstream_audioverify_batch": ["list_videos", "recognize", "summarize"],
        "slipstream_audioverify_catalog": ["make_clips", "recognize_shard", "report", "shard"],
    }


@pytest.mark.parametrize("match", list(BRANCH_FOR))
def test_audioverify_takes_exactly_the_branch_of_the_match(airflow, sim, match):
    # Processing outlasts the sensor's first poke (a few seconds after the submit, more on a slow
    # machine, an older Airflow, or beside another version's suite), so the sensor must reschedule at
    # least once.
    sim.state.configure(processing_seconds=12)
    jobs_before = sim.state.jobs_created
    try:
        run = airflow.dags_test("slipstream_audioverify", {"video_path": str(sample_videos()[match])})
    finally:
        sim.state.configure(processing_seconds=1.5)

    assert run.returncode == 0, run.output[-3000:]
    assert airflow.dag_run_state(run) == "success"
    states = airflow.task_states(run)
    for kind, branch in BRANCH_FOR.items():
        assert states[(branch, -1)] == ("success" if kind == match else "skipped"), (branch, states)

    job_id = airflow.xcom(run, "submit")
    assert airflow.xcom(run, "submit", key="job_id") == job_id
    assert airflow.xcom(run, "wait") == expected_result(job_id, match)
    # The catalog's rights data for a catalog match only, and its license for the video's uploader.
    catalog = {"catalog": expected_catalog()} if match == "internal" else {}
    assert airflow.xcom(run, "get_track") == {**expected_result(job_id, match), **catalog}
    assert states[("license_track", -1)] == ("success" if match == "internal" else "skipped")
    granted = airflow.xcom(run, "license_track")
    if match == "internal":
        assert granted["user_id"] == "uploader-1"
        assert granted["license_url"] in run.output
    else:
        assert granted is None
    assert sim.state.jobs_created == jobs_before + 1

    # The sensor gave its worker slot back between pokes: rescheduled, still on its first try.
    assert airflow.reschedule_count(run, "wait") >= 1
    assert airflow.query("SELECT try_number FROM task_instance WHERE run_id = ? AND task_id = 'wait'", run.run_id) == [
        (1,)
    ]


def test_batch_dag_recognizes_every_clip_on_the_triggerer(airflow, sim):
    jobs_before = sim.state.jobs_created
    run = airflow.dags_test("slipstream_audioverify_batch")

    assert run.returncode == 0, run.output[-3000:]
    assert airflow.dag_run_state(run) == "success"
    kinds = list(sample_videos())
    results = [airflow.xcom(run, "recognize", map_index=i) for i in range(len(kinds))]
    assert [r["match"] for r in results] == kinds
    for result, kind in zip(results, kinds, strict=True):
        assert result == expected_result(result["job_id"], kind)
    assert sim.state.jobs_created == jobs_before + len(kinds)

    summary = airflow.xcom(run, "summarize")
    assert summary["counts"] == {"internal": 1, "competitor": 1, "external": 1, "no_match": 1}
    competitor = results[kinds.index("competitor")]
    assert summary["competitor_hits"] == [
        {"job_id": competitor["job_id"], "title": "Some Stock Track", "label": "Epidemic Sound"}
    ]
    # Every mapped task really deferred, and our trigger (not a worker) saw the job complete.
    assert run.output.count("Pausing task as DEFERRED") == len(kinds)
    assert run.output.count("[DAG TEST] Trigger completed") == len(kinds)
    for result in results:
        assert _completed_by_the_trigger(run.output, result["job_id"]), result


def test_catalog_dag_recognizes_a_folder_in_sharded_batches_on_the_triggerer(airflow, sim, tmp_path):
    jobs_before = sim.state.jobs_created
    run = airflow.dags_test("slipstream_audioverify_catalog", {"clips": 24, "shards": 2, "workdir": str(tmp_path)})

    assert run.returncode == 0, run.output[-3000:]
    assert airflow.dag_run_state(run) == "success"
    summaries = [airflow.xcom(run, "recognize_shard", map_index=index) for index in range(2)]
    assert sum(s["videos"] for s in summaries) == 24
    assert [s["failed"] for s in summaries] == [0, 0]
    counts = {kind: sum(s["counts"][kind] for s in summaries) for kind in BRANCH_FOR}
    assert counts == dict.fromkeys(BRANCH_FOR, 6)
    lines = [json.loads(line) for s in summaries for line in Path(s["output_path"]).read_text().splitlines()]
    assert len({line["video"] for line in lines}) == len(lines) == 24
    for line in lines:
        kind = next(k for k, sample in sample_videos().items() if Path(line["video"]).name.startswith(sample.stem))
        assert line == {"video": line["video"], **expected_result(line["job_id"], kind)}
    assert sim.state.jobs_created == jobs_before + 24
    # Both shards waited on the triggerer, not in a worker.
    assert run.output.count("Pausing task as DEFERRED") >= 2
    assert "Recognised 24 videos in 2 shards" in run.output


@pytest.mark.parametrize("mode", ["worker", "deferred"])
def test_a_retried_batch_waits_for_its_jobs_and_submits_none_again(retried_batch, mode):
    airflow, run, jobs, videos = retried_batch
    assert run.returncode == 0, run.output[-3000:]
    assert airflow.query(
        "SELECT try_number, state FROM task_instance WHERE run_id = ? AND task_id = ?", run.run_id, f"batch_{mode}"
    ) == [(2, "success")]
    summary = airflow.xcom(run, f"batch_{mode}")
    assert summary["failed"] == 0
    assert summary["videos"] == len(videos)
    # Each video submitted once per task, across both tries of both tasks.
    assert jobs == 2 * len(videos)
    assert run.output.count("SlipstreamBatchFailedError") >= 2
    assert "; deferring " in run.output  # the deferred task's first try waited on a trigger


@pytest.fixture(scope="module")
def retried_batch(sim, tmp_path_factory):
    airflow = AirflowHarness(
        tmp_path_factory.mktemp("batch_retry_home"),
        slipstream_conn(sim.url, sim.state.api_key, **FAST_RETRY_EXTRA),
        dags_folder=TEST_DAGS,
    )
    airflow.migrate()
    work = tmp_path_factory.mktemp("batch_retry")
    videos = []
    for index, sample in enumerate(list(sample_videos().values()) * 2):
        videos.append(work / f"{sample.stem}_{index}{sample.suffix}")
        videos[-1].write_bytes(sample.read_bytes() + bytes([index]))
    jobs_before = sim.state.jobs_created
    sim.state.configure(processing_seconds=7)
    try:
        run = airflow.dags_test("slipstream_batch_retry", {"videos": [str(v) for v in videos], "workdir": str(work)})
    finally:
        sim.state.configure(processing_seconds=1.5)
    return airflow, run, sim.state.jobs_created - jobs_before, videos


def _completed_by_the_trigger(output: str, job_id: str) -> bool:
    """Whether the trigger, not a worker, logged the job's completion."""
    if AIRFLOW_V_3_1_PLUS:  # structlog lines name the logger
        return f"Slipstream job {job_id} is completed [airflow_provider_slipstream.triggers" in output
    # Airflow 3.0 names the file, not the logger: the line must fall inside a trigger's inline run.
    runs = [block.split("[DAG TEST] Trigger completed")[0] for block in output.split("running trigger in line")[1:]]
    return any(f"Slipstream job {job_id} is completed" in block for block in runs)


@pytest.fixture(scope="module")
def retried(sim, tmp_path_factory):
    """One run of slipstream_retry_resume: each recognize task's first try times out after submitting."""
    airflow = AirflowHarness(
        tmp_path_factory.mktemp("retry_home"),
        slipstream_conn(sim.url, sim.state.api_key, **FAST_RETRY_EXTRA),
        dags_folder=TEST_DAGS,
    )
    airflow.migrate()
    jobs_before, posts_before = sim.state.jobs_created, sim.state.count(method="POST")
    run = airflow.dags_test("slipstream_retry_resume", {"video_path": str(sample_videos()["internal"])})
    return airflow, run, sim.state.jobs_created - jobs_before, sim.state.count(method="POST") - posts_before


RETRIED_TASKS = ("recognize_in_worker", "recognize_deferrable")


def test_retried_recognize_resumes_its_job_instead_of_resubmitting(retried):
    airflow, run, jobs, posts = retried

    assert run.returncode == 0, run.output[-3000:]
    assert run.output.count("SlipstreamJobTimeoutError") >= 2
    tries = airflow.query("SELECT task_id, try_number, state FROM task_instance WHERE run_id = ?", run.run_id)
    assert sorted(tries) == sorted([("submit", 1, "success"), *((task, 2, "success") for task in RETRIED_TASKS)])
    # One job per task, across both tries of each.
    assert jobs == posts == 1 + len(RETRIED_TASKS)
    results = [airflow.xcom(run, task) for task in RETRIED_TASKS]
    for result in results:
        assert result == expected_result(result["job_id"], "internal")
    assert len({r["job_id"] for r in results}) == len(RETRIED_TASKS)
    # One resume per task (Airflow 3.0's `dags test` prints each log line twice, in two formats).
    resumes = {line.split(" - ", 1)[-1] for line in run.output.splitlines() if "of an earlier try for" in line}
    assert len(resumes) == len(RETRIED_TASKS), resumes


def test_resume_records_are_gone_once_the_tasks_succeeded_in_every_mode(retried):
    airflow, run, _, _ = retried
    assert run.returncode == 0, run.output[-3000:]
    # Submit, recognize in the worker and deferred: no record left in the task state store (3.3+),
    # nor in the Variables that stand in for it before 3.3.
    assert airflow.query("SELECT key FROM variable") == []
    if airflow.query("SELECT name FROM sqlite_master WHERE name = 'task_state_store'"):
        assert airflow.query("SELECT task_id, key FROM task_state_store WHERE key LIKE 'slipstream_job%'") == []
