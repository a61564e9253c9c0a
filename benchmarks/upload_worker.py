"""
One upload by one Python client in a fresh process: ``python upload_worker.py`` with a JSON job on stdin.

Clients: ``ours`` (``SlipstreamHook.submit_file`` / ``upload_to_url``) and ``requests`` written the
naive way (``files={"file": open(...)}`` for direct, ``data=f.read()`` for presigned). A small
warm-up upload first loads every lazily imported module; then the measured upload runs while a
thread samples the RSS. Answers seconds, bytes and RSS growth (peak during the upload minus the
RSS just before it) as JSON on stdout.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

SUBMIT_PATH = "/api/v4/video-recognition/"


class PeakSampler(threading.Thread):
    """Samples this process's RSS every few milliseconds until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop_event.wait(0.002)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, self.process.memory_info().rss)


def ours(job: dict[str, Any], path: Path, target: dict[str, Any]) -> None:
    from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
    from airflow_provider_slipstream.models import UploadTarget

    hook = SlipstreamHook()
    if job["route"] == "direct":
        hook.submit_file(path)
    else:
        hook.upload_to_url(UploadTarget.from_api(target), path)


def naive_requests(job: dict[str, Any], path: Path, target: dict[str, Any]) -> None:
    import requests

    if job["route"] == "direct":
        headers = {"Authorization": f"Bearer {job['api_key']}"}
        with open(path, "rb") as handle:
            response = requests.post(job["url"] + SUBMIT_PATH, files={"file": handle}, headers=headers, timeout=600)
    else:
        with open(path, "rb") as handle:
            response = requests.put(
                target["upload_url"], data=handle.read(), headers={"Content-Type": target["content_type"]}, timeout=600
            )
    if response.status_code >= 300:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")


def main() -> int:
    job = json.loads(sys.stdin.read())
    upload = ours if job["client"] == "ours" else naive_requests
    # Warm-up: a small file over the same route, so lazy imports and first-use setup are not measured.
    upload(job, Path(job["warmup_path"]), job.get("warmup_target") or {})
    process = psutil.Process()
    rss_before = process.memory_info().rss
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    upload(job, Path(job["path"]), job.get("target") or {})
    seconds = time.perf_counter() - started
    sampled_peak = sampler.stop()
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # ru_maxrss is exact but only moves once the upload beats the process's earlier high-water mark.
    peak = maxrss_after if maxrss_after > maxrss_before else sampled_peak
    print(
        json.dumps(
            {
                "seconds": seconds,
                "bytes": os.path.getsize(job["path"]),
                "rss_before": rss_before,
                "peak_rss": max(peak, sampled_peak),
                "rss_growth": max(0, max(peak, sampled_peak) - rss_before),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
