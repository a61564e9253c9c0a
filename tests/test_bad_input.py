"""
The bad-input matrix: every public entry point refuses bad input with a clear error, before
any request reaches Slipstream (the simulator must see zero requests).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_slipstream.exceptions import SlipstreamValidationError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.models import UploadTarget
from airflow_provider_slipstream.operators.slipstream import (
    SlipstreamGetTrackOperator,
    SlipstreamRecognizeVideoOperator,
    SlipstreamSubmitVideoOperator,
)
from airflow_provider_slipstream.sensors.slipstream import SlipstreamJobSensor
from airflow_provider_slipstream.triggers.slipstream import SlipstreamJobTrigger, result_from_event

UUID = "7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10"
BAD_JOB_IDS = ["../x", "abc", f"{UUID}x", f"{UUID}/../x", "", "../../api/v4/video-recognition/upload-url"]


def bad_videos(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Bad video inputs, each with a phrase its error message must contain."""
    (tmp_path / "a_directory.mp4").mkdir()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "clip.mkv").write_bytes(b"not allowed")
    return {
        "missing file": (tmp_path / "missing.mp4", "does not exist"),
        "directory": (tmp_path / "a_directory.mp4", "is a directory"),
        "empty file": (tmp_path / "empty.mp4", "empty"),
        "disallowed extension": (tmp_path / "clip.mkv", ".mp4, .mov, .avi, .mpeg"),
    }


def too_big_for_direct(tmp_path: Path) -> Path:
    path = tmp_path / "huge_internal.mp4"
    with path.open("wb") as f:
        f.truncate(100 * 1024 * 1024 + 1)  # sparse: no 100 MB written to disk
    return path


def context() -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="dag", run_id="run", task_id="task", map_index=-1, xcom_push=lambda **_: None)
    # An empty task state store: outside a task run there is no Variable API for the fallback to use.
    store = SimpleNamespace(get=lambda key, default=None: default, set=lambda *a, **k: None, delete=lambda key: None)
    return {"ti": ti, "task_state_store": store}


def assert_refused_offline(sim, call, *phrases: str) -> None:
    with pytest.raises(SlipstreamValidationError) as err:
        call()
    assert isinstance(err.value, AirflowFailException), "bad input must not burn Airflow retries"
    for phrase in phrases:
        assert phrase in str(err.value)
    assert sim.state.requests == [], "validation must happen before any request"


@pytest.mark.parametrize("job_id", BAD_JOB_IDS)
def test_bad_job_ids_refused_by_every_entry_point(sim_conn, job_id):
    hook = SlipstreamHook()
    assert_refused_offline(sim_conn, lambda: hook.get_job(job_id), "not a Slipstream job id")
    assert_refused_offline(sim_conn, lambda: hook.wait_for_job(job_id), "not a Slipstream job id")
    get_track = SlipstreamGetTrackOperator(task_id="get", job_id=job_id)
    assert_refused_offline(sim_conn, lambda: get_track.execute(context()), "not a Slipstream job id")
    sensor = SlipstreamJobSensor(task_id="wait", job_id=job_id)
    assert_refused_offline(sim_conn, lambda: sensor.poke(context()), "not a Slipstream job id")

    async def first_event():
        async for event in SlipstreamJobTrigger(job_id=job_id).run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["error"] == "SlipstreamValidationError"
    assert_refused_offline(sim_conn, lambda: result_from_event(event), "not a Slipstream job id")


@pytest.mark.parametrize("case", ["missing file", "directory", "empty file", "disallowed extension"])
@pytest.mark.parametrize("method", ["direct", "presigned", "auto"])
def test_bad_videos_refused_by_every_entry_point(sim_conn, tmp_path, case, method):
    path, phrase = bad_videos(tmp_path)[case]
    hook = SlipstreamHook()
    assert_refused_offline(sim_conn, lambda: hook.submit_video(path, method=method), phrase)
    assert_refused_offline(sim_conn, lambda: hook.submit_file(path), phrase)
    target = UploadTarget(f"{sim_conn.s3_url}/x", "video-recognition/x.mp4", 600, "video/mp4")
    assert_refused_offline(sim_conn, lambda: hook.upload_to_url(target, path), phrase)
    for operator_class in (SlipstreamSubmitVideoOperator, SlipstreamRecognizeVideoOperator):
        operator = operator_class(task_id="t", video_path=str(path), upload_method=method)
        assert_refused_offline(sim_conn, lambda op=operator: op.execute(context()), phrase)


def test_over_100_mb_refused_for_direct_upload_only(sim_conn, tmp_path):
    path = too_big_for_direct(tmp_path)
    hook = SlipstreamHook()
    assert_refused_offline(sim_conn, lambda: hook.submit_video(path, method="direct"), "100 MB", "presigned")
    assert_refused_offline(sim_conn, lambda: hook.submit_file(path), "100 MB")
    operator = SlipstreamSubmitVideoOperator(task_id="t", video_path=str(path), upload_method="direct")
    assert_refused_offline(sim_conn, lambda: operator.execute(context()), "100 MB")


def test_bad_filenames_and_storage_keys(sim_conn):
    hook = SlipstreamHook()
    assert_refused_offline(sim_conn, lambda: hook.create_upload_url("clip.mkv"), "clip.mkv")
    for key in ["uploads/clip.mp4", "video-recognition/../secrets.mp4", ""]:
        assert_refused_offline(sim_conn, lambda k=key: hook.submit_storage_key(k), "video-recognition/")
        operator = SlipstreamSubmitVideoOperator(task_id="t", storage_key=key)
        assert_refused_offline(sim_conn, lambda op=operator: op.execute(context()), "video-recognition/")


@pytest.mark.parametrize(
    ("connection", "phrase"),
    [
        ({"conn_type": "slipstream", "host": "{url}"}, "no partner API key"),
        ({"conn_type": "slipstream", "host": "ht!tp://{host}", "password": "k3y-value"}, "malformed host"),
        ({"conn_type": "slipstream", "host": "https://", "password": "k3y-value"}, "malformed host"),
        ({"conn_type": "slipstream", "host": "http://example.com", "password": "k3y-value"}, "unencrypted"),
        (
            {"conn_type": "slipstream", "host": "{url}", "password": "k3y-value", "extra": {"timeout": "soon"}},
            "timeout",
        ),
    ],
)
def test_bad_connections_refused_before_any_request(sim_conn, monkeypatch, connection, phrase):
    text = json.dumps(connection).replace("{url}", sim_conn.url).replace("{host}", sim_conn.url.split("//")[1])
    monkeypatch.setenv("AIRFLOW_CONN_SLIPSTREAM_DEFAULT", text)
    assert_refused_offline(sim_conn, lambda: SlipstreamHook().get_job(UUID), phrase)
    ok, message = SlipstreamHook().test_connection()
    assert not ok
    assert phrase in message
    assert sim_conn.state.requests == []
