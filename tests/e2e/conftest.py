"""
Fixtures for the end-to-end deployment tests: real Airflow components, started as processes.

Everything listens on 127.0.0.1 on free ports, lives in temporary folders, and is stopped at
teardown by its own process id (each component is the leader of its own process group, and
the group plus any descendant that left it is ended). Nothing here touches a system service.

The Celery tests (the Celery e2e and the chaos suite) are switched: they run when
``SLIPSTREAM_E2E_CELERY=1`` is set, when the ``-m`` expression names the ``celery`` marker, or when
their file is named on the command line.
Otherwise they are deselected (not skipped), so ``make test`` stays fast.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import psutil
import pytest
import requests

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from tests.e2e.services import PostgresServer, RedisServer

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "example_dags"
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
LOOPBACK = "127.0.0.1"

CELERY_ENV_SWITCH = "SLIPSTREAM_E2E_CELERY"
#: The modules that run on a CeleryExecutor deployment: naming one on the command line selects it.
CELERY_TEST_FILES = ("test_celery_executor.py", "test_chaos.py")

#: Airflow settings from the caller's environment that must not leak into the test deployment.
INHERITED_AIRFLOW_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW_HOME", "AIRFLOW_CONFIG")

#: The final states of a DAG run.
FINISHED = frozenset({"success", "failed"})


# --------------------------------------------------------------------------------------------
# The Celery switch
# --------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "celery: the CeleryExecutor e2e test (Redis, PostgreSQL, two workers)")


def celery_selected(config: pytest.Config) -> bool:
    """Whether the Celery e2e test was asked for: env switch, ``-m ...celery...``, or its file named."""
    if os.environ.get(CELERY_ENV_SWITCH) == "1":
        return True
    markexpr = config.getoption("markexpr", default="") or ""
    if re.search(r"\bcelery\b", markexpr) and not re.search(r"\bnot\s+celery\b", markexpr):
        return True
    return any(name in str(arg) for name in CELERY_TEST_FILES for arg in config.invocation_params.args)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if celery_selected(config):
        return
    deselected = [item for item in items if item.get_closest_marker("celery") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("celery") is None]


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A port that is free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.5,
    check: Callable[[], None] | None = None,
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class ManagedProcess:
    """One component, started in its own session (process group), its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        #: What restart() needs to start the same program again.
        self.spawn: dict[str, Any] = {"env": env, "user": user, "cwd": cwd}
        #: time.monotonic() of ProcessRegistry.kill: this process died on purpose, check_alive ignores it.
        self.killed_at: float | None = None
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user, group=_primary_group(user), extra_groups=[])
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
        self.pid = self.popen.pid
        self.started = time.monotonic()
        #: The signal that asks this program to shut down cleanly.
        self.stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace: float = 20.0) -> None:
        """End the process group (and descendants that left it), gracefully first."""
        leftovers = self.descendants()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, self.stop_signal)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        # Whatever of the group outlived its leader, and children that started their own session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
        psutil.wait_procs(leftovers, timeout=5)
        self._log.close()

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid} {'running' if self.alive() else f'exit {self.popen.returncode}'}>"


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


class ProcessRegistry:
    """Every process a test started; ``stop_all`` ends them in reverse order of start."""

    _live: ClassVar[list[ProcessRegistry]] = []

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: list[ManagedProcess] = []
        #: Called after every process is stopped, e.g. to delete a database's files.
        self.after_stop: list[Callable[[], None]] = []
        ProcessRegistry._live.append(self)

    def start(self, name: str, argv: list[str], **kwargs: Any) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.log_dir / f"{name}.log", **kwargs)
        self.processes.append(proc)
        return proc

    def get(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    def latest(self, name: str) -> ManagedProcess:
        """The newest process started as ``name`` or as one of its restarts (``name#2``...)."""
        return next(p for p in reversed(self.processes) if p.name.split("#")[0] == name)

    def kill(self, proc: ManagedProcess) -> None:
        """
        SIGKILL the process's group (the program and the children it forked), as when its host or
        container dies. Only this process, by its pid.
        """
        children = proc.descendants()
        proc.killed_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGKILL)
        for child in children:  # any that had left the group
            with contextlib.suppress(psutil.Error):
                child.kill()
        proc.popen.wait(30)
        psutil.wait_procs(children, timeout=10)

    def restart(self, proc: ManagedProcess, argv: list[str] | None = None) -> ManagedProcess:
        """
        Start the same program again, as a supervisor would: ``<name>#2``, ``#3``... with its own log;
        ``argv`` when the supervisor's configuration changed in between.
        """
        base = proc.name.split("#")[0]
        count = sum(1 for p in self.processes if p.name.split("#")[0] == base)
        return self.start(f"{base}#{count + 1}", argv or proc.argv, **proc.spawn)

    def check_alive(self) -> None:
        """Fail fast, with its log, when a component died (other than one killed on purpose)."""
        for proc in self.processes:
            if proc.killed_at is None and not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; its log ends:\n{proc.tail(60)}")

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                print(f"[e2e] stopping {proc.name} (pid {proc.pid}) failed: {exc!r}", file=sys.stderr)
        still = [p for p in self.processes if p.alive()]
        if self in ProcessRegistry._live:
            ProcessRegistry._live.remove(self)
        for callback in self.after_stop:
            callback()
        assert not still, f"processes still running after teardown: {still}"

    def all_pids(self) -> set[int]:
        pids = set()
        for proc in self.processes:
            pids.add(proc.pid)
            pids.update(child.pid for child in proc.descendants())
        return pids


