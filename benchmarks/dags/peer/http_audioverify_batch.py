"""
Peer DAG for the parse-cost comparison: ``example_dags/slipstream_audioverify_batch.py`` rebuilt
with ``apache-airflow-providers-http`` alone. Never run, only parsed.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from airflow.providers.http.operators.http import HttpOperator
from airflow.sdk import DAG, Param, task

from airflow_provider_slipstream.samples import sample_videos


@task
def list_videos(**context: Any) -> list[str]:
    return list(context["params"]["video_paths"])


@task
def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter("no_match" if r["track"] is None else "match" for r in results)
    return {"videos": len(list(results)), "counts": dict(counts)}


with DAG(
    dag_id="http_audioverify_batch",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"video_paths": Param([str(p) for p in sample_videos().values()], type="array")},
    tags=["benchmark-peer"],
) as dag:
    recognize = HttpOperator.partial(
        task_id="recognize",
        http_conn_id="slipstream_http",
        method="POST",
        endpoint="api/v4/video-recognition/",
        deferrable=True,
        retries=2,
    ).expand(data=list_videos())
    summarize(recognize.output)
