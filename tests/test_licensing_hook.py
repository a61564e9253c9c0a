"""
The Tracks and Licensing calls of SlipstreamHook against the running simulator: parsing into the
models, validation before any request, the submit rule for license POSTs, quota refusals, enrichment.
"""

from __future__ import annotations

import json

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_slipstream._resumable import LicenseStore
from airflow_provider_slipstream.exceptions import (
    SlipstreamLicenseQuotaError,
    SlipstreamSubmitUncertainError,
    SlipstreamTrackNotFoundError,
    SlipstreamValidationError,
)
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.models import (
    LICENSE_PAGE,
    CatalogTrack,
    License,
    LicenseUsage,
    RightsHolder,
    quota_refusal,
)
from airflow_provider_slipstream.simulator import Fault
from tests.contract import CATALOG_TRACK_ID, expected_catalog, expected_license
from tests.fakes import LogRecorder

LICENSE = "/api/v1/licenses/generate"
UNKNOWN_TRACK = "99999999-9999-4999-8999-999999999999"


def test_a_catalog_track_keeps_its_rights_metadata_as_documented(hook):
    track = hook.get_catalog_track(CATALOG_TRACK_ID)

    assert isinstance(track, CatalogTrack)
    assert (track.id, track.name, track.artist_name) == (CATALOG_TRACK_ID, "Golden Hour", "The Coast")
    assert track.short_url.startswith("https://slipstreammusic.com/t/")
    assert all(isinstance(w, RightsHolder) for w in track.writers)
    assert len(track.writers) == 2
    # IPI numbers keep their leading zeros.
    assert all(w.ipi is None or (w.ipi.isdigit() and w.ipi.startswith("0")) for w in track.writers + track.publishers)
    assert track.to_catalog() == expected_catalog()
    assert track.raw["tempo"] == hook.get_catalog_track(CATALOG_TRACK_ID).raw["tempo"]


def test_an_unknown_track_is_a_permanent_error_that_names_it(hook, sim_conn):
    with pytest.raises(SlipstreamTrackNotFoundError, match=UNKNOWN_TRACK):
        hook.get_catalog_track(UNKNOWN_TRACK)
    assert sim_conn.state.count(path_glob="/api/v4/en/tracks/*") == 1  # not retried


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda h: h.get_catalog_track("golden-hour"), "not a Slipstream catalog track id"),
        (lambda h: h.get_catalog_track(CATALOG_TRACK_ID, language="../en"), "not a language code"),
        (lambda h: h.generate_license("abc", "user-1"), "not a Slipstream catalog track id"),
        (lambda h: h.generate_license(CATALOG_TRACK_ID, ""), "user_id"),
        (lambda h: h.generate_license(CATALOG_TRACK_ID, "user\r\nX-Evil: 1"), "user_id"),
        (lambda h: h.generate_license(CATALOG_TRACK_ID, "user-1", "x" * 256), "at most 255"),
    ],
)
def test_bad_input_is_refused_before_any_request(hook, sim_conn, call, match):
    with pytest.raises(SlipstreamValidationError, match=match):
        call(hook)
    assert sim_conn.state.count() == 0


def test_a_license_equals_the_contract_and_its_public_url_follows_the_docs_rule(hook, sim_conn):
    granted = hook.generate_license(CATALOG_TRACK_ID, "user-12345", "My video")

    (created,) = sim_conn.state.licenses
    assert isinstance(granted, License)
    assert granted.license_url == LICENSE_PAGE.format(license_id=created.license_id)
    assert granted.to_dict() == expected_license(created, "user-12345", daily_used=1, monthly_used=1)
    assert License.from_dict(granted.to_dict()) == granted
    assert (created.track_id, created.user_id, created.project_name) == (CATALOG_TRACK_ID, "user-12345", "My video")


def test_a_license_answer_that_already_holds_a_full_url_is_used_as_is():
    body = {"license": {"license_id": "ab" * 16, "license_url": "https://license.example/v/x"}, "usage": {}}
    assert License.from_api(body).license_url == "https://license.example/v/x"


def test_a_refused_license_post_is_re_sent_but_one_that_reached_the_server_is_not(hook, sim_conn):
    sim_conn.state.add_fault(Fault("status", path=LICENSE, status=503, remaining=2))
    hook.generate_license(CATALOG_TRACK_ID, "user-1")
    assert sim_conn.state.count(method="POST", path_glob=LICENSE) == 3
    assert len(sim_conn.state.licenses) == 1

    # Created, then the answer is lost (held past the read timeout of 5 s): never re-sent.
    sim_conn.state.add_fault(Fault("hold", path=LICENSE, seconds=6.5, remaining=1))
    with pytest.raises(SlipstreamSubmitUncertainError, match="may still have generated it"):
        hook.generate_license(CATALOG_TRACK_ID, "user-2")
    assert sim_conn.state.count(method="POST", path_glob=LICENSE) == 4
    assert len(sim_conn.state.licenses) == 2


def test_a_used_up_quota_fails_at_once_saying_when_it_resets(hook, sim_conn):
    sim_conn.state.configure(license_daily_limit=10, license_daily_used=10)
    with pytest.raises(SlipstreamLicenseQuotaError, match=r"resets at \d{4}-\d\d-\d\dT00:00:00"):
        hook.generate_license(CATALOG_TRACK_ID, "user-1")
    assert sim_conn.state.count(method="POST", path_glob=LICENSE) == 1  # no retry loop
    assert sim_conn.state.licenses == []


