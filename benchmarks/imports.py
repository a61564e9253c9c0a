"""
Section 3 — import and DAG-parse cost, in fresh interpreters.

Each run (``import_probe.py``) first imports ``airflow.sdk`` — the baseline every DAG file pays
— and then times, on top of it: the side's operator and sensor modules, and executing its DAG
files. Ours: ``airflow_provider_slipstream.operators/sensors.slipstream`` and ``example_dags/``.
Peer: ``airflow.providers.http.operators/sensors.http`` and ``benchmarks/dags/peer/`` (the same
two DAGs built with the HTTP provider alone). Sides alternate; values are medians of the runs,
ratios the median of the per-pair ratios (robust to a machine whose load drifts).
One more, untimed, run checks that our modules import none of httpx, aiohttp, fsspec, fastapi, uvicorn
or the simulator.
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

from common import BENCH_DIR, CHILDREN, PYTHON, REPO, Row, median

if TYPE_CHECKING:
    from pathlib import Path

SECTION = "3. Import / DAG-parse cost (added to `import airflow.sdk`)"
DAG_FOLDERS = {"ours": REPO / "example_dags", "peer": BENCH_DIR / "dags" / "peer"}
PEER_NAME = "http provider"


def probe(side: str, env: dict[str, str], *extra: str) -> dict[str, Any]:
    proc = CHILDREN.popen(
        [PYTHON, str(BENCH_DIR / "import_probe.py"), side, str(DAG_FOLDERS[side]), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(BENCH_DIR),
    )
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        CHILDREN.stop(proc)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"import probe {side} failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(lines[-1])


def run(workdir: Path, env: dict[str, str], *, runs: int) -> tuple[list[Row], dict[str, Any]]:
    env = {**env, "AIRFLOW_HOME": str(workdir / "airflow_home_imports")}
    # Untimed: byte-compiles everything once and checks the imports of our modules.
    check = probe("ours", env, "check")
    probe("peer", env)
    samples: dict[str, list[dict[str, float]]] = {"ours": [], "peer": []}
    for index in range(runs):
        for side in ("ours", "peer") if index % 2 == 0 else ("peer", "ours"):
            samples[side].append(probe(side, env)["timings"])
        if (index + 1) % 5 == 0:
            print(f"  imports: {index + 1}/{runs} interpreter pairs ...", flush=True)

    def ms(side: str, *keys: str) -> float:
        return 1000 * median([sum(sample[key] for key in keys) for sample in samples[side]])

    figures = {
        "import operators module [ms]": ("operators",),
        "import operators + sensor modules [ms]": ("operators", "sensors"),
        "parse the 2 example DAG files, imports included [ms]": ("operators", "sensors", "dag_files"),
    }

    def paired_ratio(*keys: str) -> float:
        """Median over the interpreter pairs (run back to back) of ours / peer: robust to a busy machine."""
        pairs = zip(samples["ours"], samples["peer"], strict=True)
        return median([sum(a[k] for k in keys) / sum(b[k] for k in keys) for a, b in pairs])

    rows = [
        Row(SECTION, figure, ms("ours", *keys), ms("peer", *keys), PEER_NAME, "<= 1.0x peer", ratio=paired_ratio(*keys))
        for figure, keys in figures.items()
    ]
    for row in rows:
        row.met = row.ratio is not None and row.ratio <= 1.0
    rows[0].note = (
        f"peer: airflow.providers.http.operators.http; values: medians of {runs} interpreters per side, "
        "ratios: medians of the per-pair ratios"
    )
    rows[2].note = "peer: benchmarks/dags/peer/, the same two DAGs built with HttpOperator/HttpSensor"
    heavy = check["heavy_newly_loaded"] + check["heavy_import_statements"]
    rows.append(
        Row(
            SECTION,
            "heavy modules imported by our operators/sensor",
            len(heavy),
            target="0 (httpx aiohttp fsspec fastapi uvicorn simulator)",
            met=not heavy,
            note=(
                f"newly loaded: {check['heavy_newly_loaded'] or 'none'}; import statements in our modules: "
                f"{check['heavy_import_statements'] or 'none'} ({check['import_statements_checked']} checked); "
                f"already loaded by airflow.sdk itself: {', '.join(check['heavy_loaded_by_airflow_sdk']) or 'none'}"
            ),
        )
    )
    baseline = median([s["airflow_sdk"] for s in samples["ours"] + samples["peer"]]) * 1000
    rows.append(Row(SECTION, "baseline: import airflow.sdk [ms]", baseline, note=f"median of {2 * runs} interpreters"))
    details = {"runs_per_side": runs, "check": check, "samples": samples}
    return rows, details
