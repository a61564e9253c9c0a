"""E2E test DAG: recognize a list of videos kept in a Variable, so a test can change it and clear the run."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS
from airflow.sdk import DAG, Variable, task

from airflow_provider_slipstream.operators.slipstream import SlipstreamRecognizeVideoOperator

VIDEOS_VARIABLE = "slipstream_clear_videos"


@task
def list_videos() -> list[str]:
    return Variable.get(VIDEOS_VARIABLE, deserialize_json=True)


with DAG("slipstream_clear", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    videos = list_videos()
    for deferrable in (False, True):
        SlipstreamRecognizeVideoOperator.partial(
            task_id="recognize_deferrable" if deferrable else "recognize_in_worker",
            deferrable=deferrable,
            poll_interval=1,
            timeout=5,
            # Airflow 3.0's scheduler can fail a just-resumed deferred task before it starts (409 on
            # start): a retry there resumes the try's job (the job counts prove it). None on 3.1+,
            # where a failing try must show.
            retries=0 if AIRFLOW_V_3_1_PLUS else 1,
            retry_delay=timedelta(seconds=1),
        ).expand(video_path=videos)
