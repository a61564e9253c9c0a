"""
Test DAGs: where Airflow's machinery (timeouts, soft_fail, templating, XComArgs) meets the provider.

Each DAG is driven by tests/test_airflow_semantics.py with ``airflow dags test`` against the simulator.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from airflow_provider_slipstream.operators.slipstream import (
    SlipstreamGetTrackOperator,
    SlipstreamRecognizeVideoOperator,
    SlipstreamSubmitVideoOperator,
)
from airflow_provider_slipstream.sensors.slipstream import SlipstreamJobSensor

START = datetime(2026, 1, 1)
JOB = "{{ params.job_id }}"
VIDEO = "{{ params.video_path }}"

# A job that never completes: each bound (timeout, execution_timeout) must end its wait.
with DAG(
    "slipstream_unbounded_deferral",
    schedule=None,
    start_date=START,
    params={"video_path": Param("", type="string")},
):
    SlipstreamRecognizeVideoOperator(
        task_id="recognize_deferrable_execution_timeout",
        video_path=VIDEO,
        deferrable=True,
        poll_interval=0.5,
        execution_timeout=timedelta(seconds=3),
    )

# Every GET answers 429 with a long Retry-After: no wait may sleep it out past its bound.
with DAG(
    "slipstream_retry_after_bounds",
    schedule=None,
    start_date=START,
    params={"poke": "", "reschedule": "", "deferrable": "", "video_path": ""},
):
    others = [
        SlipstreamJobSensor(task_id="sensor_poke", job_id="{{ params.poke }}", mode="poke", poke_interval=1, timeout=1),
        SlipstreamJobSensor(
            task_id="sensor_deferrable", job_id="{{ params.deferrable }}", deferrable=True, poke_interval=1, timeout=1
        ),
        *(
            SlipstreamRecognizeVideoOperator(
                task_id="recognize_deferrable" if deferrable else "recognize_in_worker",
                video_path=VIDEO,
                deferrable=deferrable,
                poll_interval=1,
                timeout=1,
            )
            for deferrable in (False, True)
        ),
    ]
    # Last and alone: `dags test` runs one task at a time, so a rescheduled poke that came due while
    # another task ran would start late, an overrun of the harness, not of the sensor.
    others >> SlipstreamJobSensor(
        task_id="sensor_reschedule",
        job_id="{{ params.reschedule }}",
        poke_interval=1,
        timeout=1,
        trigger_rule="all_done",
    )

# Polls fail for longer than one poll's retry budget, then recover: deferred waits ride it out.
with DAG("slipstream_transient_outage", schedule=None, start_date=START, params={"job_id": "", "video_path": ""}):
    # One after the other, so that each meets an outage of its own.
    SlipstreamRecognizeVideoOperator(
        task_id="recognize_deferrable", video_path=VIDEO, deferrable=True, poll_interval=0.5, timeout=60
    ) >> SlipstreamJobSensor(task_id="sensor_deferrable", job_id=JOB, deferrable=True, poke_interval=0.5, timeout=60)

# One poll is answered 429 with a Retry-After beyond the bound: the wait polls once more at its bound.
for where in ("in_worker", "deferrable"):
    with DAG(f"slipstream_long_retry_after_{where}", schedule=None, start_date=START, params={"video_path": ""}):
        SlipstreamRecognizeVideoOperator(
            task_id="recognize", video_path=VIDEO, deferrable=where == "deferrable", poll_interval=0.5, timeout=3
        )

# An unknown job (404), and for soft_fail also a job that never completes: skipped in every mode.
# (never_fail is about errors a poke raises: Airflow fails a poke or reschedule sensor that times out.)
with DAG(
    "slipstream_fail_policies",
    schedule=None,
    start_date=START,
    params={"unknown_job_id": "", "stalled_job_id": ""},
):
    for mode in ("poke", "reschedule", "deferrable"):
        kwargs = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
        for policy in ("soft_fail", "never_fail"):
            SlipstreamJobSensor(
                task_id=f"not_found_{mode}_{policy}",
                job_id="{{ params.unknown_job_id }}",
                poke_interval=0.5,
                **{policy: True},
                **kwargs,
            )
        SlipstreamJobSensor(
            task_id=f"timeout_{mode}_soft_fail",
            job_id="{{ params.stalled_job_id }}",
            poke_interval=0.5,
            timeout=1,
            soft_fail=True,
            **kwargs,
        )


@task
def labels_from_upstream() -> list[str]:
    return ["Artlist", "Epidemic Sound"]


# A competitor (Epidemic Sound) clip, its labels given every way a DAG author can.
with DAG(
    "slipstream_templated_labels",
    schedule=None,
    start_date=START,
    params={
        "video_path": "",
        "csv": "Epidemic Sound, Artlist",
        "json": '["Epidemic Sound", "Artlist"]',
        "array": Param(["Artlist", "Epidemic Sound"], type="array"),
        "others": "Artlist, Musicbed",
    },
):
    submit = SlipstreamSubmitVideoOperator(task_id="submit", video_path=VIDEO)
    wait = SlipstreamJobSensor(
        task_id="sensor_array", job_id=submit.output, competitor_labels="{{ params.array }}", poke_interval=1
    )
    wait_deferred = SlipstreamJobSensor(
        task_id="sensor_deferrable_csv", job_id=submit.output, competitor_labels="{{ params.csv }}", deferrable=True
    )
    for name, labels in {
        "csv": "{{ params.csv }}",
        "json": "{{ params.json }}",
        "xcomarg": labels_from_upstream(),
        "others": "{{ params.others }}",
    }.items():
        [wait, wait_deferred] >> SlipstreamGetTrackOperator(
            task_id=f"get_track_{name}", job_id=submit.output, competitor_labels=labels
        )
    SlipstreamRecognizeVideoOperator(
        task_id="recognize_array", video_path=VIDEO, competitor_labels="{{ params.array }}", poll_interval=0.5
    )
