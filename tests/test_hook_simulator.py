"""
SlipstreamHook against the running simulator (a real HTTP server, no mocks): every endpoint,
every documented error, the retry policy, presigned-upload hygiene and object-storage paths.

The ``hook`` fixture (tests/conftest.py) points ``slipstream_default`` at a fresh simulator with
fast retries: ``max_retries`` 3, backoff 0.05-0.2 s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import uuid
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import fsspec
import pytest
import requests
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io import attach

from airflow_provider_slipstream.exceptions import (
    SlipstreamApiError,
    SlipstreamAuthError,
    SlipstreamJobNotFoundError,
    SlipstreamJobTimeoutError,
    SlipstreamSubmitUncertainError,
    SlipstreamTransientError,
    SlipstreamValidationError,
)
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.models import RecognitionJob
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import Fault
from tests.contract import EXPECTED_TRACKS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_slipstream.simulator import SimulatorServer

KEY = "sim-partner-key"  # the simulator's default partner key, used by the sim_conn fixture
SUBMIT = "/api/v4/video-recognition/"
UPLOAD_URL = "/api/v4/video-recognition/upload-url/"
# A glob that matches the submit path only (a plain fault path is a prefix, which would also
# match upload-url/ and job paths).
SUBMIT_ONLY = "/api/v4/video-recognition[/]"
JOB_GLOB = "/api/v4/video-recognition/*/"
SUBMIT_ROUTE = "POST /api/v4/video-recognition/"
UPLOAD_URL_ROUTE = "POST /api/v4/video-recognition/upload-url/"
PUT_ROUTE = "PUT /sim-bucket/temp/{storage_key}"
GET_ROUTE = "GET /api/v4/video-recognition/{job_id}/"
UNKNOWN_JOB = "7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10"
SAMPLES = sample_videos()


# -- helpers -----------------------------------------------------------------------------


@pytest.fixture
def hook(hook: SlipstreamHook) -> Iterator[SlipstreamHook]:
    """conftest's hook; its keep-alive connections are closed before the simulator stops."""
    yield hook
    hook.session.close()


def text_of(exc: BaseException, *fragments: str, secrets: tuple[str, ...] = (KEY,)) -> str:
    """The exception message; it must hold every fragment and never a partner key."""
    text = str(exc)
    for secret in secrets:
        assert secret not in text, f"partner key leaked into {type(exc).__name__}: {text}"
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    return text


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def routes(sim: SimulatorServer) -> dict[str, int]:
    return sim.state.stats()["by_route"]


def instant_jobs(sim: SimulatorServer) -> None:
    """New jobs complete at once (the job timings are taken when a job is created)."""
    sim.state.configure(queued_seconds=0, processing_seconds=0)


def completed_job(hook: SlipstreamHook, sim: SimulatorServer, kind: str = "internal") -> RecognitionJob:
    instant_jobs(sim)
    return hook.submit_file(SAMPLES[kind])


def record_responses(hook: SlipstreamHook) -> list[tuple[float, float, int]]:
    """(monotonic time, wall time, status) of every response the hook's session receives."""
    seen: list[tuple[float, float, int]] = []

    def on_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        seen.append((time.monotonic(), time.time(), response.status_code))

    hook.session.hooks["response"].append(on_response)
    return seen


# -- the endpoints -----------------------------------------------------------------------


