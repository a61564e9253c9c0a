"""Test DAG: a recognize task whose first try fails after submitting must resume, not resubmit."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_slipstream.operators.slipstream import SlipstreamRecognizeVideoOperator

with DAG(
    dag_id="slipstream_retry_resume",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"video_path": Param("", type="string"), "deferrable": Param(False, type="boolean")},
) as dag:
    for deferrable in (False, True):
        SlipstreamRecognizeVideoOperator(
            task_id="recognize_deferrable" if deferrable else "recognize_in_worker",
            video_path="{{ params.video_path }}",
            deferrable=deferrable,
            poll_interval=0.5,
            retries=1,
            retry_delay=timedelta(seconds=1),
        )
