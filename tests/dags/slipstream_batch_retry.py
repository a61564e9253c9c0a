"""Test DAG: a batch whose first try times out while its jobs run; the retry waits for them, submitting none again."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_slipstream.operators.slipstream import SlipstreamBatchRecognizeOperator

with DAG(
    dag_id="slipstream_batch_retry",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"videos": Param([], type="array"), "workdir": Param("", type="string")},
) as dag:
    for deferrable in (False, True):
        mode = "deferred" if deferrable else "worker"
        SlipstreamBatchRecognizeOperator(
            task_id=f"batch_{mode}",
            # A param array renders to its repr: the operator reads it as the list it names.
            videos="{{ params.videos }}",
            output_path="{{ params.workdir }}/" + mode + ".jsonl",
            deferrable=deferrable,
            poll_interval=0.5,
            # Shorter than the jobs take (7 s): the first try ends with timeout lines, more than max_failed.
            # Long enough to defer: a trigger's first poll waits 2 s here (tests/conftest.py).
            timeout=4,
            max_failed=0,
            retries=1,
            # Longer than what is left of the jobs then: the retry finds them completed.
            retry_delay=timedelta(seconds=5),
        )
