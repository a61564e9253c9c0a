"""
A 100 MB upload streams: the uploading process does not grow by anything like the file size.

The simulator runs in this (the test) process; the hook runs alone in a subprocess, so the
measured memory is the hook's and nothing else's. The subprocess imports and exercises
everything once with a small clip first, then samples its RSS (psutil, every 5 ms) and its
peak RSS (``ru_maxrss``) around the big upload. ``pytest -s`` prints the numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_slipstream.samples import sample_videos

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_slipstream.simulator import SimulatorServer

MIB = 1024 * 1024
SIZE = 100 * MIB  # exactly the API's limit for a direct upload
MAX_GROWTH = 30 * MIB
SUBMIT_ROUTE = "POST /api/v4/video-recognition/"
UPLOAD_URL_ROUTE = "POST /api/v4/video-recognition/upload-url/"
PUT_ROUTE = "PUT /sim-bucket/temp/{storage_key}"

SCRIPT = r"""
import gc, json, resource, sys, threading, time

import psutil

from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook

path, method, warmup = sys.argv[1:4]
hook = SlipstreamHook()
hook.submit_video(warmup, method=method)  # imports, session, first-use allocations

proc = psutil.Process()
peak = [0]
done = threading.Event()

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        done.wait(0.005)

sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
gc.collect()
time.sleep(0.05)  # let the sampler take its first readings
baseline = proc.memory_info().rss
maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.monotonic()
job = hook.submit_video(path, method=method)
seconds = time.monotonic() - started
done.set()
sampler.join()
peak[0] = max(peak[0], proc.memory_info().rss)
maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT " + json.dumps({
    "job_id": job.job_id,
    "baseline": baseline,
    "peak": peak[0],
    "maxrss_before": maxrss_before,
    "maxrss_after": maxrss_after,
    "seconds": seconds,
}))
"""


@pytest.fixture(scope="module")
def big_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A sparse 100 MiB file of zeros named for the `internal` scenario, and its sha256."""
    path = tmp_path_factory.mktemp("big") / "internal_100mb.mp4"
    with path.open("wb") as f:
        f.truncate(SIZE)
    digest, zeros = hashlib.sha256(), bytes(MIB)
    for _ in range(SIZE // MIB):
        digest.update(zeros)
    return path, digest.hexdigest()


def upload_in_subprocess(sim: SimulatorServer, video: Path, method: str) -> dict[str, Any]:
    conn = {
        "conn_type": "slipstream",
        "host": sim.url,
        "password": sim.state.api_key,
        "extra": {"timeout": 120, "max_retries": 0},
    }
    env = {**os.environ, "AIRFLOW_CONN_SLIPSTREAM_DEFAULT": json.dumps(conn)}
    warmup = str(sample_videos()["internal"])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(video), method, warmup],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, result.stdout[-3000:]
    measured: dict[str, Any] = json.loads(lines[0].removeprefix("RESULT "))
    return measured


def check_growth(method: str, m: dict[str, Any]) -> None:
    sampled = m["peak"] - m["baseline"]
    maxrss = m["maxrss_after"] - m["maxrss_before"]
    report = (
        f"{method}: 100 MiB in {m['seconds']:.2f} s; RSS baseline {m['baseline'] / MIB:.1f} MiB, "
        f"sampled peak growth {sampled / MIB:.1f} MiB, ru_maxrss growth {maxrss / MIB:.1f} MiB "
        f"(limit {MAX_GROWTH / MIB:.0f} MiB)"
    )
    print("\n" + report)
    assert sampled < MAX_GROWTH, report
    assert maxrss < MAX_GROWTH, report


def test_direct_upload_of_100_mb_streams(slipstream_simulator: SimulatorServer, big_video: tuple[Path, str]) -> None:
    video, sha256 = big_video
    assert video.stat().st_size == SIZE

    measured = upload_in_subprocess(slipstream_simulator, video, "direct")

    job = slipstream_simulator.state.jobs[measured["job_id"]]
    assert job.filename == "internal_100mb.mp4"
    assert job.sha256 == sha256  # the server received every byte
    assert job.scenario == "internal"
    assert slipstream_simulator.state.stats()["by_route"] == {SUBMIT_ROUTE: 2}  # warm-up + big file, no PUT
    check_growth("direct", measured)


def test_presigned_upload_of_100_mb_streams(slipstream_simulator: SimulatorServer, big_video: tuple[Path, str]) -> None:
    video, sha256 = big_video

    measured = upload_in_subprocess(slipstream_simulator, video, "presigned")

    job = slipstream_simulator.state.jobs[measured["job_id"]]
    assert job.filename.endswith("_internal_100mb.mp4")
    (upload,) = [u for u in slipstream_simulator.state.uploads.values() if u.storage_key.endswith(job.filename)]
    assert upload.state == "uploaded"
    assert upload.size == SIZE
    assert upload.sha256 == sha256
    assert slipstream_simulator.state.stats()["by_route"] == {UPLOAD_URL_ROUTE: 2, PUT_ROUTE: 2, SUBMIT_ROUTE: 2}
    check_growth("presigned", measured)