@atexit.register
def _stop_forgotten_processes() -> None:  # a last guard if a fixture teardown never ran
    for registry in list(ProcessRegistry._live):
        with contextlib.suppress(Exception):
            registry.stop_all()


# --------------------------------------------------------------------------------------------
# Airflow: configuration, components, REST API
# --------------------------------------------------------------------------------------------


class AirflowApi:
    """The public REST API (``/api/v2``), authenticated with a SimpleAuthManager token."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.session = requests.Session()

    def login(self) -> None:
        # SimpleAuthManager issues a JWT for the user/password of its passwords file.
        response = requests.post(
            f"{self.base_url}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=30,
        )
        if response.status_code != 201:
            raise RuntimeError(f"POST /auth/token answered {response.status_code}: {response.text[:500]}")
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, ok: Iterable[int] = (200,), **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        response = self.session.request(method, f"{self.base_url}/api/v2{path}", **kwargs)
        if response.status_code not in ok:
            raise RuntimeError(f"{method} /api/v2{path} answered {response.status_code}: {response.text[:1000]}")
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def dag_exists(self, dag_id: str) -> bool:
        return self.request("GET", f"/dags/{dag_id}", ok=(200, 404)).status_code == 200

    def import_errors(self) -> list[dict[str, Any]]:
        return self.get("/importErrors")["import_errors"]

    def unpause(self, dag_id: str) -> None:
        body = self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).json()
        assert body["is_paused"] is False, body

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body).json()

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str = "~", run_id: str = "~") -> list[dict[str, Any]]:
        """All task instances (every map index), page by page."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100, offset=len(found))
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
        entry = self.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}", map_index=map_index
        )
        return entry["value"]

    def wait_for_runs(
        self, runs: Iterable[tuple[str, str]], timeout: float, check: Callable[[], None] | None = None
    ) -> dict[tuple[str, str], str]:
        """Wait until every (dag_id, run_id) is finished; return their states."""
        pending = set(runs)
        states: dict[tuple[str, str], str] = {}

        def all_done() -> bool:
            for dag_id, run_id in sorted(pending):
                state = self.dag_run(dag_id, run_id)["state"]
                if state in FINISHED:
                    states[(dag_id, run_id)] = state
                    pending.discard((dag_id, run_id))
            return not pending

        wait_until(all_done, timeout, f"DAG runs to finish: {sorted(pending)}", interval=1.0, check=check)
        return states


