"""
Recognise a whole folder of videos in a few task instances: sharded batches, waiting on the triggerer.

make_clips -> shard -> recognize_shard (one batch per shard, mapped) -> report

``make_clips`` stands in for a day's uploads: it writes ``params.clips`` clips into a folder of this
run. In production, list your storage instead, e.g. ``videos_glob="s3://aws@uploads/{{ ds }}/*.mp4"``
(object storage needs its provider with the filesystem extra, e.g. ``apache-airflow-providers-amazon[s3fs]``,
and the connection named in the URL). ``shard`` splits the listing into ``params.shards`` manifests
by a stable hash, so each batch, a task instance of its own, can run on another worker; each writes
its results file and keeps its checkpoint beside it, so a retry or a clear submits nothing twice.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_slipstream.batch import iter_videos, shard_manifests
from airflow_provider_slipstream.operators.slipstream import SlipstreamBatchRecognizeOperator
from airflow_provider_slipstream.samples import sample_videos

RUN_FOLDER = "{{ params.workdir }}/{{ run_id | replace(':', '_') | replace('+', '_') }}"


@task
def make_clips(folder: str, **context: Any) -> str:
    """Write ``params.clips`` distinct sample clips (all four match kinds) into ``folder``/inbox."""
    clips = context["params"]["clips"]
    inbox = Path(folder) / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    samples = list(sample_videos().values())
    for index in range(clips):
        sample = samples[index % len(samples)]
        (inbox / f"{sample.stem}_{index:05d}{sample.suffix}").write_bytes(sample.read_bytes() + f"#{index}".encode())
    return str(inbox)


@task
def shard(inbox: str, folder: str, **context: Any) -> list[str]:
    """Split the inbox's listing into ``params.shards`` manifest files; one batch task each."""
    shards = context["params"]["shards"]
    return shard_manifests(iter_videos(videos_glob=f"{inbox}/*"), shards=shards, folder=f"{folder}/shards")


@task
def report(summaries: list[dict[str, Any]]) -> None:
    """Add up the shards' summaries and print the competitor hits from their results files."""
    summaries = list(summaries)
    counts = {kind: sum(s["counts"][kind] for s in summaries) for kind in summaries[0]["counts"]}
    print(f"Recognised {sum(s['videos'] for s in summaries)} videos in {len(summaries)} shards: {counts}")
    failed, hits = sum(s["failed"] for s in summaries), sum(s["competitor_hits"] for s in summaries)
    print(f"Failed: {failed}; competitor hits: {hits}")
    for summary in summaries:
        with open(summary["output_path"]) as results:
            for line in map(json.loads, results):
                if line.get("match") == "competitor":
                    track = line["track"]
                    print(f"  competitor: {track['title']!r} ({track['external_label']}) in {line['video']}")


with DAG(
    dag_id="slipstream_audioverify_catalog",
    description="Recognise a folder of videos in sharded batches on the triggerer",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "clips": Param(40, type="integer", minimum=1),
        "shards": Param(2, type="integer", minimum=1),
        "workdir": Param(f"{tempfile.gettempdir()}/slipstream_catalog", type="string"),
    },
    tags=["slipstream", "example"],
) as dag:
    inbox = make_clips(folder=RUN_FOLDER)
    manifests = shard(inbox, folder=RUN_FOLDER)
    recognize = SlipstreamBatchRecognizeOperator.partial(
        task_id="recognize_shard",
        output_path=RUN_FOLDER + "/results-{{ ti.map_index }}.jsonl",
        deferrable=True,
        max_failed=0,
        retries=2,
    ).expand(manifest=manifests)
    report(recognize.output)