def test_a_plain_429_is_rate_limiting_and_is_retried(hook, sim_conn):
    sim_conn.state.add_fault(
        Fault(
            "status", path=LICENSE, status=429, headers={"Retry-After": "0"}, body={"detail": "Slow down."}, remaining=1
        )
    )
    hook.generate_license(CATALOG_TRACK_ID, "user-1")
    assert sim_conn.state.count(method="POST", path_glob=LICENSE) == 2


def test_usage_near_a_cap_is_read_from_the_answer(hook, sim_conn):
    sim_conn.state.configure(license_monthly_limit=100, license_monthly_used=79)
    assert hook.generate_license(CATALOG_TRACK_ID, "user-1").usage.near_caps() == ["monthly 80 of 100"]


def test_enrichment_adds_the_catalog_to_internal_matches_only(hook, sim_conn, monkeypatch):
    internal = {"job_id": "j", "status": "completed", "match": "internal", "track": {"id": CATALOG_TRACK_ID}}
    assert hook.enrich(internal) == {**internal, "catalog": expected_catalog()}
    before = sim_conn.state.count()
    for match in ("competitor", "external"):
        other = {"job_id": "j", "status": "completed", "match": match, "track": {"id": None}}
        assert hook.enrich(other) is other
    assert hook.enrich({"job_id": "j", "status": "completed", "match": "no_match", "track": None})["track"] is None
    assert sim_conn.state.count() == before

    cache: dict = {}
    for _ in range(3):
        hook.enrich(internal, cache=cache)
    assert sim_conn.state.count() == before + 1  # one request per distinct track

    log = LogRecorder()
    monkeypatch.setattr(SlipstreamHook, "log", log)
    gone = hook.enrich({**internal, "track": {"id": UNKNOWN_TRACK}})
    assert gone["catalog"] is None
    assert [level for level, message in log.records if UNKNOWN_TRACK in message] == ["warning"]


DOCUMENTED_ANSWER = {
    "success": True,
    "license": {
        "license_id": "5f3e7d9c8b2a4f1e6d0c5b8a3e2f7d9c",
        "license_url": "5f3e7d9c8b2a4f1e6d0c5b8a3e2f7d9c",
        "track_id": CATALOG_TRACK_ID,
        "track_name": "Golden Hour",
        "artist_name": "The Coast",
        "user_id": "user-1",
        "created_at": "2026-04-30T18:42:11.508Z",
        "expires_at": None,
    },
    "usage": {"daily_used": 13, "monthly_used": 306, "daily_limit": 1000, "monthly_limit": 30000},
}


def test_an_odd_optional_field_does_not_lose_a_license_that_was_generated(hook, sim_conn):
    odd = {
        **DOCUMENTED_ANSWER,
        "license": {**DOCUMENTED_ANSWER["license"], "expires_at": 1767225600},
        "usage": {**DOCUMENTED_ANSWER["usage"], "daily_limit": "1000", "monthly_limit": None},
    }
    sim_conn.state.add_fault(Fault("status", path=LICENSE, status=200, body=odd, remaining=1))
    granted = hook.generate_license(CATALOG_TRACK_ID, "user-1")
    assert (granted.license_id, granted.expires_at) == ("5f3e7d9c8b2a4f1e6d0c5b8a3e2f7d9c", None)
    assert granted.usage == LicenseUsage(daily_used=13, monthly_used=306, daily_limit=1000, monthly_limit=None)


def test_a_license_answer_without_an_id_fails_at_once_and_is_not_requested_again(hook, sim_conn):
    body = {**DOCUMENTED_ANSWER, "license": {"license_url": "x"}}
    sim_conn.state.add_fault(Fault("status", path=LICENSE, status=200, body=body, remaining=1))
    with pytest.raises(SlipstreamSubmitUncertainError, match="cannot read") as raised:
        hook.generate_license(CATALOG_TRACK_ID, "user-1")
    assert isinstance(raised.value, AirflowFailException)  # no task retry spends quota again
    assert '"license_url": "x"' in str(raised.value)  # the answer is kept in the error
    assert sim_conn.state.count(method="POST", path_glob=LICENSE) == 1


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "expected"),
    [
        (429, {"detail": "Daily license quota exceeded."}, None, "did not say when"),
        (
            429,
            {"error": {"code": "quota_exceeded", "message": "x", "resets_at": "2026-12-07T00:00:00Z"}},
            None,
            "at 2026-12-07",
        ),
        (403, {"detail": "Monthly license limit reached."}, "7200", "in about 2.0 h"),
        (429, {"detail": "License quota used up."}, "90", "in about 2 min"),
        (429, {"success": False, "error": {"code": "rate_limited", "message": "Rate limit exceeded: 10/s"}}, "1", None),
        (429, {"detail": "Request was throttled."}, "1", None),
        (403, {"detail": "Your plan is limited to read-only access."}, None, None),
        (503, {"detail": "License quota exceeded."}, None, None),
    ],
)
def test_a_quota_refusal_is_told_from_rate_limiting_in_every_error_shape(status, body, retry_after, expected):
    said = quota_refusal(status, json.dumps(body).encode(), retry_after)
    assert said is None if expected is None else expected in said


def test_a_quota_refusal_in_the_drf_shape_fails_at_once(hook, sim_conn):
    sim_conn.state.add_fault(
        Fault("status", path=LICENSE, status=429, body={"detail": "Daily license quota exceeded."}, remaining=5)
    )
    with pytest.raises(SlipstreamLicenseQuotaError):
        hook.generate_license(CATALOG_TRACK_ID, "user-1")
    assert sim_conn.state.count(method="POST", path_glob=LICENSE) == 1


def test_no_project_and_a_project_named_none_are_different_licenses():
    keys = {LicenseStore("slipstream_default", CATALOG_TRACK_ID, "u", p).variable_key for p in (None, "None", "")}
    assert len(keys) == 3
