"""
The partner key never leaks: run the example DAGs (success and failure paths) with a
recognisable key, then search everything Airflow and the simulator wrote for it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS
from airflow_harness import AirflowHarness, slipstream_conn

from airflow_provider_slipstream.samples import sample_videos
from tests.conftest import FAST_RETRY_EXTRA

pytestmark = pytest.mark.dagrun

KEY = "sk-live-SLIPSTREAM-7f3a9c2e5b1d"


def _without_airflow_30_mask_echo(output: str) -> str:
    """
    Airflow 3.0's `dags test` logs, at debug level, every request its task runner sends, and so the
    value of each secret it asks the supervisor to mask (its own connection reads do so too):
    ``Sending request msg=MaskSecret(value='...')``. Fixed in 3.1; nothing else may show the key.
    """
    if AIRFLOW_V_3_1_PLUS:
        return output
    return "\n".join(
        line for line in output.splitlines() if "Sending request" not in line or "msg=MaskSecret(" not in line
    )


def files_containing(root: Path, needle: str) -> list[Path]:
    data = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and data in p.read_bytes()]


@pytest.fixture
def simulator_process(tmp_path):
    """The simulator as a separate process with its access log on, so its own output can be searched."""
    port_file, log_file = tmp_path / "port", tmp_path / "simulator.log"
    with log_file.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_slipstream.simulator", "--port", "0"]
            + ["--port-file", str(port_file), "--api-key", KEY, "--access-log", "--processing-seconds", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}", log_file
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def set_simulator_key(url: str, key: str) -> None:
    request = urllib.request.Request(f"{url}/_sim/config", data=json.dumps({"api_key": key}).encode(), method="PUT")
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request, timeout=5).close()


def test_search_finds_a_planted_key(tmp_path):
    # The leak search below must be able to fail: it finds the key wherever it is written.
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "log.txt").write_text(f"Authorization: Bearer {KEY}")
    assert files_containing(tmp_path, KEY) == [tmp_path / "nested" / "log.txt"]


def test_key_never_appears_in_logs_xcom_rendered_fields_or_errors(tmp_path, simulator_process):
    url, simulator_log = simulator_process
    home = tmp_path / "home"
    airflow = AirflowHarness(home, slipstream_conn(url, KEY, **FAST_RETRY_EXTRA))
    airflow.migrate()
    outputs: list[str] = []

    # Success paths: both example DAGs.
    for dag_id, conf in [
        ("slipstream_audioverify", {"video_path": str(sample_videos()["competitor"])}),
        ("slipstream_audioverify_batch", None),
    ]:
        run = airflow.dags_test(dag_id, conf)
        assert airflow.dag_run_state(run) == "success", run.output[-3000:]
        outputs.append(run.output)

    # Failure paths: a missing video (validation), then a revoked key (403 on every call).
    run = airflow.dags_test("slipstream_audioverify", {"video_path": str(tmp_path / "missing_clip.mp4")})
    assert airflow.dag_run_state(run) == "failed"
    assert "does not exist" in run.output
    outputs.append(run.output)
    set_simulator_key(url, "a-different-key-now")
    for dag_id, conf in [
        ("slipstream_audioverify", {"video_path": str(sample_videos()["internal"])}),
        ("slipstream_audioverify_batch", None),
    ]:
        run = airflow.dags_test(dag_id, conf)
        assert airflow.dag_run_state(run) == "failed"
        assert "Slipstream refused the partner API key" in run.output
        outputs.append(run.output)

    # Task logs, the metadata DB (XComs, rendered template fields, task states), config files,
    # everything Airflow printed (exception texts included), and the simulator's own log.
    assert files_containing(home, KEY) == []
    assert [i for i, output in enumerate(outputs) if KEY in _without_airflow_30_mask_echo(output)] == []
    assert KEY not in simulator_log.read_text()
    # The searches covered real material: `dags test` prints task logs (exceptions included),
    # the DB holds XComs and rendered fields, and the simulator logged the API calls.
    assert "FLAGGED: 'Some Stock Track'" in outputs[0]
    assert "Slipstream refused the partner API key" in outputs[-1]
    assert airflow.query("SELECT COUNT(*) FROM xcom")[0][0] > 0
    assert airflow.query("SELECT COUNT(*) FROM rendered_task_instance_fields")[0][0] > 0
    assert "POST /api/v4/video-recognition/" in simulator_log.read_text()
