"""
Benchmark DAGs: one Slipstream job waited on by the sensor in each of its three modes.

``slipstream_bench_poke``, ``slipstream_bench_reschedule`` and ``slipstream_bench_deferrable``:
submit (a tiny sample clip) -> wait (SlipstreamJobSensor in that mode). The simulator's
``processing_seconds`` sets how long the job takes; ``benchmarks/modes.py`` runs each DAG with
``airflow dags test`` and reads the worker-slot time and round trips from the metadata DB.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_slipstream.operators.slipstream import SlipstreamSubmitVideoOperator
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.sensors.slipstream import SlipstreamJobSensor
from airflow_provider_slipstream.triggers.slipstream import DEFAULT_POLL_INTERVAL

#: mode name -> sensor arguments
MODES = {
    "poke": {"mode": "poke"},
    "reschedule": {"mode": "reschedule"},
    "deferrable": {"deferrable": True},
}

for name, sensor_args in MODES.items():
    with DAG(
        dag_id=f"slipstream_bench_{name}",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        catchup=False,
        tags=["slipstream", "benchmark"],
    ) as dag:
        submit = SlipstreamSubmitVideoOperator(
            task_id="submit", video_path=str(sample_videos()["internal"]), upload_method="direct"
        )
        SlipstreamJobSensor(
            task_id="wait", job_id=submit.output, poke_interval=DEFAULT_POLL_INTERVAL, timeout=600, **sensor_args
        )
    globals()[dag.dag_id] = dag
