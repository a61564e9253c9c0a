"""
Run example DAGs with ``airflow dags test`` against a simulator, and read back what happened.

Used by the demo (``make demo``) and by the DAG tests, so both exercise the same path.
Outcomes are read from the run's SQLite metadata database, which is what the Airflow UI shows.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DAGS_FOLDER = REPO / "example_dags"


def slipstream_conn(url: str, api_key: str, **extra: Any) -> str:
    """The ``AIRFLOW_CONN_SLIPSTREAM_DEFAULT`` value (JSON form) for a simulator."""
    return json.dumps({"conn_type": "slipstream", "host": url, "password": api_key, "extra": extra})


@dataclass
class DagRun:
    dag_id: str
    run_id: str
    returncode: int
    output: str


class AirflowHarness:
    """An isolated AIRFLOW_HOME with a migrated SQLite database and the example DAGs."""

    def __init__(self, home: Path, conn_uri: str, dags_folder: Path = DAGS_FOLDER, **env: str) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_SLIPSTREAM_DEFAULT": conn_uri,
            **env,
        }
        self._airflow = str(Path(sys.executable).with_name("airflow"))

    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    def migrate(self) -> None:
        if not self.db_path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            self.run_cli("db", "migrate")

    def run_cli(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self._airflow, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def dags_test(self, dag_id: str, conf: dict[str, Any] | None = None, timeout: float = 600) -> DagRun:
        """Run one DAG to the end; return its run id and the combined output."""
        before = set(self._run_ids(dag_id))
        args = ["dags", "test", dag_id] + (["--conf", json.dumps(conf)] if conf else [])
        proc = self.run_cli(*args, check=False, timeout=timeout)
        new = [run_id for run_id in self._run_ids(dag_id) if run_id not in before]
        if not new:
            raise RuntimeError(f"airflow dags test {dag_id} created no run:\n{proc.stdout}\n{proc.stderr}")
        return DagRun(dag_id, new[-1], proc.returncode, proc.stdout + proc.stderr)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_path) as db:
            return db.execute(sql, params).fetchall()

    def _run_ids(self, dag_id: str) -> list[str]:
        if not self.db_path.exists():
            return []
        return [row[0] for row in self.query("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id", dag_id)]

    def dag_run_state(self, run: DagRun) -> str:
        return self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", run.dag_id, run.run_id)[0][0]

    def task_states(self, run: DagRun) -> dict[tuple[str, int], str]:
        sql = "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ?"
        rows = self.query(sql, run.dag_id, run.run_id)
        return {(task_id, map_index): state for task_id, map_index, state in rows}

    def xcom(self, run: DagRun, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ? AND map_index = ?",
            run.dag_id,
            run.run_id,
            task_id,
            key,
            map_index,
        )
        if not rows:
            return None
        value = rows[0][0]
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def reschedule_count(self, run: DagRun, task_id: str) -> int:
        return self.query(
            "SELECT COUNT(*) FROM task_reschedule r JOIN task_instance t ON r.ti_id = t.id "
            "WHERE t.dag_id = ? AND t.run_id = ? AND t.task_id = ?",
            run.dag_id,
            run.run_id,
            task_id,
        )[0][0]
