"""
Property tests (hypothesis) of the response parsing in ``airflow_provider_slipstream.models``.

Whatever the API (or a proxy in between) answers, the provider must turn it into a model or a
``SlipstreamError`` — never a ``KeyError``/``TypeError``/``ValueError`` that would surface as
an unexplained task failure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_slipstream.exceptions import (
    SlipstreamApiError,
    SlipstreamAuthError,
    SlipstreamError,
    SlipstreamJobNotFoundError,
    SlipstreamTransientError,
    SlipstreamValidationError,
)
from airflow_provider_slipstream.models import (
    DEFAULT_COMPETITOR_LABELS,
    MatchKind,
    RecognitionJob,
    RecognitionTrack,
    UploadTarget,
    check_response,
    classify,
    error_message,
)
from tests.contract import EXPECTED_TRACKS

JOB_ID = "7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10"
TRACK_KEYS = ("id", "title", "artist", "internal", "isrc", "score", "external_label")
JOB_KEYS = ("job_id", "status", "track")
UPLOAD_KEYS = ("upload_url", "storage_key", "expires_in", "content_type")

# Deterministic runs (no example database, no run-to-run randomness): CI failures reproduce.
FAST = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# JSON has no limit on integer size: a 400-digit literal is a valid number and decodes to an int
# too large for a float (the largest float is about 2**1024).
huge_ints = st.integers(min_value=2**1024, max_value=10**400) | st.integers(min_value=-(10**400), max_value=-(2**1024))
json_scalars = st.none() | st.booleans() | st.integers() | huge_ints | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)


def _objects_with(keys: tuple[str, ...], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects that carry (some of) the documented keys, with any JSON value, plus stray keys."""
    return st.builds(
        lambda known, extra: {**extra, **known},
        st.fixed_dictionaries({}, optional=dict.fromkeys(keys, values)),
        st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    )


track_like = _objects_with(TRACK_KEYS, json_values)
job_like = _objects_with(JOB_KEYS, json_values | track_like)
upload_like = _objects_with(UPLOAD_KEYS, json_values)

MODELS = (RecognitionJob, RecognitionTrack, UploadTarget)


def _outcome(func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, SlipstreamError | None]:
    """Call ``func``; a ``SlipstreamError`` is returned, any other exception fails the test."""
    try:
        return func(*args, **kwargs), None
    except SlipstreamError as exc:
        return None, exc


def _parses_or_slipstream_error(model: type, value: Any) -> None:
    parsed, error = _outcome(model.from_api, value)
    if error is None:
        assert isinstance(parsed, model)
    else:
        assert isinstance(error, SlipstreamApiError)
        assert str(error)


def _expected_error(status: int, job_id: str | None) -> type[SlipstreamError]:
    if status == 400:
        return SlipstreamValidationError
    if status in (401, 403):
        return SlipstreamAuthError
    if status == 404 and job_id is not None:
        return SlipstreamJobNotFoundError
    # slipstream-api.md: 429 and 500/502/503/504 are transient; 501/505/... will not heal by retrying.
    if status in (429, 500, 502, 503, 504):
        return SlipstreamTransientError
    return SlipstreamApiError


# --------------------------------------------------------------------------- any JSON value


@FAST
@given(value=json_values, model=st.sampled_from(MODELS))
def test_from_api_any_json_value(value: Any, model: type) -> None:
    _parses_or_slipstream_error(model, value)


@FAST
@given(value=job_like)
def test_job_from_api_job_shaped_objects(value: dict[str, Any]) -> None:
    _parses_or_slipstream_error(RecognitionJob, value)


@FAST
@given(value=track_like)
def test_track_from_api_track_shaped_objects(value: dict[str, Any]) -> None:
    _parses_or_slipstream_error(RecognitionTrack, value)


@FAST
@given(value=upload_like)
def test_upload_target_from_api_shaped_objects(value: dict[str, Any]) -> None:
    _parses_or_slipstream_error(UploadTarget, value)


@FAST
@given(
    value=json_values | job_like,
    status=st.integers(min_value=200, max_value=599),
    job_id=st.sampled_from([None, JOB_ID]),
)
def test_check_response_json_bodies(value: Any, status: int, job_id: str | None) -> None:
    body = json.dumps(value).encode()
    if 200 <= status < 300:
        assert check_response(status, body, "x", job_id=job_id) == value
        return
    _, error = _outcome(check_response, status, body, "x", job_id=job_id)
    assert type(error) is _expected_error(status, job_id)
    assert error.http_status == status
    assert str(status) in str(error)


@FAST
@given(body=st.binary(max_size=300), status=st.integers(min_value=200, max_value=599))
def test_check_response_arbitrary_bytes(body: bytes, status: int) -> None:
    _, error = _outcome(check_response, status, body, "x", job_id=JOB_ID)
    if 200 <= status < 300:
        assert error is None or type(error) is SlipstreamTransientError
    else:
        assert type(error) is _expected_error(status, JOB_ID)
        assert error.http_status == status


@FAST
@given(body=st.binary(max_size=500))
def test_error_message_any_bytes(body: bytes) -> None:
    message = error_message(body)
    assert isinstance(message, str)
    assert message


@FAST
@given(value=json_values)
def test_error_message_any_json(value: Any) -> None:
    message = error_message(json.dumps(value).encode())
    assert isinstance(message, str)
    assert message


