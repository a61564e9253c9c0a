"""
Two promises with no other test: a submit that never reached the server is re-sent, and the
Variable-backed resume used before Airflow 3.3 resumes a job like the task state store does.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from airflow_provider_slipstream._resumable import variable_key
from airflow_provider_slipstream.exceptions import SlipstreamJobTimeoutError, SlipstreamTransientError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.operators.slipstream import SlipstreamRecognizeVideoOperator
from airflow_provider_slipstream.samples import sample_videos
from tests.conftest import FAST_RETRY_EXTRA
from tests.contract import expected_result
from tests.fakes import LogRecorder


def test_submit_that_never_reached_the_server_is_resent(monkeypatch):
    log = LogRecorder()
    monkeypatch.setattr(SlipstreamHook, "log", log)
    with socket.socket() as probe:  # a port nobody listens on: every connect is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLIPSTREAM_DEFAULT",
        json.dumps(
            {
                "conn_type": "slipstream",
                "host": f"http://127.0.0.1:{port}",
                "password": "k3y",
                "extra": FAST_RETRY_EXTRA,
            }
        ),
    )
    with pytest.raises(SlipstreamTransientError, match="Could not reach Slipstream") as err:
        SlipstreamHook().submit_file(sample_videos()["internal"])

    # Refused connections prove nothing was sent, so the POST was re-sent through the whole budget,
    # and the final error is "could not reach", not "may have created a job".
    retries = [w for w in log.warnings("Could not reach Slipstream") if "Retry" in w]
    assert len(retries) == FAST_RETRY_EXTRA["max_retries"]
    assert "may still have created a job" not in str(err.value)


def test_submit_with_a_deadline_rides_out_an_outage_beyond_the_retry_budget(sim_conn, monkeypatch):
    log = LogRecorder()
    monkeypatch.setattr(SlipstreamHook, "log", log)
    sim_conn.stop()  # every connect is refused until the simulator is back on its port
    back = threading.Timer(2.0, sim_conn.start)
    back.start()
    try:
        job = SlipstreamHook().submit_file(sample_videos()["internal"], deadline=time.monotonic() + 30)
    finally:
        back.join()

    retries = [w for w in log.warnings("Could not reach Slipstream") if "within the task's bound" in w]
    assert len(retries) > FAST_RETRY_EXTRA["max_retries"]
    assert list(sim_conn.state.jobs) == [job.job_id]


class FakeVariables:
    """Airflow Variables as the fallback uses them (get/set/delete, JSON values), kept in a dict."""

    store: ClassVar[dict[str, Any]] = {}

    @classmethod
    def get(cls, key: str, default: Any = None, deserialize_json: bool = False) -> Any:
        assert deserialize_json
        return json.loads(cls.store[key]) if key in cls.store else default

    @classmethod
    def set(cls, key: str, value: Any, serialize_json: bool = False) -> None:
        assert serialize_json
        cls.store[key] = json.dumps(value)

    @classmethod
    def delete(cls, key: str) -> None:
        cls.store.pop(key, None)


def fallback_context(run_id: str = "run") -> dict[str, Any]:
    """A task context as Airflow < 3.3 builds it: no task state store."""
    ti = SimpleNamespace(dag_id="dag", run_id=run_id, task_id="recognize", map_index=-1, xcom_push=lambda **_: None)
    return {"ti": ti}


def test_variable_fallback_resumes_the_submitted_job_and_leaves_nothing(sim_conn, monkeypatch):
    import airflow.providers.common.compat.sdk as compat_sdk

    FakeVariables.store = {}
    monkeypatch.setattr(compat_sdk, "Variable", FakeVariables, raising=False)
    video = str(sample_videos()["competitor"])
    # The first try submits, then times out: the job takes longer than its timeout.
    sim_conn.state.configure(processing_seconds=1.5)
    first = SlipstreamRecognizeVideoOperator(task_id="recognize", video_path=video, poll_interval=0.2, timeout=0.5)
    with pytest.raises(SlipstreamJobTimeoutError):
        first.execute(fallback_context())
    [(key, stored)] = FakeVariables.store.items()
    assert key == variable_key("dag", "run", "recognize", -1)
    stored = json.loads(stored)
    assert stored["video"] == video

    time.sleep(1.5)  # the job completes meanwhile
    retry = SlipstreamRecognizeVideoOperator(task_id="recognize", video_path=video, poll_interval=0.2)
    result = retry.execute(fallback_context())

    assert result == expected_result(stored["job_id"], "competitor")
    assert sim_conn.state.jobs_created == 1
    assert FakeVariables.store == {}, "the record is removed once the task succeeded"


def test_variable_fallback_keys_fit_the_variable_key_limit():
    long_id = "x" * 250  # dag, run and task ids may each be this long
    key = variable_key(long_id, long_id, long_id, 10_000)
    assert len(key) <= 250  # Variable.key is a String(ID_LEN) column
    assert key != variable_key(long_id, long_id, long_id, 10_001)


def test_a_submit_is_never_re_sent_at_the_moment_airflow_ends_the_try(sim_conn):
    """A re-send aimed at execution_timeout's end could create a job as Airflow kills the try."""
    from datetime import datetime, timedelta, timezone

    try:  # what the task runner arms around execute: the SDK's, or core's on older 3.x
        from airflow.sdk.exceptions import AirflowTaskTimeout
        from airflow.sdk.execution_time.timeout import timeout as airflow_timeout
    except ImportError:
        from airflow.exceptions import AirflowTaskTimeout  # type: ignore[no-redef]
        from airflow.utils.timeout import timeout as airflow_timeout  # type: ignore[no-redef]

    from airflow_provider_slipstream.operators.slipstream import SlipstreamSubmitVideoOperator
    from airflow_provider_slipstream.simulator import Fault
    from tests.test_sensor_operators import FakeStateStore, FakeTI, make_context

    # Slipstream asks for 100 s, far past the try's end; then it is back, slow to answer.
    path = "/api/v4/video-recognition/"
    sim_conn.state.add_fault(
        Fault("status", path=path, method="POST", status=503, headers={"Retry-After": "100"}, remaining=1)
    )
    sim_conn.state.add_fault(Fault("hold", path=path, method="POST", seconds=0.7, remaining=1))
    ti = FakeTI()
    ti.start_date = datetime.now(timezone.utc) - timedelta(seconds=1)  # the worker's start-up, before execute
    operator = SlipstreamSubmitVideoOperator(
        task_id="submit", video_path=sample_videos()["internal"], execution_timeout=timedelta(seconds=4)
    )
    with pytest.raises(AirflowTaskTimeout), airflow_timeout(4):  # as Airflow's task runner runs execute
        operator.execute(make_context(ti, FakeStateStore()))

    time.sleep(1.0)  # a POST sent at the end would have created its job by now
    assert sim_conn.state.jobs_created == 0
    assert [r.fault for r in sim_conn.state.requests if r.method == "POST"] == ["status"]
