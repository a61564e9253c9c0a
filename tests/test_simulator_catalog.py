"""The simulator's track and license endpoints over real HTTP (plain `requests`).

The `slipstream_simulator` fixture comes from airflow_provider_slipstream.simulator.pytest_plugin.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from typing import Any

import pytest
import requests

from airflow_provider_slipstream.simulator import CATALOG, SCENARIOS, Fault, SimulatorServer
from airflow_provider_slipstream.simulator.catalog import find_track
from airflow_provider_slipstream.simulator.licenses import QuotaExceeded
from airflow_provider_slipstream.simulator.state import LICENSE_PATH, TRACK_ROUTE

KEY = "sim-partner-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GOLDEN_HOUR = "11111111-1111-1111-1111-111111111111"
TONIGHT_WE_DANCE = "e9463c97-8ca9-4eae-8b7f-e92e8d4ee08b"
UNKNOWN_TRACK = "7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10"
NOT_FOUND = {"detail": "Not found."}
USER = {"X-User-ID": "user-12345"}
FRESH_USAGE = {"daily_used": 0, "monthly_used": 0, "daily_limit": 1000, "monthly_limit": 30000}


def track_url(sim: SimulatorServer, track_id: str, language: str = "en") -> str:
    return f"{sim.url}/api/v4/{language}/tracks/{track_id}/"


def generate(sim: SimulatorServer, body: Any = None, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    payload = {"track_id": GOLDEN_HOUR} if body is None else body
    sent = {**AUTH, **USER} if headers is None else headers
    kw.setdefault("timeout", 10)
    return requests.post(sim.url + LICENSE_PATH, json=payload, headers=sent, **kw)


def configure(sim: SimulatorServer, **changes: Any) -> requests.Response:
    return requests.put(sim.url + "/_sim/config", json=changes, timeout=10)


def assert_html_404(response: requests.Response) -> None:
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Not Found</h1>" in response.text


# -- the catalog -------------------------------------------------------------------------


def test_the_internal_scenario_track_is_in_the_catalog_with_all_documented_fields(
    slipstream_simulator: SimulatorServer,
) -> None:
    response = requests.get(track_url(slipstream_simulator, GOLDEN_HOUR), headers=AUTH, timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body == CATALOG[GOLDEN_HOUR]
    internal = SCENARIOS["internal"]
    assert internal is not None
    assert (body["id"], body["name"], body["artist"]["name"]) == (internal["id"], internal["title"], "The Coast")
    assert body["name"] == "Golden Hour"
    assert body["library_name"] == "Slipstream Originals"
    assert [w["ipi"] for w in body["writers"]] == ["00052210040", "00698745210"]
    assert sum(w["share"] for w in body["writers"]) == 100
    assert len(body["publishers"]) == 1
    assert body["short_url"] == f"https://slipstreammusic.com/t/{body['short_id']}"
    assert body["audio_url"].startswith("/")
    assert set(body["album"]) == {"id", "url", "name", "slug", "all_image_sizes", "blurhash"}
    assert set(body) == {
        "id", "name", "description", "length", "tempo", "key", "is_explicit", "is_free", "vocals",
        "audio_url", "short_id", "short_url", "genre_name", "subgenre_name", "mood_name",
        "secondary_mood_name", "artist", "album", "is_sfx", "has_stems", "cover", "library_name",
        "lyrics", "jp_title", "writers", "publishers",
    }  # fmt: skip
    assert "isrc" not in body


def test_the_second_track_and_any_uuid_spelling(slipstream_simulator: SimulatorServer) -> None:
    body = requests.get(track_url(slipstream_simulator, TONIGHT_WE_DANCE.upper()), headers=AUTH, timeout=10).json()
    assert (body["id"], body["name"], body["length"], body["tempo"]) == (TONIGHT_WE_DANCE, "Tonight We Dance", 87, 106)
    assert body["short_url"] == "https://slipstreammusic.com/t/tnwdnc"


def test_a_returned_track_is_a_copy() -> None:
    track = find_track(GOLDEN_HOUR)
    assert track is not None
    track["writers"].clear()
    assert len(CATALOG[GOLDEN_HOUR]["writers"]) == 2


@pytest.mark.parametrize(
    ("language", "track_id"), [("fr", GOLDEN_HOUR), ("en", UNKNOWN_TRACK), ("en", "golden-hour"), ("en", "123")]
)
def test_unknown_tracks_and_languages_are_404(
    slipstream_simulator: SimulatorServer, language: str, track_id: str
) -> None:
    response = requests.get(track_url(slipstream_simulator, track_id, language), headers=AUTH, timeout=10)
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


def test_a_track_without_the_trailing_slash_is_the_django_404_page(slipstream_simulator: SimulatorServer) -> None:
    url = track_url(slipstream_simulator, GOLDEN_HOUR).rstrip("/")
    assert_html_404(requests.get(url, headers=AUTH, timeout=10, allow_redirects=False))


# -- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["track", "license"])
@pytest.mark.parametrize(
    ("authorization", "status", "detail"),
    [
        (None, 401, "Authentication credentials were not provided."),
        (f"Token {KEY}", 401, "Authentication credentials were not provided."),
        ("Bearer someone-elses-key", 403, "Invalid partner API key."),
    ],
)
def test_both_endpoints_need_the_partner_key(
    slipstream_simulator: SimulatorServer, endpoint: str, authorization: str | None, status: int, detail: str
) -> None:
    # Authentication comes first: no X-User-ID either.
    headers = {} if authorization is None else {"Authorization": authorization}
    if endpoint == "track":
        response = requests.get(track_url(slipstream_simulator, GOLDEN_HOUR), headers=headers, timeout=10)
    else:
        response = generate(slipstream_simulator, headers=headers)
    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert slipstream_simulator.state.licenses == []


# -- generating a license ----------------------------------------------------------------


def test_a_license_has_the_documented_body(slipstream_simulator: SimulatorServer) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    response = generate(slipstream_simulator, {"track_id": GOLDEN_HOUR, "project_name": "Summer vlog"})
    assert response.status_code == 200
    body = response.json()
    license_ = body.pop("license")
    assert body == {"success": True, "usage": {**FRESH_USAGE, "daily_used": 1, "monthly_used": 1}}
    license_id = license_.pop("license_id")
    assert re.fullmatch(r"[0-9a-f]{32}", license_id)
    created_at = license_.pop("created_at")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created_at)
    created = dt.datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    assert before - dt.timedelta(milliseconds=1) <= created <= dt.datetime.now(dt.timezone.utc)
    assert license_ == {
        "license_url": license_id,
        "track_id": GOLDEN_HOUR,
        "track_name": "Golden Hour",
        "artist_name": "The Coast",
        "user_id": "user-12345",
        "expires_at": None,
    }
    [record] = slipstream_simulator.state.licenses
    assert (record.license_id, record.track_id, record.user_id, record.project_name) == (
        license_id,
        GOLDEN_HOUR,
        "user-12345",
        "Summer vlog",
    )


def test_every_call_is_a_new_license_that_spends_quota(slipstream_simulator: SimulatorServer) -> None:
    first, second = (generate(slipstream_simulator).json() for _ in range(2))
    assert first["license"]["license_id"] != second["license"]["license_id"]
    assert [first["usage"]["daily_used"], second["usage"]["daily_used"]] == [1, 2]
    assert second["usage"]["monthly_used"] == 2
    other = generate(slipstream_simulator, {"track_id": TONIGHT_WE_DANCE.replace("-", "")}).json()["license"]
    assert (other["track_id"], other["track_name"], other["artist_name"]) == (
        TONIGHT_WE_DANCE,
        "Tonight We Dance",
        "Neon Avenue",
    )
    assert len(slipstream_simulator.state.licenses) == 3


@pytest.mark.parametrize("user_id", [None, ""], ids=["missing", "empty"])
def test_x_user_id_is_required(slipstream_simulator: SimulatorServer, user_id: str | None) -> None:
    headers = AUTH if user_id is None else {**AUTH, "X-User-ID": user_id}
    response = generate(slipstream_simulator, headers=headers)
    assert (response.status_code, response.json()) == (400, {"detail": "X-User-ID header is required."})
    assert slipstream_simulator.state.license_usage() == FRESH_USAGE


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"track_id": ["This field is required."]}),
        ({"project_name": "x"}, {"track_id": ["This field is required."]}),
        ({"track_id": None}, {"track_id": ["This field may not be null."]}),
        ({"track_id": "golden-hour"}, {"track_id": ["Must be a valid UUID."]}),
        ({"track_id": 42}, {"track_id": ["Must be a valid UUID."]}),
        ({"track_id": GOLDEN_HOUR, "project_name": "p" * 256}, {"project_name": [
            "Ensure this field has no more than 255 characters."
        ]}),
        ({"track_id": GOLDEN_HOUR, "project_name": 7}, {"project_name": ["Not a valid string."]}),
        ({"track_id": "x", "project_name": ["p"]}, {
            "track_id": ["Must be a valid UUID."], "project_name": ["Not a valid string."]
        }),
        (["not", "an", "object"], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
)  # fmt: skip
def test_invalid_bodies_are_400(slipstream_simulator: SimulatorServer, body: Any, errors: dict[str, Any]) -> None:
    response = generate(slipstream_simulator, body)
    assert (response.status_code, response.json()) == (400, errors)
    assert slipstream_simulator.state.licenses == []


def test_project_name_may_be_255_characters_or_null(slipstream_simulator: SimulatorServer) -> None:
    for project_name in ("p" * 255, None):
        response = generate(slipstream_simulator, {"track_id": GOLDEN_HOUR, "project_name": project_name})
        assert response.status_code == 200, response.text
    assert [r.project_name for r in slipstream_simulator.state.licenses] == ["p" * 255, None]


def test_a_body_that_is_not_json_is_a_parse_error(slipstream_simulator: SimulatorServer) -> None:
    headers = {**AUTH, **USER, "Content-Type": "application/json"}
    response = requests.post(slipstream_simulator.url + LICENSE_PATH, data=b"{track_id", headers=headers, timeout=10)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error - ")


def test_an_unknown_track_is_404_and_spends_nothing(slipstream_simulator: SimulatorServer) -> None:
    response = generate(slipstream_simulator, {"track_id": UNKNOWN_TRACK})
    assert (response.status_code, response.json()) == (404, NOT_FOUND)
    assert slipstream_simulator.state.license_usage() == FRESH_USAGE


def test_the_license_path_has_no_trailing_slash(slipstream_simulator: SimulatorServer) -> None:
    url = slipstream_simulator.url + LICENSE_PATH
    sent = {**AUTH, **USER}
    assert_html_404(requests.post(url + "/", json={"track_id": GOLDEN_HOUR}, headers=sent, timeout=10))
    response = requests.get(url, headers=sent, timeout=10)
    assert (response.status_code, response.json()) == (405, {"detail": 'Method "GET" not allowed.'})
    assert slipstream_simulator.state.licenses == []


# -- quota -------------------------------------------------------------------------------


def test_the_daily_cap_refuses_with_retry_after_until_utc_midnight(slipstream_simulator: SimulatorServer) -> None:
    assert configure(slipstream_simulator, license_daily_limit=3, license_daily_used=2).status_code == 200
    assert generate(slipstream_simulator).json()["usage"] == {
        "daily_used": 3,
        "monthly_used": 1,
        "daily_limit": 3,
        "monthly_limit": 30000,
    }
    response = generate(slipstream_simulator)
    now = dt.datetime.now(dt.timezone.utc)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    assert response.status_code == 429
    assert abs(int(response.headers["Retry-After"]) - math.ceil((midnight - now).total_seconds())) <= 2
    assert response.json() == {
        "success": False,
        "error": {
            "code": "quota_exceeded",
            "message": "Daily license limit of 3 reached.",
            "resets_at": midnight.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "usage": {"daily_used": 3, "monthly_used": 1, "daily_limit": 3, "monthly_limit": 30000},
    }
    # A refused call spends nothing; raising the cap lets the next one through.
    assert len(slipstream_simulator.state.licenses) == 1
    configure(slipstream_simulator, license_daily_limit=4)
    assert generate(slipstream_simulator).json()["usage"]["daily_used"] == 4


def test_the_monthly_cap_refuses_until_the_first_of_next_month(slipstream_simulator: SimulatorServer) -> None:
    configure(slipstream_simulator, license_monthly_limit=50, license_monthly_used=50)
    response = generate(slipstream_simulator)
    now = dt.datetime.now(dt.timezone.utc)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    first = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    assert response.status_code == 429
    assert abs(int(response.headers["Retry-After"]) - math.ceil((first - now).total_seconds())) <= 2
    error = response.json()["error"]
    assert error["message"] == "Monthly license limit of 50 reached."
    assert error["resets_at"] == first.strftime("%Y-%m-%dT00:00:00Z")
    assert response.json()["usage"]["monthly_used"] == 50


def test_the_counters_restart_with_each_utc_day_and_month(slipstream_simulator: SimulatorServer) -> None:
    state = slipstream_simulator.state
    state.configure(license_daily_limit=1)
    track = CATALOG[GOLDEN_HOUR]
    last_second = dt.datetime(2026, 4, 30, 23, 59, 59, tzinfo=dt.timezone.utc)
    assert state.generate_license(track, "u", None, now=last_second)["usage"]["daily_used"] == 1
    with pytest.raises(QuotaExceeded) as refused:
        state.generate_license(track, "u", None, now=last_second)
    assert refused.value.retry_after == 1
    assert refused.value.body["error"]["resets_at"] == "2026-05-01T00:00:00Z"
    may_first = dt.datetime(2026, 5, 1, 0, 0, 0, 500_000, tzinfo=dt.timezone.utc)
    assert state.generate_license(track, "u", None, now=may_first)["usage"] == {
        "daily_used": 1,
        "monthly_used": 1,
        "daily_limit": 1,
        "monthly_limit": 30000,
    }
    may_second = dt.datetime(2026, 5, 2, 12, tzinfo=dt.timezone.utc)
    usage = state.generate_license(track, "u", None, now=may_second)["usage"]
    assert (usage["daily_used"], usage["monthly_used"]) == (1, 2)


# -- control, counters, reset ------------------------------------------------------------


def test_config_validates_the_license_fields(slipstream_simulator: SimulatorServer) -> None:
    response = configure(slipstream_simulator, license_daily_limit=10, license_monthly_limit=20)
    assert response.status_code == 200
    config = response.json()
    assert (config["license_daily_limit"], config["license_monthly_limit"]) == (10, 20)
    for bad in ({"license_daily_limit": -1}, {"license_monthly_used": "5"}, {"license_daily_used": True}):
        response = configure(slipstream_simulator, **bad)
        assert response.status_code == 400
        assert response.json()["detail"].startswith(next(iter(bad)))
    assert slipstream_simulator.state.license_usage() == {**FRESH_USAGE, "daily_limit": 10, "monthly_limit": 20}


def test_stats_count_licenses_and_the_new_routes_and_reset_clears_them(slipstream_simulator: SimulatorServer) -> None:
    sim = slipstream_simulator
    configure(sim, license_daily_limit=7, license_monthly_used=100)
    requests.get(track_url(sim, GOLDEN_HOUR), headers=AUTH, timeout=10)
    requests.get(track_url(sim, UNKNOWN_TRACK, "fr"), headers=AUTH, timeout=10)
    generate(sim)
    generate(sim, headers=AUTH)  # 400, counted as a request, not a license
    stats = requests.get(sim.url + "/_sim/stats", timeout=10).json()
    assert stats == {
        "jobs_created": 0,
        "licenses": 1,
        "requests": 4,
        "by_route": {f"GET {TRACK_ROUTE}": 2, f"POST {LICENSE_PATH}": 2},
    }
    assert requests.post(sim.url + "/_sim/reset", timeout=10).status_code == 204
    assert requests.get(sim.url + "/_sim/stats", timeout=10).json()["licenses"] == 0
    assert sim.state.licenses == []
    assert sim.state.license_usage() == {**FRESH_USAGE, "daily_limit": 7}  # counters cleared, caps kept


# -- faults on the new paths -------------------------------------------------------------


def test_a_5xx_burst_on_the_license_path_spends_nothing(slipstream_simulator: SimulatorServer) -> None:
    state = slipstream_simulator.state
    state.add_fault(Fault("status", path=LICENSE_PATH, method="GET", status=500))  # other method: never applies
    state.add_fault(Fault("status", path=LICENSE_PATH, method="POST", status=503, remaining=2))
    assert [generate(slipstream_simulator).status_code for _ in range(3)] == [503, 503, 200]
    assert len(state.licenses) == 1
    assert state.license_usage()["daily_used"] == 1
    assert [r.fault for r in state.requests] == ["status", "status", None]


def test_a_429_fault_and_a_glob_fault_on_the_track_path(slipstream_simulator: SimulatorServer) -> None:
    sim = slipstream_simulator
    sim.state.add_fault(Fault("status", path=LICENSE_PATH, status=429, headers={"Retry-After": "3"}, remaining=1))
    response = generate(sim)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")
    assert response.json() == {"detail": "Request was throttled. Expected available in 3 seconds."}
    sim.state.add_fault(Fault("malformed", path="/api/v4/*/tracks/*/", remaining=1))
    response = requests.get(track_url(sim, GOLDEN_HOUR), headers=AUTH, timeout=10)
    with pytest.raises(ValueError, match=r"Expecting|Unterminated|Invalid"):
        response.json()
    assert sim.state.licenses == []


def test_a_dropped_license_call_never_reached_the_handler(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.add_fault(Fault("drop", path=LICENSE_PATH, remaining=1))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        generate(slipstream_simulator)
    assert slipstream_simulator.state.licenses == []
    assert slipstream_simulator.state.license_usage() == FRESH_USAGE
    assert generate(slipstream_simulator).status_code == 200


def test_a_held_license_call_exists_although_its_answer_was_lost(slipstream_simulator: SimulatorServer) -> None:
    state = slipstream_simulator.state
    state.add_fault(Fault("hold", path=LICENSE_PATH, method="POST", seconds=1.0, remaining=1))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        generate(slipstream_simulator, timeout=0.3)
    assert time.monotonic() - started < 0.9
    [lost] = state.licenses
    assert (lost.track_id, lost.user_id) == (GOLDEN_HOUR, "user-12345")
    assert state.license_usage()["daily_used"] == 1
    # A blind resend is a second license: the quota pays twice.
    assert generate(slipstream_simulator).json()["usage"]["daily_used"] == 2
    assert len(state.licenses) == 2
