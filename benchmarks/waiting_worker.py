"""
One side of "waiting at scale": N triggers in ONE asyncio loop, as Airflow's triggerer runs them.

``python waiting_worker.py ours|peer``. Imports its trigger class, reports ``ready`` (JSON on
the protocol channel), reads the jobs to wait for, then builds and runs every trigger
concurrently and reports the CPU seconds, memory and the monotonic time each event was emitted.
Only this process is measured: the simulator runs in another one.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import sys
import threading
import time
from typing import Any

import psutil

PEER_CONN_ID = "slipstream_http"
PEER_CHECK = "peer_check.response_is_completed"
JOB_ENDPOINT = "api/v4/video-recognition/{job_id}/"


def protocol_channel() -> Any:
    """Keep the real stdout for JSON answers; anything else printed to stdout goes to stderr (the log)."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return channel


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def build_triggers(side: str, jobs: list[dict[str, Any]], poll_interval: float, api_key: str) -> list[Any]:
    if side == "ours":
        from airflow_provider_slipstream.triggers.slipstream import SlipstreamJobTrigger

        return [SlipstreamJobTrigger(job_id=job["job_id"], poll_interval=poll_interval) for job in jobs]
    from airflow.providers.http.triggers.http import HttpEventTrigger

    return [
        HttpEventTrigger(
            response_check_path=PEER_CHECK,
            http_conn_id=PEER_CONN_ID,
            method="GET",
            endpoint=JOB_ENDPOINT.format(job_id=job["job_id"]),
            headers={"Authorization": f"Bearer {api_key}"},
            poll_interval=poll_interval,
        )
        for job in jobs
    ]


async def run_all(triggers: list[Any], job_ids: list[str], events: dict[str, dict[str, Any]]) -> None:
    async def consume(trigger: Any, job_id: str) -> None:
        try:
            async for event in trigger.run():
                if job_id not in events:
                    payload = event.payload if isinstance(event.payload, dict) else {}
                    events[job_id] = {"emitted_at": time.monotonic(), "status": payload.get("status")}
        except Exception as exc:
            events[job_id] = {"emitted_at": time.monotonic(), "status": f"raised {type(exc).__name__}: {exc}"}

    await asyncio.gather(*(consume(t, j) for t, j in zip(triggers, job_ids, strict=True)))


def main() -> int:
    side = sys.argv[1]
    channel = protocol_channel()
    # What a triggerer has loaded anyway before it runs a trigger.
    import airflow.sdk
    from airflow.triggers.base import BaseTrigger  # noqa: F401

    if side == "ours":
        import airflow_provider_slipstream.triggers.slipstream  # noqa: F401
    else:
        import airflow.providers.http.triggers.http  # noqa: F401
    # Both sides wait with aiohttp; the peer imports it with its module, ours on its first wait (off the
    # event loop). Imported here for both, so that "growth while waiting" counts the waits, not a
    # one-time import of about 6 MiB.
    import aiohttp  # noqa: F401

    gc.collect()
    process = psutil.Process()
    channel.write(json.dumps({"ready": True, "rss": process.memory_info().rss}) + "\n")

    request = json.loads(sys.stdin.readline())
    jobs, poll_interval = request["jobs"], request["poll_interval"]

    rss_before = process.memory_info().rss
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    user0, sys0 = cpu_seconds()
    started = time.monotonic()
    triggers = build_triggers(side, jobs, poll_interval, request["api_key"])
    events: dict[str, dict[str, Any]] = {}
    asyncio.run(run_all(triggers, [job["job_id"] for job in jobs], events))
    finished = time.monotonic()
    user1, sys1 = cpu_seconds()
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    channel.write(
        json.dumps(
            {
                "side": side,
                "jobs": len(jobs),
                "started_at": started,
                "finished_at": finished,
                "cpu_user": user1 - user0,
                "cpu_system": sys1 - sys0,
                "rss_before": rss_before,
                "maxrss_before": maxrss_before,
                "peak_rss": maxrss_after,
                "rss_after": process.memory_info().rss,
                "threads_after": threading.active_count(),
                "events": events,
            }
        )
        + "\n"
    )
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
