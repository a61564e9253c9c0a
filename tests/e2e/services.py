"""
PostgreSQL and Redis for the Celery e2e tests, from Debian's packages, run by the test itself, and
the CeleryExecutor deployment on top of them.

Each listens on 127.0.0.1 on a free port, keeps its data in a temporary folder, and is stopped
by its process id at teardown. Nothing here uses or changes a system service. When a server is
not installed, the test fails with the command that installs it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import LOOPBACK, REPO, AirflowDeployment, free_port, wait_until
from tests.e2e.worker_identity import ENV as WORKER_NAME_ENV

if TYPE_CHECKING:
    from airflow_provider_slipstream.simulator import SimulatorServer
    from tests.e2e.conftest import ManagedProcess, ProcessRegistry

POSTGRES_HINT = "apt-get install -y postgresql  (the test runs its own server; no system service is used)"
REDIS_HINT = "apt-get install -y redis-server  (the test runs its own server; no system service is used)"


def postgres_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and postgres, else initdb on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name), reverse=True
    )
    initdb = candidates[0] if candidates else shutil.which("initdb")
    if initdb and (Path(initdb).parent / "postgres").exists():
        return Path(initdb).parent
    return None


class PostgresServer:
    """
    A throw-away PostgreSQL cluster: ``initdb`` into a temporary folder, then ``postgres`` itself.

    PostgreSQL refuses to run as root, so as root both run as the ``postgres`` user that
    Debian's package creates (``Popen(user=...)``: no su/runuser in between, so the pid we hold
    is the server's). The superuser ``airflow`` is trusted on 127.0.0.1 only.
    """

    user_name = "airflow"
    database = "airflow"

    def __init__(self, registry: ProcessRegistry) -> None:
        self.registry = registry
        self.port = free_port()
        self.folder: Path | None = None
        self.process: ManagedProcess | None = None

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user_name}@{LOOPBACK}:{self.port}/{self.database}"

    def start(self, timeout: float = 60) -> PostgresServer:
        bindir = postgres_bindir()
        if bindir is None:
            pytest.fail(f"PostgreSQL server binaries (initdb, postgres) not found. Install them: {POSTGRES_HINT}")
        run_as = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(f"As root, PostgreSQL must run as the 'postgres' user, which is missing: {POSTGRES_HINT}")
            run_as = "postgres"
        # Not under pytest's tmp folder: that is private to root, and the server runs as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="slipstream-e2e-pg-"))
        if run_as:
            shutil.chown(self.folder, run_as, run_as)
        data = self.folder / "data"
        as_user = {"user": run_as, "group": pwd.getpwnam(run_as).pw_gid, "extra_groups": []} if run_as else {}
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", self.user_name, "--auth=trust", "-E", "UTF8"]
            + ["--locale=C", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=self.folder,
            **as_user,
        )
        self.process = self.registry.start(
            "postgres",
            [str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.folder)]
            + ["-c", f"listen_addresses={LOOPBACK}", "-c", "max_connections=300"]
            # A test database: durability is not needed, speed is.
            + ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            user=run_as,
            cwd=self.folder,
        )
        self.process.stop_signal = signal.SIGINT  # "fast" shutdown: do not wait for clients
        wait_until(self._accepts, timeout, "PostgreSQL to accept connections", check=self.registry.check_alive)
        self._create_database()
        return self

    def connect(self, database: str | None = None):  # -> psycopg2 connection
        import psycopg2

        return psycopg2.connect(
            host=LOOPBACK, port=self.port, user=self.user_name, dbname=database or self.database, connect_timeout=5
        )

    def _accepts(self) -> bool:
        try:
            self.connect("postgres").close()
        except Exception:
            return False
        return True

    def _create_database(self) -> None:
        conn = self.connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            conn.close()

    def query(self, sql: str, *params: object) -> list[tuple]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def remove_files(self) -> None:
        """Delete the cluster's folder; call once the server is stopped."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class RedisServer:
    """A Redis on 127.0.0.1 with no persistence, its folder in a temporary directory."""

    def __init__(self, registry: ProcessRegistry, folder: Path) -> None:
        self.registry = registry
        self.folder = folder
        self.port = free_port()
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self, timeout: float = 30) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            pytest.fail(f"redis-server not found. Install it: {REDIS_HINT}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = self.registry.start(
            "redis",
            [binary, "--port", str(self.port), "--bind", LOOPBACK, "--protected-mode", "yes"]
            + ["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder)],
            cwd=self.folder,
        )
        wait_until(self._pong, timeout, "Redis to answer PING", check=self.registry.check_alive)
        return self

    def _pong(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
        return False


def celery_deployment(
    home: Path,
    registry: ProcessRegistry,
    sim: SimulatorServer,
    postgres: PostgresServer,
    redis: RedisServer,
    *,
    concurrency: int,
    extra_env: dict[str, str] | None = None,
) -> AirflowDeployment:
    """A CeleryExecutor deployment on this PostgreSQL and Redis, its connection at the simulator."""
    conn = json.dumps({"conn_type": "slipstream", "host": sim.url, "password": sim.state.api_key})
    return AirflowDeployment(
        home,
        registry,
        executor="CeleryExecutor",
        slipstream_conn=conn,
        extra_env={
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.sqlalchemy_url,
            "AIRFLOW__CELERY__BROKER_URL": redis.url,
            # The driver is named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, not psycopg2.
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres.sqlalchemy_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
            "AIRFLOW__CORE__PARALLELISM": "32",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "32",
            **(extra_env or {}),
        },
    )


def start_celery_worker(airflow: AirflowDeployment, name: str, concurrency: int, timeout: float) -> ManagedProcess:
    """One Celery worker named ``name`` (its task instances record it as their hostname), once ready."""
    worker = airflow.start(
        f"celery-worker-{name}",
        "celery",
        "worker",
        "--celery-hostname",
        f"{name}@%h",
        "--concurrency",
        str(concurrency),
        "--skip-serve-logs",
        "--without-mingle",
        "--without-gossip",
        env=host_named(name),
    )
    wait_celery_ready(airflow, worker, timeout)
    return worker


def host_named(name: str) -> dict[str, str]:
    """Environment under which a component records ``name`` as its host (see worker_identity.py)."""
    return {
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.e2e.worker_identity.hostname",
        WORKER_NAME_ENV: name,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def wait_celery_ready(airflow: AirflowDeployment, worker: ManagedProcess, timeout: float) -> None:
    wait_until(
        lambda: " ready." in worker.log_text(),
        timeout,
        f"Celery worker {worker.name} to be ready",
        check=airflow.procs.check_alive,
    )
