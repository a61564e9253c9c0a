"""Test DAG: a task whose first try fails after submitting (its wait times out) resumes, not resubmits."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_slipstream.operators.slipstream import (
    SlipstreamRecognizeVideoOperator,
    SlipstreamSubmitVideoOperator,
)

with DAG(
    dag_id="slipstream_retry_resume",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"video_path": Param("", type="string"), "deferrable": Param(False, type="boolean")},
) as dag:
    SlipstreamSubmitVideoOperator(task_id="submit", video_path="{{ params.video_path }}")
    for deferrable in (False, True):
        SlipstreamRecognizeVideoOperator(
            task_id="recognize_deferrable" if deferrable else "recognize_in_worker",
            video_path="{{ params.video_path }}",
            deferrable=deferrable,
            poll_interval=0.5,
            # Shorter than the job takes: the first try times out, the retry finds the job completed.
            timeout=1,
            retries=1,
            retry_delay=timedelta(seconds=1),
        )