class AirflowDeployment:
    """An AIRFLOW_HOME in a temporary folder, its configuration as environment, its components."""

    def __init__(
        self,
        home: Path,
        procs: ProcessRegistry,
        *,
        executor: str,
        slipstream_conn: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.procs = procs
        self.api_port = free_port()
        self.api_url = f"http://{LOOPBACK}:{self.api_port}"
        self.username = "admin"
        self.password = secrets.token_urlsafe(16)
        home.mkdir(parents=True, exist_ok=True)
        passwords_file = home / "simple_auth_manager_passwords.json"
        passwords_file.write_text(json.dumps({self.username: self.password}))
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_AIRFLOW_PREFIXES)}
        self.env = {
            **inherited,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            # SimpleAuthManager: one admin whose password we wrote; tokens from POST /auth/token.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__API__HOST": LOOPBACK,
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(24),
            # The same JWT secret for the API server (which checks) and the workers (which present).
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # Parse the DAGs folder at once, schedule with little idle time.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            # A task's supervisor notices the task process ended at its next wake-up, at most this
            # many seconds later (default 5). Only then does the executor report the workload done;
            # a report that late reaches the scheduler after a 2 s reschedule sensor was queued
            # again and fails it (apache/airflow#71172). 1 s keeps the report ahead of the next poke.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            # Log servers bind every interface: not started (logs are files in this AIRFLOW_HOME).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW_CONN_SLIPSTREAM_DEFAULT": slipstream_conn,
            **(extra_env or {}),
        }
        self.api = AirflowApi(self.api_url, self.username, self.password)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> ManagedProcess:
        return self.procs.start(name, [AIRFLOW, *args], env={**self.env, **(env or {})}, cwd=self.home)

    def start_core(self, dag_ids: Iterable[str], timeout: float = 180, *, triggerer: bool = True) -> None:
        """Migrate, start the API server, scheduler, DAG processor and triggerer; wait for the DAGs."""
        self.cli("db", "migrate")
        self.start("api-server", "api-server", "--host", LOOPBACK, "--port", str(self.api_port))
        self.start("dag-processor", "dag-processor")
        self.start("scheduler", "scheduler", "--skip-serve-logs")
        if triggerer:
            self.start("triggerer", "triggerer", "--skip-serve-logs")
        wait_until(self.api.healthy, timeout, "the API server", check=self.procs.check_alive)
        self.api.login()

        def parsed() -> bool:
            errors = self.api.import_errors()
            if errors:
                raise RuntimeError(f"DAG import errors: {errors}")
            return all(self.api.dag_exists(dag_id) for dag_id in dag_ids)

        wait_until(parsed, timeout, f"the DAG processor to parse {list(dag_ids)}", check=self.procs.check_alive)

    def task_log_files(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[Path]:
        """The log files of one task instance: ``attempt=N.log``, and ``...trigger.<job id>.log`` of its triggers."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        return sorted(folder.glob("attempt=*.log*"))

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, lines: int = 0) -> str:
        text = "\n".join(p.read_text(errors="replace") for p in self.task_log_files(dag_id, run_id, task_id, map_index))
        return "\n".join(text.splitlines()[-lines:]) if lines else text

    def failure_report(self, tis: Iterable[dict[str, Any]], lines: int = 15) -> str:
        """The end of the logs of task instances that failed, for assertion messages."""
        report = []
        for ti in tis:
            if ti["state"] in ("failed", "up_for_retry"):
                log = self.task_log(ti["dag_id"], ti["dag_run_id"], ti["task_id"], ti["map_index"], lines)
                report.append(f"--- {ti['dag_id']}/{ti['dag_run_id']}/{ti['task_id']}[{ti['map_index']}]:\n{log}")
        return "\n".join(report)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


# --------------------------------------------------------------------------------------------
# Watching task instances while they run
# --------------------------------------------------------------------------------------------


class TaskInstanceWatcher:
    """
    Polls the REST API in a thread and keeps, per task instance, every (state, try_number) seen.

    ``sample`` is called after each poll with the task instances, e.g. to look at processes
    while a task instance is in a given state.
    """

    def __init__(
        self,
        api: AirflowApi,
        interval: float = 0.3,
        sample: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.api = api
        self.interval = interval
        self.sample = sample
        self.seen: dict[tuple[str, str, str, int], list[tuple[str | None, int]]] = {}
        #: The triggers seen on deferred task instances: classpath and the triggerer job running it.
        self.triggers: dict[tuple[str, str, str, int], dict[str, Any]] = {}
        self.polls = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ti-watcher", daemon=True)

    def __enter__(self) -> TaskInstanceWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                tis = self.api.task_instances()
            except Exception as exc:  # the API may be busy; keep watching
                self.errors.append(repr(exc))
            else:
                self.polls += 1
                for ti in tis:
                    key = (ti["dag_id"], ti["dag_run_id"], ti["task_id"], ti["map_index"])
                    history = self.seen.setdefault(key, [])
                    entry = (ti["state"], ti["try_number"])
                    if not history or history[-1] != entry:
                        history.append(entry)
                    trigger = ti.get("trigger")
                    if trigger and (key not in self.triggers or trigger.get("triggerer_id") is not None):
                        self.triggers[key] = trigger
                if self.sample is not None:
                    try:
                        self.sample(tis)
                    except Exception as exc:
                        self.errors.append(f"sample: {exc!r}")
            self._stop.wait(self.interval)

    def states(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[str | None]:
        return [state for state, _ in self.seen.get((dag_id, run_id, task_id, map_index), [])]

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> set[int]:
        return {try_number for _, try_number in self.seen.get((dag_id, run_id, task_id, map_index), [])}


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def process_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessRegistry]:
    """Processes started by one test module; all stopped at its end, whatever happened."""
    registry = ProcessRegistry(tmp_path_factory.mktemp("e2e_logs"))
    try:
        yield registry
    finally:
        registry.stop_all()


@pytest.fixture(scope="module")
def wall_clock() -> Iterator[dict[str, float]]:
    """Named durations of the module, printed at its end."""
    start = time.monotonic()
    marks: dict[str, float] = {}
    yield marks
    marks["total (module)"] = time.monotonic() - start
    print("\n[e2e] wall time: " + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in marks.items()))


@pytest.fixture(scope="module")
def postgres(process_registry: ProcessRegistry) -> PostgresServer:
    """A PostgreSQL server of the module's own (services.py imports this module, hence imported here)."""
    from tests.e2e.services import PostgresServer

    server = PostgresServer(process_registry)
    # Removed once every process is stopped: the registry stops Airflow before the database.
    process_registry.after_stop.append(server.remove_files)
    return server.start()


@pytest.fixture(scope="module")
def redis(process_registry: ProcessRegistry, tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    from tests.e2e.services import RedisServer

    return RedisServer(process_registry, tmp_path_factory.mktemp("redis")).start()
