"""
The benchmark suite of airflow-provider-slipstream: ``python benchmarks/run.py`` (``make bench``).

Runs every section against the simulator on loopback (in its own process), prints one table
(figure, ours, peer, ratio ours/peer, target, met?) and writes ``benchmarks/results.json`` with
the machine it ran on. Targets are reported, never enforced: a missed target shows as MISSED
with the measured ratio, and the exit status stays 0 unless a benchmark itself failed.

Sections: 1 waiting at scale (triggers), 2 uploads, 3 import / DAG-parse cost, 4 sensor modes,
5 a folder of videos on a deployment (mapped vs batch). Needs ``apache-airflow-providers-http`` (the
peer of sections 1 and 3), ``curl`` (section 2) and PostgreSQL's server binaries (section 5).
A run of some sections keeps the other sections' rows of the results file it replaces.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from common import BENCH_DIR, CHILDREN, Row, SimulatorProcess, bench_env, machine_info, render_table, result_payload

SECTIONS = ("waiting", "uploads", "imports", "modes", "deployment")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python benchmarks/run.py")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs waited on at once (section 1)")
    parser.add_argument("--poll-interval", type=float, default=3.0, help="seconds between polls (section 1)")
    parser.add_argument("--shortest", type=float, default=4.0, help="shortest job, seconds (section 1)")
    parser.add_argument("--longest", type=float, default=30.0, help="longest job, seconds (section 1)")
    parser.add_argument("--waiting-rounds", type=int, default=2, help="rounds per side, alternating (section 1)")
    parser.add_argument("--upload-mib", type=float, default=100.0, help="size of the uploaded file (section 2)")
    parser.add_argument("--upload-repeats", type=int, default=5, help="uploads per client and route (section 2)")
    parser.add_argument("--import-runs", type=int, default=21, help="fresh interpreters per side (section 3)")
    parser.add_argument("--job-seconds", type=float, default=30.0, help="the job's duration (section 4)")
    parser.add_argument("--clips", type=int, default=1000, help="clips of the side-by-side runs (section 5)")
    parser.add_argument("--max-clips", type=int, default=10000, help="clips of the large batch run (section 5)")
    parser.add_argument("--clip-job-seconds", type=float, default=30.0, help="each clip's job, seconds (section 5)")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results.json")
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and Airflow homes for inspection")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if min(args.import_runs, args.jobs, args.upload_repeats, args.waiting_rounds) < 1:
        parser.error("--jobs, --waiting-rounds, --upload-repeats and --import-runs must be >= 1")
    return args


def missing_requirements(sections: list[str]) -> list[str]:
    missing = []
    if {"waiting", "imports"} & set(sections) and importlib.util.find_spec("airflow.providers.http") is None:
        missing.append("apache-airflow-providers-http (pip install apache-airflow-providers-http)")
    if "uploads" in sections and shutil.which("curl") is None:
        missing.append("curl (apt-get install curl)")
    if "deployment" in sections and not (glob.glob("/usr/lib/postgresql/*/bin/postgres") or shutil.which("postgres")):
        missing.append("the PostgreSQL server (apt-get install postgresql; the benchmark runs its own)")
    return missing


def keep_other_sections(output: Path, sections: list[str], rows: list[Row], details: dict[str, Any]) -> list[Row]:
    """
    The rows of this run, after those of the sections it did not run from the file it replaces
    (their details and dates too), so that one section can be run again on its own.
    """
    if not output.exists():
        return rows
    earlier = json.loads(output.read_text())
    kept = [name for name in SECTIONS if name not in sections]
    numbers = {f"{SECTIONS.index(name) + 1}." for name in kept}
    old_rows = [Row(**row) for row in earlier["rows"] if row["section"].split(" ", 1)[0] in numbers]
    for name in kept:
        if name in earlier["details"]:
            details[name] = earlier["details"][name]
            when = earlier["details"].get("section_dates", {}).get(name, earlier["machine"]["date"])
            details["section_dates"][name] = when
    order = {title: i for i, title in enumerate(sorted({row.section for row in old_rows + rows}))}
    return sorted(old_rows + rows, key=lambda row: order[row.section])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_requirements(args.sections)
    if missing:
        print(f"The benchmarks need: {'; '.join(missing)}", file=sys.stderr)
        return 2
    info = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="slipstream-bench-"))
    env = bench_env(AIRFLOW_HOME=str(workdir / "airflow_home"))
    rows: list[Row] = []
    details: dict[str, Any] = {}
    failures: list[str] = []
    started = time.monotonic()
    print(f"Slipstream benchmarks on {info['cpu_model']} ({info['cpu_cores_logical']} cores); work dir {workdir}")
    sim = SimulatorProcess(workdir, env)
    try:
        for section in args.sections:
            section_started = time.monotonic()
            load = os.getloadavg()
            details.setdefault("load_average_at_section_start", {})[section] = load
            print(f"[{section}] (load average {load[0]:.2f})", flush=True)
            try:
                if section == "waiting":
                    import waiting

                    new_rows, details[section] = waiting.run(
                        sim,
                        workdir,
                        env,
                        jobs=args.jobs,
                        poll_interval=args.poll_interval,
                        shortest=args.shortest,
                        longest=args.longest,
                        rounds=args.waiting_rounds,
                    )
                elif section == "uploads":
                    import uploads

                    new_rows, details[section] = uploads.run(
                        sim, workdir, env, size_mb=args.upload_mib, repeats=args.upload_repeats
                    )
                elif section == "imports":
                    import imports

                    new_rows, details[section] = imports.run(workdir, env, runs=args.import_runs)
                elif section == "modes":
                    import modes

                    new_rows, details[section] = modes.run(sim, workdir, env, job_seconds=args.job_seconds)
                else:
                    import deployment

                    new_rows, details[section] = deployment.run(
                        sim, workdir, env, clips=args.clips, max_clips=args.max_clips, job_seconds=args.clip_job_seconds
                    )
                rows += new_rows
            except Exception:
                failures.append(section)
                details[section] = {"error": traceback.format_exc()}
                print(f"  {section} FAILED:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            details.setdefault("section_seconds", {})[section] = time.monotonic() - section_started
        details["simulator_rusage"] = sim.call("rusage")
    finally:
        sim.stop()
        CHILDREN.stop_all()
    details["total_seconds"] = time.monotonic() - started
    today = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    details["section_dates"] = dict.fromkeys(args.sections, today)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    rows = keep_other_sections(args.output, args.sections, rows, details)
    args.output.write_text(result_payload(rows, info, details, config) + "\n")
    print()
    print(render_table(rows))
    print()
    missed = [f"{row.figure}" for row in rows if row.met is False]
    print(f"{len(rows)} figures, {len(missed)} target(s) missed; {details['total_seconds']:.0f} s; wrote {args.output}")
    if failures:
        print(f"FAILED sections: {', '.join(failures)} (see {args.output})", file=sys.stderr)
    if args.keep_workdir or failures:
        print(f"work dir kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
