"""`python -m airflow_provider_slipstream.simulator`: serve until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from airflow_provider_slipstream.simulator.server import SimulatorServer
from airflow_provider_slipstream.simulator.state import SimulatorState


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_slipstream.simulator",
        description="Run a local Slipstream AudioVerify API simulator on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8765, help="API port; 0 picks a free one (default 8765)")
    parser.add_argument("--s3-port", type=int, default=0, help="port of the presigned-upload host (default: free)")
    parser.add_argument("--api-key", default="sim-partner-key", help="the accepted partner API key")
    parser.add_argument("--queued-seconds", type=float, default=0.5)
    parser.add_argument("--processing-seconds", type=float, default=1.5)
    parser.add_argument("--job-ttl-seconds", type=float, default=86400.0)
    parser.add_argument("--port-file", type=Path, help="write the API port to this file once listening")
    parser.add_argument("--access-log", action="store_true", help="log each request (never headers or keys)")
    return parser


def _write_port_file(path: Path, port: int) -> None:
    # Write then rename, so a script polling for the file never reads it half-written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        state = SimulatorState(
            api_key=args.api_key,
            queued_seconds=args.queued_seconds,
            processing_seconds=args.processing_seconds,
            job_ttl_seconds=args.job_ttl_seconds,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.access_log:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())

    with SimulatorServer(state, port=args.port, s3_port=args.s3_port, access_log=args.access_log) as server:
        print(f"Slipstream simulator listening on {server.url}", flush=True)
        if args.port_file is not None:
            _write_port_file(args.port_file, int(server.url.rpartition(":")[2]))
        # A timeout keeps the wait responsive to the signal handler on every platform.
        while not stopping.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
