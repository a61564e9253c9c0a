"""
Section 1 — waiting at scale: N staggered jobs waited on in one asyncio loop.

Ours: ``SlipstreamJobTrigger``. Peer: ``apache-airflow-providers-http``'s ``HttpEventTrigger``
with a ``response_check_path`` that passes on ``status == "completed"`` — what a user could
wire up without this provider. Same endpoint, poll interval and bearer header. Each side runs
in its own process (``waiting_worker.py``) so CPU seconds and peak RSS are per side; the
simulator has a third process. Jobs are created directly in the simulator's state just before
a side starts, so creating them costs the side nothing.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import threading
from typing import TYPE_CHECKING, Any

from common import (
    BENCH_DIR,
    CHILDREN,
    MIB,
    PYTHON,
    Row,
    SimulatorProcess,
    median,
    percentile,
    read_json_line,
    write_json_line,
)

if TYPE_CHECKING:
    from pathlib import Path

SECTION = "1. Waiting at scale"
JOB_PATH = "GET /api/v4/video-recognition/{job_id}/"
QUEUED_SECONDS = 1.0
PEER_NAME = "HttpEventTrigger"
WARNING = re.compile(r"\[(warning|error|critical)\s*\]|\b(WARNING|ERROR|CRITICAL)\b")


def durations_for(jobs: int, shortest: float, longest: float) -> list[float]:
    """Evenly staggered job durations, in a fixed shuffled order."""
    if jobs == 1:
        return [shortest]
    step = (longest - shortest) / (jobs - 1)
    values = [round(shortest + i * step, 3) for i in range(jobs)]
    random.Random(20261128).shuffle(values)
    return values


def run_side(
    side: str,
    sim: SimulatorProcess,
    durations: list[float],
    poll_interval: float,
    workdir: Path,
    env: dict[str, str],
    index: int,
) -> dict[str, Any]:
    log_path = workdir / f"waiting_{side}_{index + 1}.log"
    with log_path.open("w") as log:
        proc = CHILDREN.popen(
            [PYTHON, str(BENCH_DIR / "waiting_worker.py"), side],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            cwd=str(BENCH_DIR),
        )
        # A wedged side must not hang the suite: stop it (by pid) well after every job is due.
        watchdog = threading.Timer(max(durations) + 10 * poll_interval + 180, CHILDREN.stop, (proc,))
        watchdog.start()
        try:
            ready = read_json_line(proc.stdout, f"the {side} waiting worker")  # type: ignore[arg-type]
            created = sim.call("create_jobs", durations=durations, queued_seconds=QUEUED_SECONDS, filename="w.mp4")
            request = {"jobs": created["jobs"], "poll_interval": poll_interval, "api_key": sim.api_key}
            write_json_line(proc.stdin, request)  # type: ignore[arg-type]
            result = read_json_line(proc.stdout, f"the {side} waiting worker")  # type: ignore[arg-type]
            proc.wait(timeout=60)
        finally:
            watchdog.cancel()
            CHILDREN.stop(proc)
    result["ready_rss"] = ready["rss"]
    result["log"] = str(log_path)
    # Retries and failed polls show up as warnings (or errors) in the side's log.
    with log_path.open(errors="replace") as lines:
        result["warnings_logged"] = sum(1 for line in lines if WARNING.search(line))
    paths = [JOB_PATH.format(job_id=job["job_id"]) for job in created["jobs"]]
    arrivals = sim.call("polls", paths=paths)["arrivals"]
    result["per_job"] = per_job(created["jobs"], result["events"], arrivals, poll_interval, result["started_at"])
    del result["events"]
    return result


def per_job(
    jobs: list[dict[str, Any]],
    events: dict[str, Any],
    arrivals: dict[str, list[float]],
    poll_interval: float,
    started_at: float,
) -> list[dict[str, Any]]:
    out = []
    for job in jobs:
        job_id = job["job_id"]
        polls = sorted(arrivals.get(JOB_PATH.format(job_id=job_id), []))
        event = events.get(job_id, {})
        duration = job["done_at"] - job["created_at"]
        seen = next((t for t in polls if t >= job["done_at"]), None)
        emitted = event.get("emitted_at")
        out.append(
            {
                "job_id": job_id,
                "duration": duration,
                "api_calls": len(polls),
                "call_bound": math.ceil(duration / poll_interval) + 1,
                "status": event.get("status"),
                # completion on the server -> event emitted by the trigger
                "latency": None if emitted is None else emitted - job["done_at"],
                # completion -> the poll that saw it; that poll -> the event
                "poll_lag": None if seen is None else seen - job["done_at"],
                "client_lag": None if seen is None or emitted is None else emitted - seen,
                # the side's start (building its triggers included) -> the job's first poll
                "first_poll_delay": polls[0] - started_at if polls else None,
            }
        )
    return out


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's figures over all its rounds: per-job figures pooled, per-process ones by median."""
    jobs = [job for result in rounds for job in result["per_job"]]
    latencies = [j["latency"] for j in jobs if j["latency"] is not None]
    cpu = sum(result["cpu_user"] + result["cpu_system"] for result in rounds)
    calls = sum(j["api_calls"] for j in jobs)
    first_polls = [j["first_poll_delay"] for j in jobs if j["first_poll_delay"] is not None] or [0.0]
    client_lags = [j["client_lag"] for j in jobs if j["client_lag"] is not None] or [0.0]
    return {
        "rounds": len(rounds),
        "jobs": len(jobs),
        "succeeded": sum(1 for j in jobs if j["status"] == "success"),
        "cpu_seconds": cpu,
        "cpu_seconds_per_round": [r["cpu_user"] + r["cpu_system"] for r in rounds],
        "cpu_ms_per_job": 1000 * cpu / len(jobs),
        "cpu_ms_per_call": 1000 * cpu / max(1, calls),
        "peak_rss_mib": median([r["peak_rss"] / MIB for r in rounds]),
        "peak_rss_mib_per_round": [r["peak_rss"] / MIB for r in rounds],
        "rss_before_mib": median([r["rss_before"] / MIB for r in rounds]),
        "rss_growth_mib": median([(r["peak_rss"] - r["rss_before"]) / MIB for r in rounds]),
        "api_calls_per_job": calls / len(jobs),
        "jobs_over_call_bound": sum(1 for j in jobs if j["api_calls"] > j["call_bound"]),
        "max_calls_over_bound": max(j["api_calls"] - j["call_bound"] for j in jobs),
        "latency_p50": percentile(latencies, 50) if latencies else None,
        "latency_p95": percentile(latencies, 95) if latencies else None,
        "latency_p95_per_round": [
            percentile([j["latency"] for j in r["per_job"] if j["latency"] is not None] or [0.0], 95) for r in rounds
        ],
        "latency_max": max(latencies) if latencies else None,
        "poll_lag_median": median([j["poll_lag"] for j in jobs if j["poll_lag"] is not None] or [0.0]),
        "client_lag_p95": percentile(client_lags, 95),
        "first_poll_delay_p50": percentile(first_polls, 50),
        "first_poll_delay_max": max(first_polls),
        "wall_seconds": median([r["finished_at"] - r["started_at"] for r in rounds]),
        "threads_after": max(r["threads_after"] for r in rounds),
        "warnings_logged": sum(r["warnings_logged"] for r in rounds),
    }


