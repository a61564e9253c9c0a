"""
Recognise a batch of videos in parallel, waiting on the triggerer, then summarise.

list_videos -> recognize (mapped, deferrable) -> summarize
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_slipstream.models import MatchKind
from airflow_provider_slipstream.operators.slipstream import SlipstreamRecognizeVideoOperator
from airflow_provider_slipstream.samples import sample_videos


@task
def list_videos(**context: Any) -> list[str]:
    return list(context["params"]["video_paths"])


@task
def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Count results per match kind and list the competitor hits."""
    results = list(results)
    counts = Counter(result["match"] for result in results)
    competitor_hits = [
        {"job_id": r["job_id"], "title": r["track"]["title"], "label": r["track"]["external_label"]}
        for r in results
        if r["match"] == MatchKind.COMPETITOR.value
    ]
    summary = {
        "videos": len(results),
        "counts": {kind.value: counts.get(kind.value, 0) for kind in MatchKind},
        "competitor_hits": competitor_hits,
    }
    print(f"Recognised {summary['videos']} videos: {summary['counts']}")
    for hit in competitor_hits:
        print(f"  competitor: {hit['title']!r} ({hit['label']}) in job {hit['job_id']}")
    return summary


with DAG(
    dag_id="slipstream_audioverify_batch",
    description="Recognise many videos at once on the triggerer and report competitor hits",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"video_paths": Param([str(p) for p in sample_videos().values()], type="array")},
    tags=["slipstream", "example"],
) as dag:
    # Deferrable: the waits cost the triggerer one request per 3 s each and hold no worker slot.
    # Retries resume the job a try already submitted for the same video.
    recognize = SlipstreamRecognizeVideoOperator.partial(task_id="recognize", deferrable=True, retries=2).expand(
        video_path=list_videos()
    )
    summarize(recognize.output)