@FAST
@given(text=st.text(max_size=300))
def test_error_message_any_text(text: str) -> None:
    message = error_message(text)
    assert isinstance(message, str)
    assert message
    assert "<" not in message or "<" in text


# --------------------------------------------------------------------------- valid-shaped bodies

uuid_text = st.uuids().map(str)
scores = st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6)
labels = st.none() | st.sampled_from(DEFAULT_COMPETITOR_LABELS) | st.text(max_size=30)
valid_track = st.fixed_dictionaries(
    {
        "id": st.none() | uuid_text,
        "title": st.text(),
        "artist": st.text(),
        "internal": st.booleans(),
        "isrc": st.none() | st.text(max_size=12),
        "score": scores,
        "external_label": labels,
    }
)
extras = st.dictionaries(st.text(max_size=10), json_values, max_size=4)
valid_job = st.builds(
    lambda job_extra, track_extra, job_id, status, track: {
        **job_extra,
        "job_id": job_id,
        "status": status,
        "track": None if track is None else {**track_extra, **track},
    },
    extras,
    extras,
    uuid_text,
    st.sampled_from(["queued", "processing", "completed"]) | st.text(max_size=12),
    st.none() | valid_track,
)


EXAMPLE_TRACK: dict[str, Any] = dict(EXPECTED_TRACKS["competitor"] or {})


def _track_with(field: str, value: Any) -> dict[str, Any]:
    return {**EXAMPLE_TRACK, field: value}


@pytest.mark.parametrize("field", TRACK_KEYS)
@settings(FAST, max_examples=40)
@given(value=st.one_of(huge_ints, json_scalars, json_values), job_id=uuid_text)
@example(value=10**400, job_id=JOB_ID)
@example(value="true", job_id=JOB_ID)
def test_one_fuzzed_track_field_parses_or_raises_slipstream_error(field: str, value: Any, job_id: str) -> None:
    """A valid job whose track is valid except for one field, which holds any JSON value."""
    track = _track_with(field, value)
    _parses_or_slipstream_error(RecognitionTrack, track)
    body = {"job_id": job_id, "status": "completed", "track": track}
    decoded = check_response(200, json.dumps(body).encode(), "x", job_id=job_id)
    assert decoded == body
    job, error = _outcome(RecognitionJob.from_api, decoded)
    if error is not None:
        assert isinstance(error, SlipstreamApiError)
    else:
        assert job.track is not None
        assert json.loads(json.dumps(job.to_result())) == job.to_result()


def _norm(label: str) -> str:
    return " ".join(label.split()).casefold()


def _expected_match(track: dict[str, Any] | None, competitor_labels: list[str] | None) -> str:
    if track is None:
        return "no_match"
    if track["internal"]:
        return "internal"
    wanted = DEFAULT_COMPETITOR_LABELS if competitor_labels is None else competitor_labels
    label = track["external_label"]
    if label and _norm(label) in {_norm(x) for x in wanted}:
        return "competitor"
    return "external"


@FAST
@given(body=valid_job, competitor_labels=st.none() | st.lists(st.text(max_size=20), max_size=4))
def test_valid_shaped_jobs_parse_and_round_trip(body: dict[str, Any], competitor_labels: list[str] | None) -> None:
    wire = json.dumps(body).encode()
    job = RecognitionJob.from_api(check_response(200, wire, "the status of a job", job_id=body["job_id"]))

    assert job.job_id == body["job_id"]
    assert job.status == body["status"]
    assert job.is_completed == (body["status"] == "completed")

    track = body["track"]
    expected_track = None
    if track is not None:
        expected_track = {k: track[k] for k in TRACK_KEYS}
        if track["score"] is not None:
            expected_track["score"] = float(track["score"])

    result = job.to_result(competitor_labels)
    assert result == {
        "job_id": body["job_id"],
        "status": body["status"],
        "match": _expected_match(track, competitor_labels),
        "track": expected_track,
    }
    assert json.loads(json.dumps(result)) == result
    if result["track"] is not None and result["track"]["score"] is not None:
        assert isinstance(result["track"]["score"], float)
        assert math.isfinite(result["track"]["score"])


@st.composite
def mangled_labels(draw: st.DrawFn) -> tuple[str, str]:
    """A default label with random letter case and random whitespace runs around its words."""
    label = draw(st.sampled_from(DEFAULT_COMPETITOR_LABELS))
    spaces = st.text(alphabet=" \t\n\u00a0", min_size=1, max_size=3)
    words = []
    for word in label.split():
        flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
        words.append("".join(c.upper() if f else c.lower() for c, f in zip(word, flips, strict=True)))
    lead = draw(st.text(alphabet=" \t", max_size=2))
    tail = draw(st.text(alphabet=" \t", max_size=2))
    return label, lead + "".join(w + draw(spaces) for w in words[:-1]) + words[-1] + tail


@FAST
@given(pair=mangled_labels())
def test_default_competitors_match_whatever_the_case_and_spacing(pair: tuple[str, str]) -> None:
    _, mangled = pair
    track = RecognitionTrack(
        id=None, title="t", artist="a", internal=False, isrc=None, score=99.0, external_label=mangled
    )
    assert classify(track) is MatchKind.COMPETITOR
    assert classify(track, []) is MatchKind.EXTERNAL
    assert classify(track, ["Not A Library"]) is MatchKind.EXTERNAL
