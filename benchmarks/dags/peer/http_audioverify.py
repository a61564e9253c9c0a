"""
Peer DAG for the parse-cost comparison: ``example_dags/slipstream_audioverify.py`` rebuilt with
``apache-airflow-providers-http`` alone (what a user could wire up without this provider).

Never run, only parsed: same tasks and dependencies, same parse-time work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor
from airflow.sdk import DAG, Param, task

from airflow_provider_slipstream.samples import sample_videos

JOBS = "api/v4/video-recognition/"
JOB = JOBS + "{{ ti.xcom_pull('submit') }}/"
AUTH = {"Authorization": "Bearer {{ conn.slipstream_http.password }}"}


@task
def catalog_match(result: dict[str, Any]) -> dict[str, Any]:
    return {"action": "cleared", "job_id": result["job_id"], "track_id": result["track"]["id"]}


@task
def flag_competitor(result: dict[str, Any]) -> dict[str, Any]:
    return {"action": "flagged", "job_id": result["job_id"], "label": result["track"]["external_label"]}


@task
def review_outside_track(result: dict[str, Any]) -> dict[str, Any]:
    return {"action": "review", "job_id": result["job_id"], "title": result["track"]["title"]}


@task
def no_music(result: dict[str, Any]) -> dict[str, Any]:
    return {"action": "none", "job_id": result["job_id"]}


@task.branch
def branch_on_match(result: dict[str, Any]) -> str:
    track = result["track"]
    if track is None:
        return "no_music"
    if track["internal"]:
        return "catalog_match"
    if (track["external_label"] or "").lower() == "epidemic sound":
        return "flag_competitor"
    return "review_outside_track"


with DAG(
    dag_id="http_audioverify",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"video_path": Param(str(sample_videos()["competitor"]), type="string")},
    tags=["benchmark-peer"],
) as dag:
    submit = HttpOperator(
        task_id="submit",
        http_conn_id="slipstream_http",
        method="POST",
        endpoint=JOBS,
        headers=AUTH,
        data={"storage_key": "{{ params.video_path }}"},
        response_filter=lambda response: response.json()["job_id"],
    )
    wait = HttpSensor(
        task_id="wait",
        http_conn_id="slipstream_http",
        endpoint=JOB,
        headers=AUTH,
        response_check=lambda response: response.json()["status"] == "completed",
        poke_interval=2,
        timeout=600,
        mode="reschedule",
    )
    get_track = HttpOperator(
        task_id="get_track",
        http_conn_id="slipstream_http",
        method="GET",
        endpoint=JOB,
        headers=AUTH,
        response_filter=lambda response: response.json(),
    )
    result = get_track.output
    submit >> wait >> get_track
    branch_on_match(result) >> [
        catalog_match(result),
        flag_competitor(result),
        review_outside_track(result),
        no_music(result),
    ]
