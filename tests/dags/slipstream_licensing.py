"""Test DAG: recognise with enrichment, then license the match; the license task's first try fails late."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_slipstream.operators.slipstream import (
    SlipstreamGenerateLicenseOperator,
    SlipstreamRecognizeVideoOperator,
)


class LicenseThenCrash(SlipstreamGenerateLicenseOperator):
    """Fails its first try after the license arrived: as a worker lost right then would."""

    def execute(self, context: Any) -> dict[str, Any]:
        granted = super().execute(context)
        if context["ti"].try_number == 1 and context["params"]["crash_first_try"]:
            raise RuntimeError("worker lost after the license was generated")
        return granted


with DAG(
    dag_id="slipstream_licensing",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "video_path": Param("", type="string"),
        "user_id": Param("uploader-1", type="string"),
        "crash_first_try": Param(True, type="boolean"),
    },
) as dag:
    recognize = SlipstreamRecognizeVideoOperator(
        task_id="recognize", video_path="{{ params.video_path }}", poll_interval=0.5, enrich_catalog=True
    )
    # The same, waiting on the triggerer: enriched in execute_complete.
    SlipstreamRecognizeVideoOperator(
        task_id="recognize_deferred",
        video_path="{{ params.video_path }}",
        poll_interval=0.5,
        enrich_catalog=True,
        deferrable=True,
    )
    LicenseThenCrash(
        task_id="license",
        result=recognize.output,
        user_id="{{ params.user_id }}",
        project_name="Video {{ params.video_path.rsplit('/', 1)[-1] }}",
        retries=1,
        retry_delay=timedelta(seconds=1),
    )
    SlipstreamGenerateLicenseOperator(
        task_id="license_or_skip", result=recognize.output, user_id="{{ params.user_id }}", skip_non_catalog=True
    )
