"""
Where Airflow's own machinery meets the provider, in real ``airflow dags test`` runs.

Each test is named after the behaviour it proves (docs/reliability.md lists them). The DAGs are in
tests/dags/slipstream_semantics.py; outcomes are read back from the run's metadata database.
"""

from __future__ import annotations

import math

import pytest
from airflow_harness import AirflowHarness, slipstream_conn

from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import Fault, SimulatorServer, SimulatorState
from tests.conftest import FAST_RETRY_EXTRA
from tests.contract import expected_result
from tests.test_dags import TEST_DAGS

pytestmark = pytest.mark.dagrun

JOB_GLOB = "/api/v4/video-recognition/*/"
#: Every request's read timeout in these runs (FAST_RETRY_EXTRA), part of the overrun allowance.
REQUEST_TIMEOUT = FAST_RETRY_EXTRA["timeout"]


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(SimulatorState(queued_seconds=0.2, processing_seconds=1.0)) as server:
        yield server


@pytest.fixture(scope="module")
def airflow(sim, tmp_path_factory) -> AirflowHarness:
    harness = AirflowHarness(
        tmp_path_factory.mktemp("airflow_home"),
        slipstream_conn(sim.url, sim.state.api_key, **FAST_RETRY_EXTRA),
        dags_folder=TEST_DAGS,
    )
    harness.migrate()
    return harness


@pytest.fixture
def hook(sim, monkeypatch) -> SlipstreamHook:
    monkeypatch.setenv("AIRFLOW_CONN_SLIPSTREAM_DEFAULT", slipstream_conn(sim.url, sim.state.api_key))
    return SlipstreamHook()


@pytest.fixture(autouse=True)
def _no_faults_left(sim):
    yield
    sim.state.clear_faults()


def stalled_video(tmp_path, name: str = "stall_forever.mp4"):
    video = tmp_path / name
    video.write_bytes(b"this job never completes " * 64)
    return video


def polling_span(sim: SimulatorServer, job_id: str) -> float:
    """Seconds from the first to the last poll of a job, as the simulator saw them: how long it was waited on."""
    polls = [r.at for r in sim.state.requests if r.method == "GET" and r.path.endswith(f"/{job_id}/")]
    return polls[-1] - polls[0]


def test_deferred_recognize_without_timeout_is_bounded_by_execution_timeout(airflow, sim, tmp_path):
    gets_before = sim.state.count(method="GET")
    # Airflow 3 does not count a deferral against execution_timeout: before the fix this run never ended.
    run = airflow.dags_test("slipstream_unbounded_deferral", {"video_path": str(stalled_video(tmp_path))}, timeout=120)

    assert airflow.task_states(run) == {("recognize_deferrable_execution_timeout", -1): "failed"}
    assert "SlipstreamJobTimeoutError" in run.output
    job_id = airflow.xcom(run, "recognize_deferrable_execution_timeout", key="job_id")
    assert polling_span(sim, job_id) < 3 + 0.5 + REQUEST_TIMEOUT
    # It polled at its interval until then: no tight loop, no extra polls.
    assert 1 <= sim.state.count(method="GET") - gets_before <= math.ceil(3 / 0.5) + 2


def test_no_wait_overruns_its_bound_whatever_retry_after_asks(airflow, sim, hook, tmp_path):
    sensor_jobs = {
        mode: hook.submit_file(stalled_video(tmp_path)).job_id for mode in ("poke", "reschedule", "deferrable")
    }
    # Each GET is answered 429 "come back in 8 s": longer than every task's 1 s bound.
    sim.state.add_fault(Fault("status", method="GET", path=JOB_GLOB, status=429, headers={"Retry-After": "8"}))

    run = airflow.dags_test(
        "slipstream_retry_after_bounds", {**sensor_jobs, "video_path": str(sample_videos()["internal"])}
    )

    states = airflow.task_states(run)
    assert set(states.values()) == {"failed"}, states
    waited = {f"sensor_{mode}": job_id for mode, job_id in sensor_jobs.items()}
    for task_id in ("recognize_in_worker", "recognize_deferrable"):
        waited[task_id] = airflow.xcom(run, task_id, key="job_id")
    spans = {task_id: polling_span(sim, job_id) for task_id, job_id in waited.items()}
    # The bound: timeout 1 s, plus one poll interval (1 s) plus one request timeout.
    assert all(span <= 1 + 1 + REQUEST_TIMEOUT for span in spans.values()), spans
    assert run.output.count("AirflowSensorTimeout") >= 3
    assert run.output.count("SlipstreamJobTimeoutError") >= 2


