"""
The simulator in its own process, so no client under test is charged for serving it.

It is the provider's ``SimulatorServer`` (what ``python -m airflow_provider_slipstream.simulator``
runs), plus a benchmark control channel on stdin/stdout (JSON lines), because the HTTP control
API (``/_sim/...``) can neither create jobs with a given duration nor return per-job request
logs, and its detailed log is capped at 10,000 records. Commands:

- ``create_jobs {durations, queued_seconds, filename}``: jobs created directly in the state (no
  HTTP, nothing to measure), each completing ``duration`` seconds after creation; answers their
  ids and completion times on ``time.monotonic()`` (CLOCK_MONOTONIC, shared by all processes).
- ``polls {paths}``: the monotonic arrival time of every request to each path.
- ``job_times {job_ids}``: creation (wall clock) and duration of jobs created by any route.
- ``configure {...}``, ``stats``, ``rusage``, ``stop``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import resource
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_slipstream.simulator import SimulatorServer, SimulatorState

if TYPE_CHECKING:
    from airflow_provider_slipstream.simulator.state import RequestRecord


class BenchState(SimulatorState):
    """The simulator state, also keeping the arrival time of every request (unbounded, by path)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._times_lock = threading.Lock()
        self.arrivals: dict[str, list[float]] = collections.defaultdict(list)

    def record(self, record: RequestRecord) -> None:
        now = time.monotonic()
        super().record(record)
        with self._times_lock:
            self.arrivals[f"{record.method} {record.path}"].append(now)


def create_jobs(state: BenchState, durations: list[float], queued_seconds: float, filename: str) -> dict[str, Any]:
    saved = state.config()
    sha = hashlib.sha256(filename.encode()).hexdigest()
    scenario = "internal"
    ids = []
    try:
        for duration in durations:
            queued = min(queued_seconds, duration)
            state.configure(queued_seconds=queued, processing_seconds=duration - queued)
            ids.append(state.create_job(filename, sha, scenario)["job_id"])
    finally:
        state.configure(queued_seconds=saved["queued_seconds"], processing_seconds=saved["processing_seconds"])
    jobs = state.jobs
    return {
        "jobs": [
            {
                "job_id": job_id,
                "created_at": jobs[job_id].started,
                "done_at": jobs[job_id].started + jobs[job_id].queued_seconds + jobs[job_id].processing_seconds,
            }
            for job_id in ids
        ]
    }


def handle(state: BenchState, request: dict[str, Any]) -> dict[str, Any]:
    cmd = request.pop("cmd")
    if cmd == "create_jobs":
        return create_jobs(state, request["durations"], request.get("queued_seconds", 0.0), request["filename"])
    if cmd == "polls":
        with state._times_lock:
            return {"arrivals": {path: list(state.arrivals.get(path, ())) for path in request["paths"]}}
    if cmd == "job_times":
        jobs = state.jobs
        return {
            "jobs": {
                job_id: {
                    "created_wall": jobs[job_id].created_at.timestamp(),
                    "duration": jobs[job_id].queued_seconds + jobs[job_id].processing_seconds,
                }
                for job_id in request["job_ids"]
                if job_id in jobs
            }
        }
    if cmd == "configure":
        state.configure(**request)
        return {"config": state.config()}
    if cmd == "stats":
        return state.stats()
    if cmd == "rusage":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"cpu_seconds": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss}
    if cmd == "stop":
        return {"stopped": True}
    raise ValueError(f"unknown command {cmd!r}")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    state = BenchState()
    with SimulatorServer(state) as server:
        print(json.dumps({"url": server.url, "s3_url": server.s3_url, "api_key": state.api_key}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            request = json.loads(line)
            try:
                answer = handle(state, request)
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
            if answer.get("stopped"):
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
