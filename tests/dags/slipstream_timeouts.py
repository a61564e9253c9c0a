"""Test DAG: every way of waiting gives up at its timeout on a job that never completes."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_provider_slipstream.operators.slipstream import SlipstreamRecognizeVideoOperator
from airflow_provider_slipstream.sensors.slipstream import SlipstreamJobSensor

with DAG(
    dag_id="slipstream_timeouts",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"job_id": Param("", type="string"), "video_path": Param("", type="string")},
) as dag:
    SlipstreamJobSensor(task_id="sensor_reschedule", job_id="{{ params.job_id }}", poke_interval=1, timeout=3)
    SlipstreamJobSensor(task_id="sensor_poke", job_id="{{ params.job_id }}", poke_interval=1, timeout=3, mode="poke")
    SlipstreamJobSensor(
        task_id="sensor_deferrable", job_id="{{ params.job_id }}", poke_interval=1, timeout=3, deferrable=True
    )
    SlipstreamJobSensor(
        task_id="sensor_soft_fail", job_id="{{ params.job_id }}", poke_interval=1, timeout=3, soft_fail=True
    )
    SlipstreamRecognizeVideoOperator(
        task_id="recognize_in_worker", video_path="{{ params.video_path }}", poll_interval=0.5, timeout=3
    )
    SlipstreamRecognizeVideoOperator(
        task_id="recognize_deferrable",
        video_path="{{ params.video_path }}",
        poll_interval=0.5,
        timeout=3,
        deferrable=True,
    )