def test_deferred_waits_ride_out_transient_failures_until_their_bound(airflow, sim, hook):
    job_id = hook.submit_file(sample_videos()["competitor"]).job_id
    jobs_before = sim.state.jobs_created
    budget = FAST_RETRY_EXTRA["max_retries"] + 1
    # Three polls' worth of retry budgets fail for each task before Slipstream recovers: the sensor's
    # job has its own outage (the first matching rule applies); the recognize task's job, polled first, the other.
    outages = [
        sim.state.add_fault(
            Fault("status", method="GET", path=f"/api/v4/video-recognition/{job_id}/", status=503, remaining=3 * budget)
        ),
        sim.state.add_fault(Fault("status", method="GET", path=JOB_GLOB, status=503, remaining=3 * budget)),
    ]

    run = airflow.dags_test(
        "slipstream_transient_outage", {"job_id": job_id, "video_path": str(sample_videos()["internal"])}
    )

    assert [outage.remaining for outage in outages] == [0, 0]
    assert airflow.task_states(run) == {("recognize_deferrable", -1): "success", ("sensor_deferrable", -1): "success"}
    # Each trigger saw its polls fail after their retries, and waited on.
    assert run.output.count("Still waiting for Slipstream job") >= 4
    recognized = airflow.xcom(run, "recognize_deferrable")
    assert recognized == expected_result(recognized["job_id"], "internal")
    assert airflow.xcom(run, "sensor_deferrable") == expected_result(job_id, "competitor")
    assert sim.state.jobs_created == jobs_before + 1


@pytest.mark.parametrize("where", ["in_worker", "deferrable"])
def test_a_retry_after_beyond_the_bound_is_waited_out_to_the_bound(airflow, sim, where):
    # The first poll is told "come back in 30 s"; the bound is 3 s, and the job is done after 1.2 s.
    throttled = sim.state.add_fault(
        Fault("status", method="GET", path=JOB_GLOB, status=429, headers={"Retry-After": "30"}, remaining=1)
    )

    run = airflow.dags_test(f"slipstream_long_retry_after_{where}", {"video_path": str(sample_videos()["external"])})

    assert throttled.remaining == 0
    assert airflow.task_states(run) == {("recognize", -1): "success"}, run.output[-3000:]
    result = airflow.xcom(run, "recognize")
    assert result == expected_result(result["job_id"], "external")
    # Two polls: the throttled one and one at the bound; not one every 0.5 s, not one after 30 s.
    assert sum(r.path.endswith(f"/{result['job_id']}/") for r in sim.state.requests if r.method == "GET") == 2
    assert polling_span(sim, result["job_id"]) < 3 + 1


def test_soft_fail_and_never_fail_apply_in_every_sensor_mode(airflow, hook, tmp_path):
    stalled = hook.submit_file(stalled_video(tmp_path)).job_id
    unknown = "00000000-0000-4000-8000-000000000000"

    run = airflow.dags_test("slipstream_fail_policies", {"unknown_job_id": unknown, "stalled_job_id": stalled})

    states = airflow.task_states(run)
    assert len(states) == 9
    # A 404 (even on a deferrable sensor's first poke) and a timeout, in poke, reschedule and deferrable.
    assert states == dict.fromkeys(states, "skipped"), states


def test_templated_label_lists_mean_the_labels_they_name(airflow, sim):
    competitor = str(sample_videos()["competitor"])

    run = airflow.dags_test("slipstream_templated_labels", {"video_path": competitor})

    assert airflow.dag_run_state(run) == "success", run.output[-3000:]
    job_id = airflow.xcom(run, "submit")
    # A string rendered from a comma-separated list, a JSON list, a Python list (an array param),
    # or a list from an XComArg: each names Epidemic Sound, whose track is a competitor's.
    for task_id in ("sensor_array", "sensor_deferrable_csv", "get_track_csv", "get_track_json", "get_track_xcomarg"):
        assert airflow.xcom(run, task_id) == expected_result(job_id, "competitor"), task_id
    recognized = airflow.xcom(run, "recognize_array")
    assert recognized == expected_result(recognized["job_id"], "competitor")
    # Labels that do not name Epidemic Sound leave the same track an outside one.
    others = airflow.xcom(run, "get_track_others")
    assert others["match"] == "external"
    assert others["track"] == expected_result(job_id, "competitor")["track"]