def test_submit_file_is_one_authenticated_multipart_post(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    job = hook.submit_file(SAMPLES["internal"])

    assert job.status == "queued"
    assert job.track is None
    assert str(uuid.UUID(job.job_id)) == job.job_id
    assert routes(sim_conn) == {SUBMIT_ROUTE: 1}
    (post,) = sim_conn.state.requests
    assert post.headers["authorization"] == "Bearer [redacted]"
    assert post.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert post.status == 201
    stored = sim_conn.state.jobs[job.job_id]
    assert stored.filename == "internal_golden_hour.mp4"
    assert stored.sha256 == sha256_of(SAMPLES["internal"])
    assert sim_conn.state.jobs_created == 1


def test_presigned_upload_step_by_step(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    video = SAMPLES["competitor"]  # a .mov: the pinned Content-Type is video/quicktime

    target = hook.create_upload_url(video.name)
    assert target.content_type == "video/quicktime"
    assert target.expires_in == 600
    assert target.storage_key.startswith("video-recognition/")
    assert target.storage_key.endswith("_" + video.name)
    assert target.upload_url.startswith(sim_conn.s3_url + "/sim-bucket/temp/video-recognition/")

    hook.upload_to_url(target, video)
    upload = sim_conn.state.uploads[target.storage_key]
    assert upload.state == "uploaded"
    assert upload.size == video.stat().st_size
    assert upload.sha256 == sha256_of(video)

    job = hook.submit_storage_key(target.storage_key)
    assert job.status == "queued"
    assert routes(sim_conn) == {UPLOAD_URL_ROUTE: 1, PUT_ROUTE: 1, SUBMIT_ROUTE: 1}
    submit = [r for r in sim_conn.state.requests if r.method == "POST" and r.path == SUBMIT]
    assert submit[0].headers["content-type"] == "application/json"
    assert sim_conn.state.jobs[job.job_id].scenario == "competitor"


@pytest.mark.parametrize(
    ("method", "expected_routes"),
    [
        ("direct", {SUBMIT_ROUTE: 1}),
        ("presigned", {UPLOAD_URL_ROUTE: 1, PUT_ROUTE: 1, SUBMIT_ROUTE: 1}),
        ("auto", {SUBMIT_ROUTE: 1}),  # a small clip under the default 25 MB threshold
    ],
)
def test_submit_video_methods(
    hook: SlipstreamHook, sim_conn: SimulatorServer, method: str, expected_routes: dict[str, int]
) -> None:
    job = hook.submit_video(SAMPLES["external"], method=method)  # type: ignore[arg-type]

    assert routes(sim_conn) == expected_routes
    assert sim_conn.state.jobs_created == 1
    stored = sim_conn.state.jobs[job.job_id]
    assert stored.scenario == "external"
    assert stored.sha256 == sha256_of(SAMPLES["external"])


@pytest.mark.parametrize(
    ("threshold_delta", "expected_routes"),
    [
        (-1, {UPLOAD_URL_ROUTE: 1, PUT_ROUTE: 1, SUBMIT_ROUTE: 1}),  # file larger than the threshold
        (0, {SUBMIT_ROUTE: 1}),  # exactly at the threshold: still direct
    ],
)
def test_auto_picks_presigned_above_the_threshold(
    sim_conn: SimulatorServer, threshold_delta: int, expected_routes: dict[str, int]
) -> None:
    video = SAMPLES["internal"]
    hook = SlipstreamHook(presigned_threshold_bytes=video.stat().st_size + threshold_delta)

    job = hook.submit_video(video, method="auto")

    assert routes(sim_conn) == expected_routes
    assert sim_conn.state.jobs[job.job_id].sha256 == sha256_of(video)


def test_get_job_goes_queued_processing_completed(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    sim_conn.state.configure(queued_seconds=0.4, processing_seconds=0.4)
    job_id = hook.submit_file(SAMPLES["internal"]).job_id

    statuses: list[str] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = hook.get_job(job_id)
        if not statuses or statuses[-1] != job.status:
            statuses.append(job.status)
        if job.is_completed:
            break
        time.sleep(0.02)

    assert statuses == ["queued", "processing", "completed"]
    assert job.job_id == job_id
    assert job.track is not None
    assert job.track.title == "Golden Hour"


def test_wait_for_job_polls_until_completed(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    job_id = hook.submit_file(SAMPLES["competitor"]).job_id  # fixture timings: 0.2 s queued, 0.5 s processing

    job = hook.wait_for_job(job_id, poll_interval=0.05, timeout=10)

    assert job.status == "completed"
    assert job.to_result()["match"] == "competitor"
    gets = [r for r in sim_conn.state.requests if r.method == "GET"]
    assert len(gets) >= 3  # at least one poll while queued or processing, one when completed
    assert {r.status for r in gets} == {200}


def test_wait_for_job_times_out_on_a_stalled_job(
    hook: SlipstreamHook, sim_conn: SimulatorServer, tmp_path: Path
) -> None:
    video = tmp_path / "stall_clip.mp4"
    video.write_bytes(SAMPLES["internal"].read_bytes())
    job_id = hook.submit_file(video).job_id

    with pytest.raises(SlipstreamJobTimeoutError) as exc_info:
        hook.wait_for_job(job_id, poll_interval=0.05, timeout=0.3)

    text_of(exc_info.value, job_id, "'processing'")
    assert sim_conn.state.count("GET", JOB_GLOB) >= 1


def test_test_connection_ok(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    ok, message = hook.test_connection()

    assert ok is True
    assert sim_conn.url in message
    assert KEY not in message
    # Without a key 401, with it 404 for a job that cannot exist: what only the API answers.
    anonymous, keyed = sim_conn.state.requests
    assert (anonymous.method, anonymous.status, "authorization" in anonymous.headers) == ("GET", 401, False)
    assert (keyed.method, keyed.status) == ("GET", 404)
    assert keyed.headers["authorization"] == "Bearer [redacted]"


def test_test_connection_false_with_a_wrong_key(sim_conn: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "not-the-partner-key-42"
    conn = {"conn_type": "slipstream", "host": sim_conn.url, "password": wrong, "extra": {"max_retries": 3}}
    monkeypatch.setenv("AIRFLOW_CONN_SLIPSTREAM_DEFAULT", json.dumps(conn))

    ok, message = SlipstreamHook().test_connection()

    assert ok is False
    assert "403" in message
    assert "Invalid partner API key." in message
    assert wrong not in message
    assert KEY not in message
    assert sim_conn.state.count() == 2  # the read without a key, then the one with it: no retry


@pytest.mark.parametrize("kind", ["internal", "competitor", "external", "no_match"])
def test_scenario_results_match_the_contract(hook: SlipstreamHook, sim_conn: SimulatorServer, kind: str) -> None:
    instant_jobs(sim_conn)
    job = hook.submit_video(SAMPLES[kind])

    done = hook.wait_for_job(job.job_id, poll_interval=0.05, timeout=10)

    assert done.to_result() == {
        "job_id": job.job_id,
        "status": "completed",
        "match": kind,
        "track": EXPECTED_TRACKS[kind],
    }
    json.dumps(done.to_result())  # XCom-serialisable as is


# -- documented errors -------------------------------------------------------------------

FILE_EXTENSION = "File extension is not allowed. Allowed extensions are: mp4, mov, avi, mpeg."
FILENAME_EXTENSION = "File extension must be one of: mov, mpeg, mp4, avi."
EXACTLY_ONE = "Provide exactly one of `file` or `storage_key`."


def test_400_bad_file_extension_from_the_server(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    # The local check would stop a bad extension; the fault makes the server say it instead.
    sim_conn.state.add_fault(Fault("status", path=SUBMIT_ONLY, status=400, body={"file": [FILE_EXTENSION]}))

    with pytest.raises(SlipstreamValidationError) as exc_info:
        hook.submit_file(SAMPLES["internal"])

    text_of(exc_info.value, "(400)", f"file: {FILE_EXTENSION}")
    assert exc_info.value.http_status == 400
    assert sim_conn.state.count("POST", SUBMIT) == 1
    assert sim_conn.state.jobs_created == 0


def test_400_bad_filename_extension_for_an_upload_url(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    sim_conn.state.add_fault(Fault("status", path=UPLOAD_URL, status=400, body={"filename": [FILENAME_EXTENSION]}))

    with pytest.raises(SlipstreamValidationError) as exc_info:
        hook.create_upload_url("clip.mp4")

    text_of(exc_info.value, "(400)", f"filename: {FILENAME_EXTENSION}")
    assert sim_conn.state.count() == 1


def test_400_file_too_large_from_the_server(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    sim_conn.state.configure(max_file_bytes=10)  # the sample clips are larger than that

    with pytest.raises(SlipstreamValidationError) as exc_info:
        hook.submit_file(SAMPLES["internal"])

    text_of(exc_info.value, "file: File size cannot exceed 10 bytes.")
    assert sim_conn.state.count("POST", SUBMIT) == 1


def test_400_storage_key_the_server_does_not_know(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    with pytest.raises(SlipstreamValidationError) as exc_info:
        hook.submit_storage_key("video-recognition/never_uploaded_clip.mp4")

    text_of(exc_info.value, "storage_key: No uploaded file was found for this storage key.")
    assert exc_info.value.http_status == 400
    assert sim_conn.state.count("POST", SUBMIT) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"detail": EXACTLY_ONE}, EXACTLY_ONE),
        ({"success": False, "error": {"code": "invalid_input", "message": "Bad video."}}, "invalid_input: Bad video."),
    ],
    ids=["drf-detail", "general-envelope"],
)
def test_400_bodies_are_parsed_into_the_message(
    hook: SlipstreamHook, sim_conn: SimulatorServer, body: dict[str, Any], expected: str
) -> None:
    sim_conn.state.add_fault(Fault("status", path=SUBMIT_ONLY, status=400, body=body))

    with pytest.raises(SlipstreamValidationError) as exc_info:
        hook.submit_file(SAMPLES["internal"])

    text = text_of(exc_info.value, expected)
    assert "{" not in text  # parsed, not the raw JSON


def test_401_is_an_auth_error(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    # The hook always sends the key, so "no key" (401) can only come from a fault.
    sim_conn.state.add_fault(
        Fault("status", status=401, body={"detail": "Authentication credentials were not provided."})
    )

    with pytest.raises(SlipstreamAuthError) as exc_info:
        hook.get_job(UNKNOWN_JOB)

    text_of(exc_info.value, "401", "Authentication credentials were not provided.", "password field")
    assert exc_info.value.http_status == 401
    assert sim_conn.state.count() == 1


@pytest.mark.parametrize("call", ["get_job", "submit_file", "create_upload_url"])
def test_403_wrong_key_is_an_auth_error(hook: SlipstreamHook, sim_conn: SimulatorServer, call: str) -> None:
    sim_conn.state.set_api_key("rotated-partner-key")  # the connection's key is no longer valid
    action = {
        "get_job": lambda: hook.get_job(UNKNOWN_JOB),
        "submit_file": lambda: hook.submit_file(SAMPLES["internal"]),
        "create_upload_url": lambda: hook.create_upload_url("clip.mp4"),
    }[call]

    with pytest.raises(SlipstreamAuthError) as exc_info:
        action()

    text_of(exc_info.value, "403", "Invalid partner API key.", secrets=(KEY, "rotated-partner-key"))
    assert exc_info.value.http_status == 403
    assert sim_conn.state.count() == 1
    assert sim_conn.state.jobs_created == 0


def test_404_unknown_job(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    with pytest.raises(SlipstreamJobNotFoundError) as exc_info:
        hook.get_job(UNKNOWN_JOB)

    text_of(exc_info.value, UNKNOWN_JOB, "404", "Submit the video again")
    assert exc_info.value.http_status == 404
    assert sim_conn.state.count() == 1


def test_404_expired_job(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    job = completed_job(hook, sim_conn)
    assert hook.get_job(job.job_id).is_completed
    assert sim_conn.state.expire_job(job.job_id)

    with pytest.raises(SlipstreamJobNotFoundError) as exc_info:
        hook.get_job(job.job_id)

    text_of(exc_info.value, job.job_id, "expired")
    assert sim_conn.state.count("GET", JOB_GLOB) == 2


def test_404_message_carries_the_server_message(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    # Every other error message quotes what the server said; a 404 should too (e.g. a wrong
    # base URL answers an HTML "Not Found" page that is worth seeing).
    sim_conn.state.add_fault(Fault("status", status=404, body={"detail": "Job result expired on 2026-01-01."}))

    with pytest.raises(SlipstreamJobNotFoundError) as exc_info:
        hook.get_job(UNKNOWN_JOB)

    text_of(exc_info.value, "Job result expired on 2026-01-01.")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, SlipstreamValidationError),
        (401, SlipstreamAuthError),
        (403, SlipstreamAuthError),
        (404, SlipstreamJobNotFoundError),
    ],
)
def test_no_retry_on_client_errors_for_get(
    hook: SlipstreamHook, sim_conn: SimulatorServer, status: int, error: type[Exception]
) -> None:
    sim_conn.state.add_fault(Fault("status", method="GET", status=status))  # unlimited

    with pytest.raises(error) as exc_info:
        hook.get_job(UNKNOWN_JOB)

    text_of(exc_info.value, str(status))
    assert sim_conn.state.count() == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, SlipstreamValidationError),
        (401, SlipstreamAuthError),
        (403, SlipstreamAuthError),
        (404, SlipstreamApiError),
    ],
)
def test_no_retry_on_client_errors_for_submit(
    hook: SlipstreamHook, sim_conn: SimulatorServer, status: int, error: type[Exception]
) -> None:
    sim_conn.state.add_fault(Fault("status", method="POST", status=status))

    with pytest.raises(error) as exc_info:
        hook.submit_file(SAMPLES["internal"])

    assert not isinstance(exc_info.value, SlipstreamTransientError)
    text_of(exc_info.value, str(status))
    assert sim_conn.state.count("POST") == 1


# -- retries -----------------------------------------------------------------------------


def test_get_retries_503_twice_then_succeeds(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    job = completed_job(hook, sim_conn)
    fault = sim_conn.state.add_fault(Fault("status", method="GET", status=503, remaining=2))

    got = hook.get_job(job.job_id)

    assert got.is_completed
    assert fault.remaining == 0
    gets = [(r.status, r.fault) for r in sim_conn.state.requests if r.method == "GET"]
    assert gets == [(503, "status"), (503, "status"), (200, None)]


def test_429_retry_after_seconds_is_honoured(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    job = completed_job(hook, sim_conn)
    sim_conn.state.add_fault(Fault("status", method="GET", status=429, headers={"Retry-After": "1"}, remaining=1))
    seen = record_responses(hook)

    assert hook.get_job(job.job_id).is_completed

    assert [status for *_, status in seen] == [429, 200]
    gap = seen[1][0] - seen[0][0]
    print(f"\nRetry-After: 1 -> measured gap between the 429 and the retry's answer: {gap:.3f} s")
    # The connection's own backoff is at most 0.2 s, so >= ~1 s can only come from the header.
    assert 0.95 <= gap < 5.0, f"gap {gap:.3f} s"
    assert sim_conn.state.count("GET") == 2


def test_429_retry_after_http_date_is_honoured(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    job = completed_job(hook, sim_conn)
    retry_at = math.floor(time.time()) + 2  # HTTP dates have whole seconds
    sim_conn.state.add_fault(
        Fault(
            "status", method="GET", status=429, headers={"Retry-After": formatdate(retry_at, usegmt=True)}, remaining=1
        )
    )
    seen = record_responses(hook)

    assert hook.get_job(job.job_id).is_completed

    assert [status for *_, status in seen] == [429, 200]
    gap = seen[1][0] - seen[0][0]
    asked = retry_at - seen[0][1]  # seconds from the 429's arrival to the requested date (1-2 s)
    print(f"\nRetry-After: <HTTP date {asked:.3f} s ahead> -> measured gap {gap:.3f} s")
    assert gap >= asked - 0.05, f"gap {gap:.3f} s, asked {asked:.3f} s"
    assert 0.9 <= gap < 6.0, f"gap {gap:.3f} s"


def test_retry_budget_exhausted(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    sim_conn.state.add_fault(Fault("status", method="GET", status=503))  # unlimited

    with pytest.raises(SlipstreamTransientError) as exc_info:
        hook.get_job(UNKNOWN_JOB)

    text_of(exc_info.value, "503", "Service Unavailable.")
    assert exc_info.value.http_status == 503
    max_retries = hook.config.retry.max_retries
    assert max_retries == 3
    assert sim_conn.state.count("GET") == max_retries + 1


@pytest.mark.parametrize("status", [429, 503])
def test_submit_is_resent_after_a_refusal(hook: SlipstreamHook, sim_conn: SimulatorServer, status: int) -> None:
    sim_conn.state.add_fault(Fault("status", path=SUBMIT_ONLY, method="POST", status=status, remaining=1))

    job = hook.submit_file(SAMPLES["internal"])

    assert sim_conn.state.count("POST", SUBMIT) == 2
    assert sim_conn.state.jobs_created == 1
    assert list(sim_conn.state.jobs) == [job.job_id]


def test_presigned_submit_is_resent_after_503(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    sim_conn.state.add_fault(Fault("status", path=SUBMIT_ONLY, method="POST", status=503, remaining=1))

    job = hook.submit_video(SAMPLES["internal"], method="presigned")

    assert routes(sim_conn) == {UPLOAD_URL_ROUTE: 1, PUT_ROUTE: 1, SUBMIT_ROUTE: 2}
    assert sim_conn.state.jobs_created == 1
    assert list(sim_conn.state.jobs) == [job.job_id]


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", path=SUBMIT_ONLY, method="POST", status=500),
        Fault("status", path=SUBMIT_ONLY, method="POST", status=502),
        Fault("status", path=SUBMIT_ONLY, method="POST", status=504),
        Fault("drop", path=SUBMIT_ONLY, method="POST"),
        Fault("malformed", path=SUBMIT_ONLY, method="POST"),
    ],
    ids=["500", "502", "504", "drop", "malformed"],
)
@pytest.mark.parametrize("method", ["direct", "presigned"])
def test_submit_is_not_resent_when_it_may_have_arrived(
    hook: SlipstreamHook, sim_conn: SimulatorServer, fault: Fault, method: str
) -> None:
    sim_conn.state.add_fault(dataclasses.replace(fault))  # a fresh copy per test

    with pytest.raises(SlipstreamSubmitUncertainError) as exc_info:
        hook.submit_video(SAMPLES["internal"], method=method)  # type: ignore[arg-type]

    text_of(exc_info.value, "may still have created a job", "not re-sent")
    assert sim_conn.state.count("POST", SUBMIT) == 1
    assert sim_conn.state.jobs_created == 0


@pytest.mark.parametrize("kind", ["drop", "malformed"])
def test_get_is_retried_after_a_broken_answer(hook: SlipstreamHook, sim_conn: SimulatorServer, kind: str) -> None:
    job = completed_job(hook, sim_conn)
    sim_conn.state.add_fault(Fault(kind, method="GET", remaining=1))  # type: ignore[arg-type]

    got = hook.get_job(job.job_id)

    assert got.is_completed
    assert got.job_id == job.job_id
    assert [r.fault for r in sim_conn.state.requests if r.method == "GET"] == [kind, None]


def test_html_502_page_gives_a_readable_message(hook: SlipstreamHook, sim_conn: SimulatorServer) -> None:
    sim_conn.state.add_fault(Fault("html", method="GET"))  # nginx's 502 page, every time

    with pytest.raises(SlipstreamTransientError) as exc_info:
        hook.get_job(UNKNOWN_JOB)

    text = text_of(exc_info.value, "502", "502 Bad Gateway")
    assert "<" not in text
    assert ">" not in text
    assert "\n" not in text
    assert sim_conn.state.count("GET") == hook.config.retry.max_retries + 1


# -- presigned uploads never carry the partner key ---------------------------------------


def s3_puts(sim: SimulatorServer) -> list[Any]:
    return [r for r in sim.state.requests if r.server == "s3"]


def test_presigned_put_has_no_authorization_and_the_pinned_content_type(
    hook: SlipstreamHook, sim_conn: SimulatorServer
) -> None:
    video = SAMPLES["no_match"]  # .avi
    job = hook.submit_video(video, method="presigned")

    (put,) = s3_puts(sim_conn)
    assert put.status == 200
    assert "authorization" not in put.headers
    assert put.headers["content-type"] == "video/x-msvideo"
    assert put.headers["content-length"] == str(video.stat().st_size)
    assert "transfer-encoding" not in put.headers
    api = [r for r in sim_conn.state.requests if r.server == "api"]
    assert [r.headers["authorization"] for r in api] == ["Bearer [redacted]"] * 2
    assert sim_conn.state.jobs[job.job_id].scenario == "no_music"


def test_presigned_put_ignores_netrc_credentials(
    hook: SlipstreamHook, sim_conn: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(
        "machine 127.0.0.1 login netrc-user password netrc-secret\ndefault login any-user password any-secret\n"
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    target = hook.create_upload_url("clip.mp4")
    # Control: this environment really would add Basic credentials to a plain requests call.
    plain = requests.Session().prepare_request(requests.Request("PUT", target.upload_url))
    assert plain.headers.get("Authorization", "").startswith("Basic ")

    hook.upload_to_url(target, SAMPLES["internal"])
    job = hook.submit_storage_key(target.storage_key)

    (put,) = s3_puts(sim_conn)
    assert put.status == 200
    assert "authorization" not in put.headers
    assert put.headers["content-type"] == "video/mp4"
    api = [r for r in sim_conn.state.requests if r.server == "api"]
    assert [r.headers["authorization"] for r in api] == ["Bearer [redacted]"] * 2  # never netrc's Basic
    assert sim_conn.state.jobs[job.job_id].sha256 == sha256_of(SAMPLES["internal"])


# -- object storage ----------------------------------------------------------------------


@pytest.fixture
def memory_bucket() -> Any:
    """A unique bucket on fsspec's in-memory filesystem, attached to Airflow's object storage."""
    fs = fsspec.filesystem("memory")
    # ObjectStoragePath.open()/stat() resolve the filesystem through Airflow's store, which
    # knows only the schemes providers register; attach the memory one explicitly.
    attach("memory", fs=fs)
    bucket = f"bucket-{uuid.uuid4().hex[:8]}"
    yield bucket
    if fs.exists(f"/{bucket}"):
        fs.rm(f"/{bucket}", recursive=True)


@pytest.mark.parametrize("method", ["direct", "presigned"])
def test_object_storage_file_url(hook: SlipstreamHook, sim_conn: SimulatorServer, tmp_path: Path, method: str) -> None:
    source = SAMPLES["internal"]
    (tmp_path / "internal_x.mp4").write_bytes(source.read_bytes())
    path = ObjectStoragePath(f"file://{tmp_path}/internal_x.mp4")

    job = hook.submit_video(path, method=method)  # type: ignore[arg-type]

    stored = sim_conn.state.jobs[job.job_id]
    assert stored.scenario == "internal"
    assert stored.sha256 == sha256_of(source)
    assert stored.filename.endswith("internal_x.mp4")
    assert routes(sim_conn)[SUBMIT_ROUTE] == 1
    assert routes(sim_conn).get(PUT_ROUTE, 0) == (1 if method == "presigned" else 0)


@pytest.mark.parametrize("method", ["direct", "presigned"])
@pytest.mark.parametrize("as_string", [False, True], ids=["ObjectStoragePath", "url-string"])
def test_object_storage_memory_url(
    hook: SlipstreamHook, sim_conn: SimulatorServer, memory_bucket: str, method: str, as_string: bool
) -> None:
    content = SAMPLES["internal"].read_bytes()
    url = f"memory://{memory_bucket}/internal_clip.mp4"
    ObjectStoragePath(url).write_bytes(content)

    job = hook.submit_video(url if as_string else ObjectStoragePath(url), method=method)  # type: ignore[arg-type]

    stored = sim_conn.state.jobs[job.job_id]
    assert stored.scenario == "internal"
    assert stored.sha256 == hashlib.sha256(content).hexdigest()
    if method == "presigned":
        (upload,) = sim_conn.state.uploads.values()
        assert upload.size == len(content)
        assert upload.storage_key.endswith("_internal_clip.mp4")
    else:
        assert stored.filename == "internal_clip.mp4"
        assert sim_conn.state.uploads == {}
