"""
E2E chaos DAG: every way of waiting for a Slipstream job, each mapped over its own list of videos
(a run's conf picks the lists; an empty list maps to nothing), so a test can kill a component while
the waits it cares about are under way.

- ``recognize_deferred`` / ``recognize_worker``: submit and wait on the triggerer / in the worker.
- ``submit_<mode>`` then ``sense_<mode>`` for the sensor's modes ``deferred``, ``reschedule`` and
  ``poke``: a submit, then a sensor waiting for its job.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_slipstream.operators.slipstream import (
    SlipstreamRecognizeVideoOperator,
    SlipstreamSubmitVideoOperator,
)
from airflow_provider_slipstream.sensors.slipstream import SlipstreamJobSensor

SENSOR_MODES = ("deferred", "reschedule", "poke")
LISTS = ("deferred", "worker", *(f"sense_{mode}" for mode in SENSOR_MODES))


@task
def videos(kind: str, **context: Any) -> list[str]:
    return list(context["params"].get(kind, []))


with DAG(
    "slipstream_chaos",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={kind: [] for kind in LISTS},
    max_active_tasks=64,
    # A killed worker's task comes back as a retry; what the tests check is that the retry resumes.
    default_args={"retries": 3, "retry_delay": timedelta(seconds=2)},
):
    SlipstreamRecognizeVideoOperator.partial(task_id="recognize_deferred", deferrable=True, poll_interval=2).expand(
        video_path=videos.override(task_id="deferred_videos")("deferred")
    )
    SlipstreamRecognizeVideoOperator.partial(task_id="recognize_worker", deferrable=False, poll_interval=2).expand(
        video_path=videos.override(task_id="worker_videos")("worker")
    )
    for mode in SENSOR_MODES:
        submitted = SlipstreamSubmitVideoOperator.partial(task_id=f"submit_{mode}").expand(
            video_path=videos.override(task_id=f"sense_{mode}_videos")(f"sense_{mode}")
        )
        SlipstreamJobSensor.partial(
            task_id=f"sense_{mode}",
            mode="poke" if mode == "deferred" else mode,
            deferrable=mode == "deferred",
            poke_interval=10 if mode == "reschedule" else 2,
        ).expand(job_id=submitted.output)
