"""The simulator speaks the documented Slipstream API over real HTTP (plain `requests`).

The `slipstream_simulator` fixture comes from airflow_provider_slipstream.simulator.pytest_plugin
(a fresh server per test: 0.2 s queued, 0.5 s processing).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_slipstream.simulator import SCENARIOS, Fault, SimulatorServer, SimulatorState

KEY = "sim-partner-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SUBMIT = "/api/v4/video-recognition/"
UPLOAD_URL = "/api/v4/video-recognition/upload-url/"
JOB_GLOB = "/api/v4/video-recognition/*/"
UNKNOWN_JOB = "7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10"
REPO = Path(__file__).resolve().parents[2]


def submit_file(sim: SimulatorServer, name: str, content: bytes = b"fake video bytes", **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", AUTH)
    return requests.post(sim.url + SUBMIT, files={"file": (name, content)}, headers=headers, timeout=10, **kwargs)


def get_job(sim: SimulatorServer, job_id: str, headers: dict[str, str] = AUTH) -> requests.Response:
    return requests.get(f"{sim.url}{SUBMIT}{job_id}/", headers=headers, timeout=10)


def wait_for_status(sim: SimulatorServer, job_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = get_job(sim, job_id).json()
        if body["status"] == status or time.monotonic() > deadline:
            assert body["status"] == status
            return body
        time.sleep(0.05)


def new_upload(sim: SimulatorServer, filename: str = "clip.mp4") -> dict[str, Any]:
    response = requests.post(sim.url + UPLOAD_URL, json={"filename": filename}, headers=AUTH, timeout=10)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def put(target: dict[str, Any], data: Any = b"presigned bytes", **headers: str) -> requests.Response:
    return requests.put(
        target["upload_url"], data=data, headers={"Content-Type": target["content_type"], **headers}, timeout=10
    )


# -- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": f"Token {KEY}"}, {"Authorization": f"Bearer {KEY} extra"}],
    ids=["missing", "no-token", "other-scheme", "garbled"],
)
@pytest.mark.parametrize(
    ("method", "path"), [("POST", SUBMIT), ("POST", UPLOAD_URL), ("GET", SUBMIT + UNKNOWN_JOB + "/")]
)
def test_missing_or_garbled_credentials_are_401(
    slipstream_simulator: SimulatorServer, headers: dict[str, str], method: str, path: str
) -> None:
    response = requests.request(method, slipstream_simulator.url + path, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_wrong_key_is_403_and_the_key_can_change_at_runtime(slipstream_simulator: SimulatorServer) -> None:
    other = {"Authorization": "Bearer someone-elses-key"}
    response = get_job(slipstream_simulator, UNKNOWN_JOB, headers=other)
    assert response.status_code == 403
    assert response.json() == {"detail": "Invalid partner API key."}

    slipstream_simulator.state.set_api_key("someone-elses-key")
    assert get_job(slipstream_simulator, UNKNOWN_JOB, headers=other).status_code == 404
    assert get_job(slipstream_simulator, UNKNOWN_JOB).status_code == 403


# -- submit: the documented 400 bodies ---------------------------------------------------

EXACTLY_ONE = {"detail": "Provide exactly one of `file` or `storage_key`."}


def test_submit_without_file_or_storage_key_is_400(slipstream_simulator: SimulatorServer) -> None:
    url = slipstream_simulator.url + SUBMIT
    for response in (
        requests.post(url, headers=AUTH, timeout=10),
        requests.post(url, json={}, headers=AUTH, timeout=10),
        requests.post(url, json={"filename": "clip.mp4"}, headers=AUTH, timeout=10),
    ):
        assert response.status_code == 400
        assert response.json() == EXACTLY_ONE


def test_submit_with_both_file_and_storage_key_is_400(slipstream_simulator: SimulatorServer) -> None:
    response = submit_file(slipstream_simulator, "clip.mp4", data={"storage_key": "video-recognition/x_clip.mp4"})
    assert response.status_code == 400
    assert response.json() == EXACTLY_ONE
    assert slipstream_simulator.state.jobs_created == 0


@pytest.mark.parametrize("name", ["clip.mkv", "clip", "clip.mp4.txt"])
def test_submit_with_a_bad_extension_is_400(slipstream_simulator: SimulatorServer, name: str) -> None:
    response = submit_file(slipstream_simulator, name)
    assert response.status_code == 400
    assert response.json() == {"file": ["File extension is not allowed. Allowed extensions are: mp4, mov, avi, mpeg."]}


def test_extensions_are_case_insensitive(slipstream_simulator: SimulatorServer) -> None:
    for name in ("A.MP4", "b.Mov", "c.avi", "d.mpeg"):
        assert submit_file(slipstream_simulator, name).status_code == 201


def test_submit_over_the_size_limit_is_400(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.configure(max_file_bytes=1024 * 1024)
    assert submit_file(slipstream_simulator, "clip.mp4", b"x" * (1024 * 1024)).status_code == 201

    response = submit_file(slipstream_simulator, "clip.mp4", b"x" * (1024 * 1024 + 1))
    assert response.status_code == 400
    assert response.json() == {"file": ["File size cannot exceed 1 MB."]}


def test_default_size_message_names_100_mb() -> None:
    from airflow_provider_slipstream.simulator.app import _size_message

    assert _size_message(SimulatorState().max_file_bytes) == "File size cannot exceed 100 MB."


@pytest.mark.parametrize(
    ("storage_key", "message"),
    [
        ("uploads/abc_clip.mp4", "Storage key must start with `video-recognition/`."),
        ("video-recognition/0123_never_uploaded.mp4", "No uploaded file was found for this storage key."),
        (42, "Not a valid string."),
    ],
)
def test_submit_with_a_bad_storage_key_is_400(
    slipstream_simulator: SimulatorServer, storage_key: Any, message: str
) -> None:
    response = requests.post(
        slipstream_simulator.url + SUBMIT, json={"storage_key": storage_key}, headers=AUTH, timeout=10
    )
    assert response.status_code == 400
    assert response.json() == {"storage_key": [message]}


# -- the job lifecycle and the scenarios -------------------------------------------------


def test_each_scenario_goes_queued_processing_completed(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.configure(queued_seconds=0.4)  # room to see all four queued
    jobs = {}
    for scenario in ("internal", "competitor", "external", "no_music"):
        response = submit_file(slipstream_simulator, f"my_{scenario.upper()}_clip.mp4")
        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "queued"
        assert body["track"] is None
        assert body["created_at"].endswith("Z")
        jobs[scenario] = body["job_id"]
    assert slipstream_simulator.state.jobs_created == 4

    for job_id in jobs.values():
        assert get_job(slipstream_simulator, job_id).json()["status"] == "queued"
    for job_id in jobs.values():
        assert wait_for_status(slipstream_simulator, job_id, "processing")["track"] is None
    for scenario, job_id in jobs.items():
        body = wait_for_status(slipstream_simulator, job_id, "completed")
        assert body["job_id"] == job_id
        assert body["track"] == SCENARIOS[scenario]


def test_without_a_keyword_the_content_hash_decides(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.configure(queued_seconds=0, processing_seconds=0)
    order = ["internal", "competitor", "external", "no_music"]
    for content in (b"a", b"b", b"c", b"d", b"e"):
        expected = SCENARIOS[order[int(hashlib.sha256(content).hexdigest(), 16) % 4]]
        for _ in range(2):  # the same bytes always give the same answer
            job_id = submit_file(slipstream_simulator, "holiday.mp4", content).json()["job_id"]
            assert get_job(slipstream_simulator, job_id).json()["track"] == expected


def test_odd_status_reports_an_undocumented_status_then_completes(slipstream_simulator: SimulatorServer) -> None:
    job_id = submit_file(slipstream_simulator, "odd_status.mp4").json()["job_id"]
    wait_for_status(slipstream_simulator, job_id, "transcoding")
    assert wait_for_status(slipstream_simulator, job_id, "completed")["track"] == SCENARIOS["internal"]


def test_stall_stays_processing(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.configure(job_ttl_seconds=0)
    job_id = submit_file(slipstream_simulator, "stall_internal.mp4").json()["job_id"]
    time.sleep(0.9)  # past queued + processing (0.7 s) and the 0 s TTL
    assert get_job(slipstream_simulator, job_id).json()["status"] == "processing"


def test_unknown_and_malformed_job_ids_are_404(slipstream_simulator: SimulatorServer) -> None:
    for job_id in (UNKNOWN_JOB, "not-a-uuid"):
        response = get_job(slipstream_simulator, job_id)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}


def test_a_completed_job_expires_after_its_ttl(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.configure(queued_seconds=0, processing_seconds=0, job_ttl_seconds=0.3)
    job_id = submit_file(slipstream_simulator, "internal.mp4").json()["job_id"]
    assert get_job(slipstream_simulator, job_id).json()["status"] == "completed"
    time.sleep(0.35)
    response = get_job(slipstream_simulator, job_id)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_expire_job_makes_it_404(slipstream_simulator: SimulatorServer) -> None:
    job_id = submit_file(slipstream_simulator, "internal.mp4").json()["job_id"]
    assert get_job(slipstream_simulator, job_id).status_code == 200
    assert slipstream_simulator.state.expire_job(job_id)
    assert get_job(slipstream_simulator, job_id).status_code == 404
    assert not slipstream_simulator.state.expire_job(UNKNOWN_JOB)


def test_unknown_urls_are_django_404_pages_without_redirects(slipstream_simulator: SimulatorServer) -> None:
    for path in ("/api/v4/nothing/", SUBMIT.rstrip("/"), f"{SUBMIT}{UNKNOWN_JOB}"):
        response = requests.get(slipstream_simulator.url + path, headers=AUTH, timeout=10, allow_redirects=False)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")


# -- presigned uploads -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [("a.mp4", "video/mp4"), ("b.MOV", "video/quicktime"), ("c.avi", "video/x-msvideo"), ("d.mpeg", "video/mpeg")],
)
def test_upload_url_pins_the_content_type(
    slipstream_simulator: SimulatorServer, filename: str, content_type: str
) -> None:
    target = new_upload(slipstream_simulator, filename)
    assert target["content_type"] == content_type
    assert target["expires_in"] == 600
    prefix, _, name = target["storage_key"].partition("/")
    assert prefix == "video-recognition"
    assert len(name.partition("_")[0]) == 32
    assert name.endswith("_" + filename)
    assert target["upload_url"].startswith(f"{slipstream_simulator.s3_url}/sim-bucket/temp/video-recognition/")
    assert "X-Amz-Expires=600" in target["upload_url"]
    assert "X-Amz-Signature=" in target["upload_url"]
    assert slipstream_simulator.s3_url != slipstream_simulator.url


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"filename": "clip.mkv"}, "File extension must be one of: mov, mpeg, mp4, avi."),
        ({"filename": "clip"}, "File extension must be one of: mov, mpeg, mp4, avi."),
        ({}, "This field is required."),
    ],
)
def test_upload_url_with_a_bad_filename_is_400(
    slipstream_simulator: SimulatorServer, body: dict[str, str], message: str
) -> None:
    response = requests.post(slipstream_simulator.url + UPLOAD_URL, json=body, headers=AUTH, timeout=10)
    assert response.status_code == 400
    assert response.json() == {"filename": [message]}


def test_presigned_flow_end_to_end(slipstream_simulator: SimulatorServer) -> None:
    state = slipstream_simulator.state
    content = b"competitor clip bytes" * 1000
    target = new_upload(slipstream_simulator, "brand competitor.mp4")

    response = put(target, content)
    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{hashlib.md5(content).hexdigest()}"'
    upload = state.uploads[target["storage_key"]]
    assert (upload.size, upload.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    # The upload host saw the pinned Content-Type and no partner key.
    (record,) = [r for r in state.requests if r.server == "s3"]
    assert record.method == "PUT"
    assert record.headers["content-type"] == "video/mp4"
    assert "authorization" not in record.headers

    submitted = requests.post(
        slipstream_simulator.url + SUBMIT, json={"storage_key": target["storage_key"]}, headers=AUTH, timeout=10
    )
    assert submitted.status_code == 201
    job_id = submitted.json()["job_id"]
    assert wait_for_status(slipstream_simulator, job_id, "completed")["track"] == SCENARIOS["competitor"]


def test_put_with_an_authorization_header_is_400(slipstream_simulator: SimulatorServer) -> None:
    target = new_upload(slipstream_simulator)
    response = put(target, Authorization=f"Bearer {KEY}")
    assert response.status_code == 400
    assert "<Code>InvalidArgument</Code>" in response.text
    assert "Only one auth mechanism allowed" in response.text
    assert response.headers["content-type"] == "application/xml"
    assert put(target).status_code == 200  # a refused request does not use the URL up


@pytest.mark.parametrize("content_type", ["application/octet-stream", "video/mp4; charset=utf-8", None])
def test_put_with_another_content_type_is_403(slipstream_simulator: SimulatorServer, content_type: str | None) -> None:
    target = new_upload(slipstream_simulator)
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.put(target["upload_url"], data=b"bytes", headers=headers, timeout=10)
    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text


def test_put_with_a_tampered_signature_is_403(slipstream_simulator: SimulatorServer) -> None:
    target = new_upload(slipstream_simulator)
    target["upload_url"] = target["upload_url"][:-4] + "0000"
    response = put(target)
    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text


def test_second_put_to_the_same_url_is_403(slipstream_simulator: SimulatorServer) -> None:
    target = new_upload(slipstream_simulator)
    assert put(target).status_code == 200
    response = put(target)
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text


def test_put_to_an_expired_url_is_403(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.configure(upload_url_expires_in=0)
    target = new_upload(slipstream_simulator)
    assert target["expires_in"] == 0
    response = put(target)
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text
    assert "Request has expired" in response.text


def test_put_without_content_length_is_411(slipstream_simulator: SimulatorServer) -> None:
    target = new_upload(slipstream_simulator)
    response = put(target, iter([b"chunked ", b"body"]))  # a generator is sent chunked
    assert response.status_code == 411
    assert "<Code>MissingContentLength</Code>" in response.text


def test_storage_key_is_refused_until_its_upload_completed(slipstream_simulator: SimulatorServer) -> None:
    target = new_upload(slipstream_simulator)
    url = slipstream_simulator.url + SUBMIT
    refused = requests.post(url, json={"storage_key": target["storage_key"]}, headers=AUTH, timeout=10)
    assert refused.status_code == 400
    assert put(target).status_code == 200
    assert requests.post(url, json={"storage_key": target["storage_key"]}, headers=AUTH, timeout=10).status_code == 201


def test_the_s3_host_does_not_serve_the_api_nor_the_api_host_uploads(slipstream_simulator: SimulatorServer) -> None:
    on_s3 = requests.post(slipstream_simulator.s3_url + SUBMIT, headers=AUTH, timeout=10)
    assert on_s3.status_code == 400  # refused as a second auth mechanism, the S3 way
    target = new_upload(slipstream_simulator)
    on_api = put(
        {**target, "upload_url": target["upload_url"].replace(slipstream_simulator.s3_url, slipstream_simulator.url)}
    )
    assert on_api.status_code == 404


# -- fault injection ---------------------------------------------------------------------


def test_status_fault_with_retry_after_then_normal(slipstream_simulator: SimulatorServer) -> None:
    rule = slipstream_simulator.state.add_fault(
        Fault("status", path=JOB_GLOB, method="GET", status=429, headers={"Retry-After": "2"}, remaining=1)
    )
    response = get_job(slipstream_simulator, UNKNOWN_JOB)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json() == {"detail": "Request was throttled. Expected available in 2 seconds."}
    assert rule.remaining == 0
    assert get_job(slipstream_simulator, UNKNOWN_JOB).status_code == 404
    assert [r.fault for r in slipstream_simulator.state.requests] == ["status", None]


def test_status_fault_burst_matches_method_and_prefix(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.add_fault(Fault("status", path=SUBMIT, method="POST", status=503, remaining=2))
    assert get_job(slipstream_simulator, UNKNOWN_JOB).status_code == 404  # GET: not matched
    assert [submit_file(slipstream_simulator, "clip.mp4").status_code for _ in range(3)] == [503, 503, 201]
    assert slipstream_simulator.state.jobs_created == 1


def test_status_fault_with_a_custom_body(slipstream_simulator: SimulatorServer) -> None:
    body = {"success": False, "error": {"code": "overloaded", "message": "Try later"}}
    slipstream_simulator.state.add_fault(Fault("status", status=500, body=body))
    response = get_job(slipstream_simulator, UNKNOWN_JOB)
    assert (response.status_code, response.json()) == (500, body)


def test_delay_fault_then_normal_handling(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.add_fault(Fault("delay", path=JOB_GLOB, seconds=0.4, remaining=1))
    started = time.monotonic()
    response = get_job(slipstream_simulator, UNKNOWN_JOB)
    assert time.monotonic() - started >= 0.4
    assert response.status_code == 404
    assert slipstream_simulator.state.requests[-1].fault == "delay"
    assert slipstream_simulator.state.requests[-1].status == 404


def test_hold_fault_handles_the_request_then_holds_the_answer(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.add_fault(Fault("hold", path=SUBMIT, method="POST", seconds=0.4, remaining=1))
    started = time.monotonic()
    answered: list[requests.Response] = []
    thread = threading.Thread(target=lambda: answered.append(submit_file(slipstream_simulator, "internal_clip.mp4")))
    thread.start()
    wait_until = time.monotonic() + 5
    while slipstream_simulator.state.jobs_created == 0 and time.monotonic() < wait_until:
        time.sleep(0.01)
    # The job exists at once, while the client still waits for its answer.
    assert slipstream_simulator.state.jobs_created == 1
    assert time.monotonic() - started < 0.3
    assert not answered
    thread.join(5)
    assert 0.4 <= time.monotonic() - started < 0.8
    assert answered[0].status_code == 201
    assert answered[0].json()["job_id"] in slipstream_simulator.state.jobs
    assert slipstream_simulator.state.requests[-1].fault == "hold"


def test_drop_fault_breaks_the_response(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.add_fault(Fault("drop", path=JOB_GLOB, remaining=1))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        get_job(slipstream_simulator, UNKNOWN_JOB)
    assert slipstream_simulator.state.count("GET", JOB_GLOB) == 1
    assert slipstream_simulator.state.requests[-1].fault == "drop"
    assert get_job(slipstream_simulator, UNKNOWN_JOB).status_code == 404  # the server itself is fine


def test_drop_fault_on_an_upload(slipstream_simulator: SimulatorServer) -> None:
    target = new_upload(slipstream_simulator)
    slipstream_simulator.state.add_fault(Fault("drop", path="/sim-bucket/", method="PUT", remaining=1))
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        put(target)
    assert put(target).status_code == 200  # the dropped attempt did not use the URL up


def test_malformed_fault_is_not_json(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.add_fault(Fault("malformed", path=JOB_GLOB))
    response = get_job(slipstream_simulator, UNKNOWN_JOB)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(ValueError, match=r"Expecting|Unterminated|Invalid"):
        response.json()


def test_html_fault_is_a_proxy_error_page(slipstream_simulator: SimulatorServer) -> None:
    slipstream_simulator.state.add_fault(Fault("html", status=504, remaining=1))
    response = submit_file(slipstream_simulator, "clip.mp4")
    assert response.status_code == 504
    assert response.headers["content-type"].startswith("text/html")
    assert "504 Gateway Timeout" in response.text
    assert slipstream_simulator.state.jobs_created == 0


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="kind"):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        Fault("status", status=42)


def test_clear_faults_and_reset(slipstream_simulator: SimulatorServer) -> None:
    state = slipstream_simulator.state
    state.add_fault(Fault("status", status=500))
    assert get_job(slipstream_simulator, UNKNOWN_JOB).status_code == 500
    state.clear_faults()
    assert get_job(slipstream_simulator, UNKNOWN_JOB).status_code == 404
    submit_file(slipstream_simulator, "clip.mp4")
    state.add_fault(Fault("status", status=500))
    state.reset()
    assert (state.jobs_created, state.requests, state.faults, state.jobs) == (0, [], [], {})
    assert get_job(slipstream_simulator, UNKNOWN_JOB).status_code == 404


# -- counters, the request log and the control endpoints ---------------------------------


def test_counters_and_stats_group_job_paths(slipstream_simulator: SimulatorServer) -> None:
    sim = slipstream_simulator
    job_id = submit_file(sim, "clip.mp4").json()["job_id"]
    get_job(sim, job_id)
    get_job(sim, UNKNOWN_JOB)
    target = new_upload(sim)
    put(target)
    requests.get(sim.url + "/_sim/stats", timeout=10)  # control calls are not counted

    state = sim.state
    assert state.jobs_created == 1
    assert state.count() == 5
    assert state.count("get", JOB_GLOB) == 2
    assert state.count(path_glob=f"*{job_id}*") == 1
    assert [r.status for r in state.requests] == [201, 200, 404, 201, 200]
    stats = requests.get(sim.url + "/_sim/stats", timeout=10).json()
    assert stats == {
        "jobs_created": 1,
        "licenses": 0,
        "requests": 5,
        "by_route": {
            "POST /api/v4/video-recognition/": 1,
            "GET /api/v4/video-recognition/{job_id}/": 2,
            "POST /api/v4/video-recognition/upload-url/": 1,
            "PUT /sim-bucket/temp/{storage_key}": 1,
        },
    }


def test_the_request_log_never_holds_the_key(slipstream_simulator: SimulatorServer) -> None:
    get_job(slipstream_simulator, UNKNOWN_JOB)
    get_job(slipstream_simulator, UNKNOWN_JOB, headers={"Authorization": "Bearer wrong-key"})
    records = slipstream_simulator.state.requests
    assert [r.headers["authorization"] for r in records] == ["Bearer [redacted]"] * 2
    assert KEY not in repr(records)
    assert "wrong-key" not in repr(records)


def test_http_control_endpoints(slipstream_simulator: SimulatorServer) -> None:
    sim, control = slipstream_simulator, slipstream_simulator.url + "/_sim"
    fault = {"kind": "status", "status": 503, "path": JOB_GLOB, "remaining": 1, "headers": {"Retry-After": "1"}}
    created = requests.post(control + "/faults", json=fault, timeout=10)
    assert created.status_code == 201
    assert requests.get(control + "/faults", timeout=10).json()[0]["remaining"] == 1
    response = get_job(sim, UNKNOWN_JOB)
    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert requests.post(control + "/faults", json={"kind": "nonsense"}, timeout=10).status_code == 400
    requests.post(control + "/faults", json={"kind": "status", "status": 500}, timeout=10)
    assert requests.delete(control + "/faults", timeout=10).status_code == 204
    assert get_job(sim, UNKNOWN_JOB).status_code == 404

    configured = requests.put(control + "/config", json={"api_key": "rotated", "queued_seconds": 0}, timeout=10)
    assert configured.status_code == 200
    assert "rotated" not in configured.text
    assert configured.json()["queued_seconds"] == 0
    assert get_job(sim, UNKNOWN_JOB).status_code == 403
    rotated = {"Authorization": "Bearer rotated"}
    assert get_job(sim, UNKNOWN_JOB, headers=rotated).status_code == 404
    assert requests.put(control + "/config", json={"nope": 1}, timeout=10).status_code == 400
    assert requests.put(control + "/config", json={"queued_seconds": -1}, timeout=10).status_code == 400

    job_id = submit_file(sim, "clip.mp4", headers=rotated).json()["job_id"]
    assert requests.post(f"{control}/jobs/{job_id}/expire", timeout=10).status_code == 204
    assert get_job(sim, job_id, headers=rotated).status_code == 404
    assert requests.post(f"{control}/jobs/{UNKNOWN_JOB}/expire", timeout=10).status_code == 404

    assert requests.post(control + "/reset", timeout=10).status_code == 204
    assert requests.get(control + "/stats", timeout=10).json() == {
        "jobs_created": 0,
        "licenses": 0,
        "requests": 0,
        "by_route": {},
    }


# -- the server itself -------------------------------------------------------------------


def _port_is_closed(url: str) -> bool:
    host, _, port = url.removeprefix("http://").partition(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


def test_server_starts_fast_and_stops_cleanly() -> None:
    threads_before = set(threading.enumerate())
    started = time.monotonic()
    with SimulatorServer() as sim:
        assert time.monotonic() - started < 1.0
        assert sim.url.startswith("http://127.0.0.1:")
        assert get_job(sim, UNKNOWN_JOB).status_code == 404
        urls = (sim.url, sim.s3_url)
    assert all(_port_is_closed(url) for url in urls)
    assert set(threading.enumerate()) <= threads_before


def test_a_stopped_simulator_comes_back_on_its_ports_with_its_state() -> None:
    """stop() then start() is an outage: refused meanwhile, then the same URLs answer for the same jobs."""
    with SimulatorServer() as sim:
        job_id = submit_file(sim, "internal_clip.mp4").json()["job_id"]
        target = new_upload(sim)
        urls = (sim.url, sim.s3_url)
        sim.stop()
        assert all(_port_is_closed(url) for url in urls)
        with pytest.raises(requests.ConnectionError):
            get_job_at(urls[0], job_id)
        sim.start()
        assert (sim.url, sim.s3_url) == urls
        assert get_job(sim, job_id).json()["job_id"] == job_id
        assert put(target).status_code == 200  # a URL issued before the outage still verifies
        assert sim.state.jobs_created == 1


def get_job_at(url: str, job_id: str) -> requests.Response:
    return requests.get(f"{url}{SUBMIT}{job_id}/", headers=AUTH, timeout=5)


def test_two_simulators_are_independent() -> None:
    with SimulatorServer() as first, SimulatorServer() as second:
        target = new_upload(first)
        foreign = {**target, "upload_url": target["upload_url"].replace(first.s3_url, second.s3_url)}
        assert put(foreign).status_code == 403  # signed by another simulator
        assert second.state.count() == 1


def test_command_line_runs_until_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    secret = "cli-secret-key-1234"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "airflow_provider_slipstream.simulator", "--port", "0"),
            *("--port-file", str(port_file), "--api-key", secret, "--queued-seconds", "0"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the simulator did not write its port file"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        response = requests.post(
            url + SUBMIT, files={"file": ("clip.mp4", b"x")}, headers={"Authorization": f"Bearer {secret}"}, timeout=10
        )
        assert response.status_code == 201
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert stdout.splitlines() == [f"Slipstream simulator listening on {url}"]
    assert secret not in stdout + stderr
