"""SlipstreamGenerateLicenseOperator's checks before any request, with the Variable store in memory."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from airflow.providers.common import compat

from airflow_provider_slipstream.exceptions import SlipstreamValidationError
from airflow_provider_slipstream.operators.slipstream import SlipstreamGenerateLicenseOperator
from tests.contract import CATALOG_TRACK_ID, EXPECTED_TRACKS


class MemoryVariables:
    """Stands in for Airflow's Variable (the Task SDK's needs a running task)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None, deserialize_json: bool = False) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, serialize_json: bool = False) -> None:
        self.data[key] = value


class StartedTI:
    def __init__(self) -> None:
        self.start_date = datetime.now(timezone.utc)
        self.pushed: list[tuple[str, Any]] = []

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed.append((key, value))


@pytest.fixture
def variables(monkeypatch: pytest.MonkeyPatch) -> MemoryVariables:
    store = MemoryVariables()
    monkeypatch.setattr(compat.sdk, "Variable", store, raising=False)
    return store


def test_an_execution_timeout_too_short_for_one_request_fails_before_sending(sim_conn, variables):
    op = SlipstreamGenerateLicenseOperator(
        task_id="license", track_id=CATALOG_TRACK_ID, user_id="u", execution_timeout=timedelta(seconds=3)
    )
    with pytest.raises(SlipstreamValidationError, match="Raise execution_timeout"):
        op.execute({"ti": StartedTI()})
    assert sim_conn.state.count() == 0


def test_a_license_is_stored_then_reused_and_its_link_pushed_each_time(sim_conn, variables):
    internal = {"job_id": "j", "status": "completed", "match": "internal", "track": EXPECTED_TRACKS["internal"]}
    op = SlipstreamGenerateLicenseOperator(task_id="license", result=repr(internal), user_id=12345)
    tis = [StartedTI(), StartedTI()]
    first, second = (op.execute({"ti": ti}) for ti in tis)

    assert first == second
    assert len(sim_conn.state.licenses) == 1
    assert [record["license"] for record in variables.data.values()] == [first]
    for ti in tis:
        assert ti.pushed == [("slipstream_license_url", first["license_url"])]
    assert first["user_id"] == "12345"


@pytest.mark.parametrize(
    ("result", "match"),
    [
        ({"match": "internal", "track": {"id": None}}, "not a Slipstream catalog track id"),
        ("not a dict", "must be a Slipstream result dict"),
    ],
)
def test_a_result_without_a_catalog_track_is_refused_before_any_request(sim_conn, variables, result, match):
    op = SlipstreamGenerateLicenseOperator(task_id="license", result=result, user_id="u")
    with pytest.raises(SlipstreamValidationError, match=match):
        op.execute({"ti": StartedTI()})
    assert sim_conn.state.count() == 0
