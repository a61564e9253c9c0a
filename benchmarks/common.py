"""Shared pieces of the benchmark suite: result rows, the table, machine info, child processes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable
MIB = 1024 * 1024


@dataclass
class Row:
    """One line of the results table: a figure for us and (optionally) for the peer."""

    section: str
    figure: str
    ours: float | str | None
    peer: float | str | None = None
    peer_name: str = ""
    target: str = ""
    met: bool | None = None
    ratio: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and isinstance(self.ours, int | float) and isinstance(self.peer, int | float):
            self.ratio = self.ours / self.peer if self.peer else None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def render_table(rows: list[Row]) -> str:
    """One plain-text table, grouped by section."""
    header = ("figure", "ours", "peer", "ratio ours/peer", "target", "met?")
    lines: list[tuple[str, ...]] = []
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines.append((f"[{section}]", "", "", "", "", ""))
        peer = fmt(row.peer)
        if row.peer_name and row.peer is not None:
            peer = f"{peer} ({row.peer_name})"
        ratio = "-" if row.ratio is None else f"{row.ratio:.1f}x" if row.ratio >= 10 else f"{row.ratio:.3f}x"
        met = "-" if row.met is None else ("MET" if row.met else "MISSED")
        lines.append((f"  {row.figure}", fmt(row.ours), peer, ratio, row.target or "-", met))
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    out = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    notes = [f"  * {row.figure}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        memory = psutil.virtual_memory().total
    except ImportError:
        physical, memory = None, None
    curl = shutil.which("curl")
    curl_version = None
    if curl:
        proc = subprocess.run([curl, "--version"], capture_output=True, text=True, check=False)
        curl_version = proc.stdout.split("\n", 1)[0].strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model,
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": physical,
        "memory_bytes": memory,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "versions": {
            name: _version(name)
            for name in (
                "apache-airflow",
                "apache-airflow-core",
                "apache-airflow-task-sdk",
                "airflow-provider-slipstream",
                "apache-airflow-providers-http",
                "httpx",
                "aiohttp",
                "requests",
                "uvicorn",
                "fastapi",
            )
        },
        "curl": curl_version,
    }


class Children:
    """Every process the suite starts, so each can be stopped by its own pid."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(args, **kwargs)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
        """Ask one child to stop (SIGTERM), then kill it by pid if it does not."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self._procs):
            self.stop(proc)


CHILDREN = Children()


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of child processes: the venv's Python, quiet Airflow, a private AIRFLOW_HOME."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONWARNINGS": "ignore",
        }
    )
    env.update(extra)
    return env


def read_json_line(stream: IO[str], what: str, timeout: float | None = None) -> dict[str, Any]:
    """The next line of a child's stdout that is a JSON object (anything else is skipped)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        line = stream.readline()
        if not line:
            raise RuntimeError(f"{what} ended without answering (see its log).")
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
        if deadline is not None and time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer in time.")


def write_json_line(stream: IO[str], payload: dict[str, Any]) -> None:
    stream.write(json.dumps(payload) + "\n")
    stream.flush()


class SimulatorProcess:
    """The simulator in its own process (``sim_process.py``), driven over stdin/stdout JSON lines."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.log_path = workdir / "simulator.log"
        self._log = self.log_path.open("w")
        self.proc = CHILDREN.popen(
            [PYTHON, str(BENCH_DIR / "sim_process.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            cwd=str(workdir),
        )
        hello = read_json_line(self.proc.stdout, "the simulator")  # type: ignore[arg-type]
        self.url: str = hello["url"]
        self.s3_url: str = hello["s3_url"]
        self.api_key: str = hello["api_key"]
        self.pid: int = self.proc.pid

    def call(self, cmd: str, **kwargs: Any) -> dict[str, Any]:
        write_json_line(self.proc.stdin, {"cmd": cmd, **kwargs})  # type: ignore[arg-type]
        answer = read_json_line(self.proc.stdout, "the simulator")  # type: ignore[arg-type]
        if "error" in answer:
            raise RuntimeError(f"simulator {cmd}: {answer['error']}")
        return answer

    def conn_json(self, **extra: Any) -> str:
        """``AIRFLOW_CONN_SLIPSTREAM_DEFAULT`` (JSON form) for this simulator."""
        return json.dumps({"conn_type": "slipstream", "host": self.url, "password": self.api_key, "extra": extra})

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("stop")
                self.proc.wait(timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError):
            pass
        finally:
            CHILDREN.stop(self.proc)
            self._log.close()


def result_payload(rows: list[Row], info: dict[str, Any], details: dict[str, Any], config: dict[str, Any]) -> str:
    return json.dumps(
        {"machine": info, "config": config, "rows": [asdict(row) for row in rows], "details": details},
        indent=2,
        default=str,
    )
