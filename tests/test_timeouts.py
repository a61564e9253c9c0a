"""Every wait is bounded: on a job that never completes, each waiting task gives up at its timeout."""

from __future__ import annotations

import pytest
from airflow_harness import AirflowHarness, slipstream_conn

from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from tests.conftest import FAST_RETRY_EXTRA
from tests.test_dags import TEST_DAGS

pytestmark = pytest.mark.dagrun


def test_every_wait_ends_at_its_timeout(tmp_path, sim_conn):
    sim = sim_conn
    video = tmp_path / "stall_forever.mp4"
    video.write_bytes(b"never completes" * 100)
    job_id = SlipstreamHook().submit_file(video).job_id
    airflow = AirflowHarness(
        tmp_path / "home", slipstream_conn(sim.url, sim.state.api_key, **FAST_RETRY_EXTRA), dags_folder=TEST_DAGS
    )
    airflow.migrate()

    run = airflow.dags_test("slipstream_timeouts", {"job_id": job_id, "video_path": str(video)})

    assert airflow.dag_run_state(run) == "failed"
    assert airflow.task_states(run) == {
        ("sensor_reschedule", -1): "failed",
        ("sensor_poke", -1): "failed",
        ("sensor_deferrable", -1): "failed",
        ("sensor_soft_fail", -1): "skipped",
        ("recognize_in_worker", -1): "failed",
        ("recognize_deferrable", -1): "failed",
    }
    assert run.output.count("AirflowSensorTimeout") >= 2
    assert run.output.count("SlipstreamJobTimeoutError") >= 2
    # Two recognize tasks submitted one job each; nothing was re-submitted while waiting.
    assert sim.state.jobs_created == 3
    # Polls stay bounded: ~3 s at 0.5-1 s intervals per task, six tasks, no tight loop.
    polls = sim.state.count(method="GET")
    assert 6 <= polls <= 6 * 10, polls
