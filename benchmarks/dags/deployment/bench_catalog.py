"""
The three ways to recognise a folder of clips that the deployment benchmark compares.

- ``bench_mapped``: one deferrable ``SlipstreamRecognizeVideoOperator`` per clip (``.expand()``), what a
  user writes without the batch operator;
- ``bench_batch``: one ``SlipstreamBatchRecognizeOperator`` over the folder;
- ``bench_sharded``: the folder split by ``shard_manifests`` into ``params.shards`` batches.

Every run takes ``params.folder`` (the clips); the batches write their results under
``params.folder``/results. All wait on the triggerer, polling every ``POLL_INTERVAL`` seconds.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_slipstream.batch import iter_videos, shard_manifests
from airflow_provider_slipstream.operators.slipstream import (
    SlipstreamBatchRecognizeOperator,
    SlipstreamRecognizeVideoOperator,
)

PARAMS = {
    "folder": Param("/tmp/slipstream_bench_clips", type="string"),
    "shards": Param(4, type="integer", minimum=1),
}
POLL_INTERVAL = 5.0
RESULTS = "{{ params.folder }}/results/{{ run_id | replace(':', '_') | replace('+', '_') }}"


def _dag(dag_id: str) -> DAG:
    return DAG(dag_id=dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, params=PARAMS)


@task
def list_clips(folder: str) -> list[str]:
    return sorted(str(path) for path in Path(folder).glob("*.mp4"))


@task
def shard(folder: str, results: str, **context: Any) -> list[str]:
    shards = context["params"]["shards"]
    return shard_manifests(iter_videos(videos_glob=f"{folder}/*.mp4"), shards=shards, folder=f"{results}/shards")


with _dag("bench_mapped"):
    SlipstreamRecognizeVideoOperator.partial(task_id="recognize", deferrable=True, poll_interval=POLL_INTERVAL).expand(
        video_path=list_clips("{{ params.folder }}")
    )

with _dag("bench_batch"):
    SlipstreamBatchRecognizeOperator(
        task_id="recognize",
        videos_glob="{{ params.folder }}/*.mp4",
        output_path=RESULTS + "/results.jsonl",
        poll_interval=POLL_INTERVAL,
        deferrable=True,
        max_failed=0,
    )

with _dag("bench_sharded"):
    SlipstreamBatchRecognizeOperator.partial(
        task_id="recognize",
        output_path=RESULTS + "/results-{{ ti.map_index }}.jsonl",
        poll_interval=POLL_INTERVAL,
        deferrable=True,
        max_failed=0,
    ).expand(manifest=shard("{{ params.folder }}", RESULTS))