def run(
    sim: SimulatorProcess,
    workdir: Path,
    env: dict[str, str],
    *,
    jobs: int,
    poll_interval: float,
    shortest: float,
    longest: float,
    rounds: int,
) -> tuple[list[Row], dict[str, Any]]:
    durations = durations_for(jobs, shortest, longest)
    env = {
        **env,
        "AIRFLOW_CONN_SLIPSTREAM_DEFAULT": sim.conn_json(),
        "AIRFLOW_CONN_SLIPSTREAM_HTTP": json.dumps({"conn_type": "http", "host": sim.url}),
    }
    results: dict[str, list[dict[str, Any]]] = {"ours": [], "peer": []}
    for index in range(rounds):
        # Alternate which side goes first, so neither always meets a fresh (or a tired) simulator.
        for side in ("ours", "peer") if index % 2 == 0 else ("peer", "ours"):
            print(f"  waiting: round {index + 1}/{rounds}, {side}: {jobs} jobs of {shortest:g}-{longest:g} s ...")
            results[side].append(run_side(side, sim, durations, poll_interval, workdir, env, index))
    ours, peer = summarize(results["ours"]), summarize(results["peer"])
    latency_target = poll_interval + 0.5
    n = f"{jobs} jobs x {rounds} rounds" if rounds > 1 else f"{jobs} jobs"
    rows = [
        Row(
            SECTION,
            f"CPU per job [ms] ({n})",
            ours["cpu_ms_per_job"],
            peer["cpu_ms_per_job"],
            PEER_NAME,
            "<= 0.3x peer",
            met=ours["cpu_ms_per_job"] <= 0.3 * peer["cpu_ms_per_job"],
            note=(
                f"CPU seconds per round: ours {', '.join(f'{c:.2f}' for c in ours['cpu_seconds_per_round'])}; "
                f"peer {', '.join(f'{c:.2f}' for c in peer['cpu_seconds_per_round'])}"
            ),
        ),
        Row(SECTION, "CPU per API call [ms]", ours["cpu_ms_per_call"], peer["cpu_ms_per_call"], PEER_NAME),
        Row(SECTION, "peak RSS [MiB]", ours["peak_rss_mib"], peer["peak_rss_mib"], PEER_NAME),
        Row(SECTION, "RSS before waiting (imports) [MiB]", ours["rss_before_mib"], peer["rss_before_mib"], PEER_NAME),
        Row(
            SECTION,
            "RSS growth while waiting [MiB]",
            ours["rss_growth_mib"],
            peer["rss_growth_mib"],
            PEER_NAME,
            "<= 0.5x peer",
            met=ours["rss_growth_mib"] <= 0.5 * peer["rss_growth_mib"],
        ),
        Row(
            SECTION,
            "API calls per job (mean)",
            ours["api_calls_per_job"],
            peer["api_calls_per_job"],
            PEER_NAME,
            f"every job <= ceil(d/{poll_interval:g}s)+1",
            met=ours["jobs_over_call_bound"] == 0,
            note=(
                f"jobs over the bound: ours {ours['jobs_over_call_bound']}/{ours['jobs']}, "
                f"peer {peer['jobs_over_call_bound']}/{peer['jobs']}"
            ),
        ),
        Row(SECTION, "detection latency p50 [s]", ours["latency_p50"], peer["latency_p50"], PEER_NAME),
        Row(
            SECTION,
            "side start -> first poll received, max [s]",
            ours["first_poll_delay_max"],
            peer["first_poll_delay_max"],
            PEER_NAME,
            note=(
                "side start -> the simulator receiving a job's first poll (building the triggers, connecting and "
                "the server's queue included); "
                f"p50 ours {ours['first_poll_delay_p50']:.2f} s, peer {peer['first_poll_delay_p50']:.2f} s"
            ),
        ),
        Row(
            SECTION,
            "detection latency p95 [s]",
            ours["latency_p95"],
            peer["latency_p95"],
            PEER_NAME,
            f"<= {latency_target:g} s",
            met=ours["latency_p95"] is not None and ours["latency_p95"] <= latency_target,
            note=(
                f"max ours {ours['latency_max']:.2f} s; p95 from the completing poll to the event: "
                f"ours {ours['client_lag_p95']:.2f} s, peer {peer['client_lag_p95']:.2f} s"
            ),
        ),
        Row(
            SECTION,
            "events emitted (success)",
            ours["succeeded"],
            peer["succeeded"],
            PEER_NAME,
            f"= {jobs * rounds}",
            met=ours["succeeded"] == jobs * rounds,
        ),
        Row(
            SECTION,
            "warnings logged (retries, failed polls)",
            ours["warnings_logged"],
            peer["warnings_logged"],
            PEER_NAME,
        ),
    ]
    details = {
        "durations": {"shortest": shortest, "longest": longest, "queued_seconds": QUEUED_SECONDS},
        "poll_interval": poll_interval,
        "rounds": rounds,
        "ours": ours,
        "peer": peer,
    }
    return rows, details
