"""
Submit one video, wait for music recognition without holding a worker, and branch on the match.

submit -> wait (reschedule-mode sensor) -> get_track (with the catalog's rights data) -> branch_on_match
-> one of: license_track -> catalog_match | flag_competitor | review_outside_track | no_music

A Slipstream catalog track is licensed for the video's uploader (the ``user_id`` param): the
license's public URL is what resolves a Content ID claim on that video.

Trigger with another video: ``airflow dags test slipstream_audioverify -c '{"video_path": "s3://aws@bucket/clip.mp4"}'``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_slipstream.operators.slipstream import (
    SlipstreamGenerateLicenseOperator,
    SlipstreamGetTrackOperator,
    SlipstreamMatchBranchOperator,
    SlipstreamSubmitVideoOperator,
)
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.sensors.slipstream import SlipstreamJobSensor


@task
def catalog_match(result: dict[str, Any], granted: dict[str, Any]) -> dict[str, Any]:
    """A Slipstream catalog track, now licensed for the uploader: the video is cleared."""
    track, catalog = result["track"], result.get("catalog") or {}
    print(f"Cleared: {track['title']!r} by {track['artist']} is Slipstream catalog track {catalog.get('short_url')}")
    print(f"Licensed for user {granted['user_id']!r}: {granted['license_url']}")
    return {"action": "licensed", "job_id": result["job_id"], "license_url": granted["license_url"]}


@task
def flag_competitor(result: dict[str, Any]) -> dict[str, Any]:
    """A competitor library's track: flag the video for the partner's rights team."""
    track = result["track"]
    print(f"FLAGGED: {track['title']!r} by {track['artist']} is from {track['external_label']} (ISRC {track['isrc']})")
    return {"action": "flagged", "job_id": result["job_id"], "label": track["external_label"], "isrc": track["isrc"]}


@task
def review_outside_track(result: dict[str, Any]) -> dict[str, Any]:
    """Some other outside track: queue it for a human review of its licence."""
    track = result["track"]
    print(f"Review: {track['title']!r} by {track['artist']} (label {track['external_label']}, score {track['score']})")
    return {"action": "review", "job_id": result["job_id"], "title": track["title"]}


@task
def no_music(result: dict[str, Any]) -> dict[str, Any]:
    """No music detected: nothing to license."""
    print(f"No music found in job {result['job_id']}: nothing to clear")
    return {"action": "none", "job_id": result["job_id"]}


with DAG(
    dag_id="slipstream_audioverify",
    description="Recognise the music in one video and act on what was found",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "video_path": Param(str(sample_videos()["competitor"]), type="string", description="Video to check"),
        "user_id": Param("uploader-1", type="string", minLength=1, description="Who uploaded it (for a license)"),
    },
    tags=["slipstream", "example"],
) as dag:
    submit = SlipstreamSubmitVideoOperator(task_id="submit", video_path="{{ params.video_path }}")
    # The defaults: reschedule mode (no worker slot between pokes), a poke every 10 s, at most an hour.
    wait = SlipstreamJobSensor(task_id="wait", job_id=submit.output)
    get_track = SlipstreamGetTrackOperator(task_id="get_track", job_id=submit.output, enrich_catalog=True)
    branch = SlipstreamMatchBranchOperator(
        task_id="branch_on_match",
        result=get_track.output,
        branches={
            "internal": "license_track",
            "competitor": "flag_competitor",
            "external": "review_outside_track",
            "no_match": "no_music",
        },
    )
    # Generated once per (track, user, project): a retry or a clear reuses it and spends no quota.
    license_track = SlipstreamGenerateLicenseOperator(
        task_id="license_track",
        result=get_track.output,
        user_id="{{ params.user_id }}",
        project_name="{{ params.video_path.rsplit('/', 1)[-1] }}",
    )
    wait >> get_track
    branch >> [
        license_track,
        flag_competitor(get_track.output),
        review_outside_track(get_track.output),
        no_music(get_track.output),
    ]
    catalog_match(get_track.output, license_track.output)
