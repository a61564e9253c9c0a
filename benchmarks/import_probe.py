"""
One fresh interpreter of the import / DAG-parse benchmark: ``python import_probe.py ours|peer DAG_FOLDER [check]``.

Times ``import airflow.sdk`` (the baseline every DAG file pays), then the side's operator and
sensor modules, then executing every DAG file of DAG_FOLDER as the DAG processor does (a module
from the file). It records which heavy modules importing the operator and sensor modules loads;
with ``check`` (an untimed run) also every import statement our own modules execute (a wrapped
``__import__`` sees them even when the module is already loaded). Prints one JSON line.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

HEAVY = ("httpx", "aiohttp", "fsspec", "fastapi", "uvicorn", "airflow_provider_slipstream.simulator")
MODULES = {
    "ours": ("airflow_provider_slipstream.operators.slipstream", "airflow_provider_slipstream.sensors.slipstream"),
    "peer": ("airflow.providers.http.operators.http", "airflow.providers.http.sensors.http"),
}
OUR_PACKAGE = "airflow_provider_slipstream"


def is_heavy(name: str) -> bool:
    return any(name == heavy or name.startswith(heavy + ".") for heavy in HEAVY)


def main() -> int:
    side, dag_folder = sys.argv[1], Path(sys.argv[2])
    check = sys.argv[3:] == ["check"]
    clock = time.perf_counter
    started = clock()
    import airflow.sdk  # noqa: F401

    timings = {"airflow_sdk": clock() - started}
    baseline = set(sys.modules)

    statements: list[tuple[str, str]] = []
    original_import = builtins.__import__

    def recording_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        importer = (globals or {}).get("__name__", "")
        if importer.startswith(OUR_PACKAGE):
            statements.append((importer, name))
        return original_import(name, globals, locals, fromlist, level)

    if check:
        builtins.__import__ = recording_import
    try:
        operators, sensors = MODULES[side]
        mark = clock()
        importlib.import_module(operators)
        timings["operators"] = clock() - mark
        mark = clock()
        importlib.import_module(sensors)
        timings["sensors"] = clock() - mark
    finally:
        builtins.__import__ = original_import
    loaded = set(sys.modules) - baseline

    from airflow.sdk import DAG

    mark = clock()
    dags = 0
    for index, path in enumerate(sorted(dag_folder.glob("*.py"))):
        spec = importlib.util.spec_from_file_location(f"bench_dag_{index}_{path.stem}", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        dags += sum(1 for value in vars(module).values() if isinstance(value, DAG))
    timings["dag_files"] = clock() - mark

    print(
        json.dumps(
            {
                "side": side,
                "timings": timings,
                "dags": dags,
                "new_modules": len(loaded),
                "heavy_loaded_by_airflow_sdk": sorted(h for h in HEAVY if h in baseline),
                "heavy_newly_loaded": sorted(name for name in loaded if is_heavy(name)),
                "heavy_import_statements": sorted({f"{imp} -> {name}" for imp, name in statements if is_heavy(name)}),
                "import_statements_checked": len(statements),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
