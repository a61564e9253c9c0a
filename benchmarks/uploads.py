"""
Section 2 — uploads of a 100 MB file, direct (multipart POST) and presigned (PUT), against the simulator.

Ours (``SlipstreamHook``) side by side with ``curl`` (``-F file=@...`` / ``-T`` with the pinned
Content-Type) and naive ``requests`` (``files={"file": open(...)}`` / ``data=f.read()``). Each
upload runs in a fresh process; each presigned upload gets a fresh URL, made before the clock
starts. Figures: peak RSS growth during the upload and throughput (file bytes / upload seconds),
the median (throughput) and the maximum (RSS growth) over the repetitions. Throughput ratios are
the median of per-repetition ratios, each pair of uploads run back to back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from typing import TYPE_CHECKING, Any

import psutil
import requests
from common import BENCH_DIR, CHILDREN, MIB, PYTHON, Row, median

from airflow_provider_slipstream.samples import sample_videos

if TYPE_CHECKING:
    from pathlib import Path

    from common import SimulatorProcess

SECTION = "2. Uploads"
SUBMIT_PATH = "/api/v4/video-recognition/"
UPLOAD_URL_PATH = "/api/v4/video-recognition/upload-url/"
CLIENTS = ("ours", "curl", "requests")
ROUTES = ("direct", "presigned")
MB = 1_000_000


def make_file(path: Path, size: int) -> None:
    """Incompressible bytes, written in 1 MiB chunks."""
    with path.open("wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(MIB, left))
            handle.write(chunk)
            left -= len(chunk)


def presigned_target(sim: SimulatorProcess, filename: str) -> dict[str, Any]:
    response = requests.post(
        sim.url + UPLOAD_URL_PATH,
        json={"filename": filename},
        headers={"Authorization": f"Bearer {sim.api_key}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def run_python_client(
    client: str, route: str, sim: SimulatorProcess, path: Path, env: dict[str, str], workdir: Path
) -> dict[str, Any]:
    warmup = sample_videos()["internal"]
    job: dict[str, Any] = {
        "client": client,
        "route": route,
        "path": str(path),
        "warmup_path": str(warmup),
        "url": sim.url,
        "api_key": sim.api_key,
    }
    if route == "presigned":
        job["warmup_target"] = presigned_target(sim, warmup.name)
        job["target"] = presigned_target(sim, path.name)
    log = workdir / f"upload_{client}_{route}.log"
    with log.open("a") as stderr:
        proc = CHILDREN.popen(
            [PYTHON, str(BENCH_DIR / "upload_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=str(BENCH_DIR),
        )
        try:
            out, _ = proc.communicate(json.dumps(job), timeout=600)
        finally:
            CHILDREN.stop(proc)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{client} {route} upload failed (exit {proc.returncode}); see {log}")
    return json.loads(lines[-1])


def run_curl(route: str, sim: SimulatorProcess, path: Path, workdir: Path) -> dict[str, Any]:
    curl = shutil.which("curl")
    assert curl is not None
    common_args = [curl, "-sS", "-o", os.devnull, "-w", "%{http_code} %{time_total}"]
    if route == "direct":
        args = [
            *common_args,
            "-H",
            f"Authorization: Bearer {sim.api_key}",
            "-F",
            f"file=@{path};type=video/mp4",
            sim.url + SUBMIT_PATH,
        ]
    else:
        target = presigned_target(sim, path.name)
        args = [*common_args, "-T", str(path), "-H", f"Content-Type: {target['content_type']}", target["upload_url"]]
    out_path = workdir / "curl.out"
    with out_path.open("w") as out, (workdir / "curl.err").open("a") as err:
        started = time.perf_counter()
        proc = CHILDREN.popen(args, stdout=out, stderr=err)
        # Sampled, not ru_maxrss: a child's ru_maxrss can count the parent's pages it had before exec.
        peak = 0
        try:
            process = psutil.Process(proc.pid)
            while proc.poll() is None:
                if process.name() == "curl":
                    peak = max(peak, process.memory_info().rss)
                time.sleep(0.002)
        except psutil.NoSuchProcess:
            pass
        proc.wait()
        wall = time.perf_counter() - started
        CHILDREN.stop(proc)
    code, time_total = out_path.read_text().split()
    if proc.returncode != 0 or not code.startswith("2"):
        raise RuntimeError(f"curl {route} upload failed: exit {proc.returncode}, HTTP {code}")
    return {"seconds": float(time_total), "wall_seconds": wall, "bytes": path.stat().st_size, "peak_rss": peak}


def run(
    sim: SimulatorProcess, workdir: Path, env: dict[str, str], *, size_mb: float, repeats: int
) -> tuple[list[Row], dict[str, Any]]:
    path = workdir / "bench_upload.mp4"
    size = int(size_mb * MIB)
    make_file(path, size)
    env = {**env, "AIRFLOW_CONN_SLIPSTREAM_DEFAULT": sim.conn_json()}
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {(c, r): [] for c in CLIENTS for r in ROUTES}
    for rep in range(repeats):
        # Rotate the order so no client always goes first (a cold cache) or last.
        order = CLIENTS[rep % len(CLIENTS) :] + CLIENTS[: rep % len(CLIENTS)]
        for route in ROUTES:
            for client in order:
                print(f"  uploads: {route} via {client} ({rep + 1}/{repeats}) ...", flush=True)
                if client == "curl":
                    sample = run_curl(route, sim, path, workdir)
                else:
                    sample = run_python_client(client, route, sim, path, env, workdir)
                sample["throughput_mb_s"] = sample["bytes"] / sample["seconds"] / MB
                samples[(client, route)].append(sample)
    path.unlink()

    def throughput(client: str, route: str) -> float:
        return median([s["throughput_mb_s"] for s in samples[(client, route)]])

    def paired_ratio(peer: str, route: str) -> float:
        """Median over repetitions of ours / peer, each pair run back to back: robust to a busy machine."""
        pairs = zip(samples[("ours", route)], samples[(peer, route)], strict=True)
        return median([a["throughput_mb_s"] / b["throughput_mb_s"] for a, b in pairs])

    def growth(client: str, route: str) -> float:
        return max(s["rss_growth"] for s in samples[(client, route)]) / MIB

    def curl_peak(route: str) -> float:
        return max(s["peak_rss"] for s in samples[("curl", route)]) / MIB

    rows = []
    naive = {"direct": "requests files=", "presigned": "requests data=f.read()"}
    for route in ROUTES:
        ours_growth = growth("ours", route)
        rows.append(
            Row(
                SECTION,
                f"{route}: RSS growth [MiB]",
                ours_growth,
                growth("requests", route),
                naive[route],
                "<= 16 MiB",
                met=ours_growth <= 16,
                note=f"curl's whole peak RSS for the same upload: {curl_peak(route):.1f} MiB",
            )
        )
        ratio = paired_ratio("curl", route)
        rows.append(
            Row(
                SECTION,
                f"{route}: throughput [MB/s]",
                throughput("ours", route),
                throughput("curl", route),
                "curl -F" if route == "direct" else "curl -T",
                ">= 0.8x curl",
                met=ratio >= 0.8,
                ratio=ratio,
                note=f"values: medians of {repeats}; ratio: median of the {repeats} back-to-back pairs",
            )
        )
        rows.append(
            Row(
                SECTION,
                f"{route}: throughput [MB/s] vs requests",
                throughput("ours", route),
                throughput("requests", route),
                naive[route],
                ratio=paired_ratio("requests", route),
            )
        )
    details = {
        "file_bytes": size,
        "repeats": repeats,
        "samples": {f"{client} {route}": values for (client, route), values in samples.items()},
    }
    return rows, details
