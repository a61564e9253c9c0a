"""
Unit tests of ``airflow_provider_slipstream.models``: parsing of the documented bodies,
classification, the XCom result contract, and the mapping of HTTP answers to errors.

The example bodies are the ones of ``/work/shared/slipstream-api.md``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_slipstream.connection import ClientConfig
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
    JobStatus,
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

QUEUED_BODY: dict[str, Any] = {"job_id": JOB_ID, "status": "queued", "track": None}
PROCESSING_BODY: dict[str, Any] = {"job_id": JOB_ID, "status": "processing", "track": None}
CATALOG_TRACK: dict[str, Any] = dict(EXPECTED_TRACKS["internal"] or {})
OUTSIDE_TRACK: dict[str, Any] = dict(EXPECTED_TRACKS["competitor"] or {})
CATALOG_BODY: dict[str, Any] = {"job_id": JOB_ID, "status": "completed", "track": CATALOG_TRACK}
OUTSIDE_BODY: dict[str, Any] = {"job_id": JOB_ID, "status": "completed", "track": OUTSIDE_TRACK}
NO_MUSIC_BODY: dict[str, Any] = {"job_id": JOB_ID, "status": "completed", "track": None}
UPLOAD_BODY: dict[str, Any] = {
    "upload_url": "https://bucket.s3.amazonaws.com/temp/video-recognition/abc_clip.mp4?X-Amz-Signature=x",
    "storage_key": "video-recognition/abc_clip.mp4",
    "expires_in": 600,
    "content_type": "video/mp4",
}


def _track(**overrides: Any) -> RecognitionTrack:
    fields = {**OUTSIDE_TRACK, **overrides}
    return RecognitionTrack(**fields)


# --------------------------------------------------------------------------- parsing


class TestRecognitionJobFromApi:
    @pytest.mark.parametrize(
        ("body", "status"),
        [(QUEUED_BODY, JobStatus.QUEUED), (PROCESSING_BODY, JobStatus.PROCESSING)],
        ids=["queued", "processing"],
    )
    def test_running_job(self, body: dict[str, Any], status: JobStatus) -> None:
        job = RecognitionJob.from_api(body)
        assert job == RecognitionJob(job_id=JOB_ID, status=status.value, track=None)
        assert job.is_known_status is True
        assert job.is_completed is False

    def test_completed_catalog_match(self) -> None:
        job = RecognitionJob.from_api(CATALOG_BODY)
        assert job.job_id == JOB_ID
        assert job.status == "completed"
        assert job.is_completed is True
        assert job.is_known_status is True
        assert job.track == RecognitionTrack(
            id="11111111-1111-1111-1111-111111111111",
            title="Golden Hour",
            artist="The Coast",
            internal=True,
            isrc="USRC12345678",
            score=96.5,
            external_label=None,
        )

    def test_completed_outside_match_with_label(self) -> None:
        job = RecognitionJob.from_api(OUTSIDE_BODY)
        assert job.is_completed is True
        assert job.track == RecognitionTrack(
            id=None,
            title="Some Stock Track",
            artist="A Stock Artist",
            internal=False,
            isrc="SE5Q52400123",
            score=100.0,
            external_label="Epidemic Sound",
        )

    def test_completed_no_music(self) -> None:
        job = RecognitionJob.from_api(NO_MUSIC_BODY)
        assert job == RecognitionJob(job_id=JOB_ID, status="completed", track=None)
        assert job.is_completed is True

    def test_missing_track_key_means_no_track(self) -> None:
        job = RecognitionJob.from_api({"job_id": JOB_ID, "status": "queued"})
        assert job.track is None

    def test_unknown_fields_are_ignored(self) -> None:
        body = {
            **CATALOG_BODY,
            "created_at": "2024-01-01T00:00:00Z",
            "progress": 0.5,
            "track": {**CATALOG_TRACK, "album": "Summer", "bpm": 120, "nested": {"x": [1]}},
        }
        assert RecognitionJob.from_api(body) == RecognitionJob.from_api(CATALOG_BODY)

    def test_undocumented_status_is_kept(self) -> None:
        job = RecognitionJob.from_api({"job_id": JOB_ID, "status": "failed", "track": None})
        assert job.status == "failed"
        assert job.is_known_status is False
        assert job.is_completed is False

    def test_integer_score_becomes_float(self) -> None:
        track = RecognitionTrack.from_api({**OUTSIDE_TRACK, "score": 100})
        assert track.score == 100.0
        assert isinstance(track.score, float)

    def test_null_score_and_isrc_are_allowed(self) -> None:
        track = RecognitionTrack.from_api({**OUTSIDE_TRACK, "score": None, "isrc": None})
        assert track.score is None
        assert track.isrc is None

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({"status": "queued", "track": None}, id="job_id-missing"),
            pytest.param({"job_id": None, "status": "queued", "track": None}, id="job_id-null"),
            pytest.param({"job_id": 123, "status": "queued", "track": None}, id="job_id-int"),
            pytest.param({"job_id": JOB_ID, "track": None}, id="status-missing"),
            pytest.param({"job_id": JOB_ID, "status": ["queued"], "track": None}, id="status-list"),
            pytest.param({"job_id": JOB_ID, "status": "completed", "track": [CATALOG_TRACK]}, id="track-list"),
            pytest.param({"job_id": JOB_ID, "status": "completed", "track": "Golden Hour"}, id="track-str"),
            pytest.param({**CATALOG_BODY, "track": {**CATALOG_TRACK, "title": 5}}, id="title-int"),
            pytest.param({**CATALOG_BODY, "track": {**CATALOG_TRACK, "internal": "true"}}, id="internal-str"),
            pytest.param({**CATALOG_BODY, "track": {**CATALOG_TRACK, "score": True}}, id="score-bool"),
            pytest.param([QUEUED_BODY], id="body-list"),
            pytest.param("queued", id="body-str"),
            pytest.param(None, id="body-null"),
        ],
    )
    def test_malformed_body_raises_api_error(self, body: Any) -> None:
        with pytest.raises(SlipstreamApiError, match=r"unexpected|was expected"):
            RecognitionJob.from_api(body)

    def test_error_names_the_offending_field(self) -> None:
        with pytest.raises(SlipstreamApiError, match="'title'") as info:
            RecognitionJob.from_api({**CATALOG_BODY, "track": {**CATALOG_TRACK, "title": 5}})
        assert "upgrade airflow-provider-slipstream" in str(info.value)


class TestRecognitionTrackFromApi:
    def test_documented_tracks(self) -> None:
        assert RecognitionTrack.from_api(CATALOG_TRACK).title == "Golden Hour"
        assert RecognitionTrack.from_api(OUTSIDE_TRACK).external_label == "Epidemic Sound"

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({**CATALOG_TRACK, "title": 5}, id="title-int"),
            pytest.param({**CATALOG_TRACK, "title": None}, id="title-null"),
            pytest.param({k: v for k, v in CATALOG_TRACK.items() if k != "artist"}, id="artist-missing"),
            pytest.param({**CATALOG_TRACK, "internal": "true"}, id="internal-str"),
            pytest.param({**CATALOG_TRACK, "internal": 1}, id="internal-int"),
            pytest.param({**CATALOG_TRACK, "score": True}, id="score-bool"),
            pytest.param({**CATALOG_TRACK, "score": "96.5"}, id="score-str"),
            pytest.param({**CATALOG_TRACK, "id": 1}, id="id-int"),
            pytest.param({**CATALOG_TRACK, "external_label": ["Epidemic Sound"]}, id="label-list"),
            pytest.param([CATALOG_TRACK], id="track-list"),
        ],
    )
    def test_strict_types(self, body: Any) -> None:
        with pytest.raises(SlipstreamApiError):
            RecognitionTrack.from_api(body)

    def test_score_too_large_for_a_float_is_an_api_error(self) -> None:
        # Valid JSON (an integer literal with 400 digits) must not escape as OverflowError.
        with pytest.raises(SlipstreamApiError):
            RecognitionTrack.from_api({**CATALOG_TRACK, "score": 10**400})

    def test_huge_score_through_check_response_is_an_api_error(self) -> None:
        body = json.dumps({**CATALOG_BODY, "track": {**CATALOG_TRACK, "score": 10**400}}).encode()
        with pytest.raises(SlipstreamError):
            RecognitionJob.from_api(check_response(200, body, "the status of a job"))


class TestUploadTargetFromApi:
    def test_documented_body(self) -> None:
        assert UploadTarget.from_api(UPLOAD_BODY) == UploadTarget(
            upload_url=UPLOAD_BODY["upload_url"],
            storage_key="video-recognition/abc_clip.mp4",
            expires_in=600,
            content_type="video/mp4",
        )

    def test_extra_fields_ignored_and_expires_in_defaults_to_600(self) -> None:
        body = {k: v for k, v in UPLOAD_BODY.items() if k != "expires_in"} | {"method": "PUT"}
        target = UploadTarget.from_api(body)
        assert target.expires_in == 600
        assert target.storage_key == "video-recognition/abc_clip.mp4"

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({**UPLOAD_BODY, "expires_in": "600"}, id="expires-str"),
            pytest.param({**UPLOAD_BODY, "expires_in": True}, id="expires-bool"),
            pytest.param({**UPLOAD_BODY, "expires_in": 600.5}, id="expires-float"),
            pytest.param({**UPLOAD_BODY, "upload_url": None}, id="url-null"),
            pytest.param({k: v for k, v in UPLOAD_BODY.items() if k != "storage_key"}, id="key-missing"),
            pytest.param({**UPLOAD_BODY, "content_type": 1}, id="content-type-int"),
            pytest.param([UPLOAD_BODY], id="body-list"),
        ],
    )
    def test_malformed(self, body: Any) -> None:
        with pytest.raises(SlipstreamApiError):
            UploadTarget.from_api(body)


# --------------------------------------------------------------------------- classify


class TestClassify:
    def test_no_track_is_no_match(self) -> None:
        assert classify(None) is MatchKind.NO_MATCH
        assert classify(None, ["Epidemic Sound"]) is MatchKind.NO_MATCH

    def test_internal_wins_over_label(self) -> None:
        assert classify(_track(internal=True, external_label="Epidemic Sound")) is MatchKind.INTERNAL
        assert classify(RecognitionTrack.from_api(CATALOG_TRACK)) is MatchKind.INTERNAL

    @pytest.mark.parametrize(
        "label", ["Epidemic Sound", "epidemic sound", "EPIDEMIC SOUND", "epidemic  SOUND ", " Epidemic\tSound"]
    )
    def test_competitor_is_case_and_space_insensitive(self, label: str) -> None:
        assert classify(_track(external_label=label)) is MatchKind.COMPETITOR

    @pytest.mark.parametrize("label", ["Some Indie Label", "Epidemic", "EpidemicSound", "", None])
    def test_external(self, label: str | None) -> None:
        assert classify(_track(external_label=label)) is MatchKind.EXTERNAL

    def test_custom_labels_replace_the_defaults(self) -> None:
        labels = ["My Rival Library"]
        assert classify(_track(external_label="my rival  library"), labels) is MatchKind.COMPETITOR
        assert classify(_track(external_label="Epidemic Sound"), labels) is MatchKind.EXTERNAL

    def test_empty_list_means_no_competitor(self) -> None:
        assert classify(_track(external_label="Epidemic Sound"), []) is MatchKind.EXTERNAL
        assert classify(_track(external_label="Artlist"), ()) is MatchKind.EXTERNAL

    def test_custom_labels_are_normalised_too(self) -> None:
        assert classify(_track(external_label="Rival"), ["  RIVAL  "]) is MatchKind.COMPETITOR

    def test_default_labels(self) -> None:
        assert "Epidemic Sound" in DEFAULT_COMPETITOR_LABELS
        assert all(isinstance(x, str) and x.strip() for x in DEFAULT_COMPETITOR_LABELS)

    def test_match_kind_values(self) -> None:
        assert [m.value for m in MatchKind] == ["internal", "competitor", "external", "no_match"]
        assert MatchKind.COMPETITOR == "competitor"


# --------------------------------------------------------------------------- to_result


class TestToResult:
    @pytest.mark.parametrize(
        ("body", "labels", "expected"),
        [
            pytest.param(
                CATALOG_BODY,
                None,
                {"job_id": JOB_ID, "status": "completed", "match": "internal", "track": CATALOG_TRACK},
                id="internal",
            ),
            pytest.param(
                OUTSIDE_BODY,
                None,
                {"job_id": JOB_ID, "status": "completed", "match": "competitor", "track": OUTSIDE_TRACK},
                id="competitor",
            ),
            pytest.param(
                OUTSIDE_BODY,
                ["Someone Else"],
                {"job_id": JOB_ID, "status": "completed", "match": "external", "track": OUTSIDE_TRACK},
                id="external-custom-labels",
            ),
            pytest.param(
                {**OUTSIDE_BODY, "track": {**OUTSIDE_TRACK, "external_label": None}},
                None,
                {
                    "job_id": JOB_ID,
                    "status": "completed",
                    "match": "external",
                    "track": {**OUTSIDE_TRACK, "external_label": None},
                },
                id="external-no-label",
            ),
            pytest.param(
                NO_MUSIC_BODY,
                None,
                {"job_id": JOB_ID, "status": "completed", "match": "no_match", "track": None},
                id="no_match",
            ),
        ],
    )
    def test_contract_dict(self, body: dict[str, Any], labels: list[str] | None, expected: dict[str, Any]) -> None:
        result = RecognitionJob.from_api(body).to_result(labels)
        assert result == expected
        assert list(result) == ["job_id", "status", "match", "track"]
        if result["track"] is not None:
            assert list(result["track"]) == ["id", "title", "artist", "internal", "isrc", "score", "external_label"]
        # JSON-serialisable, and equal after a round trip (what XCom does).
        assert json.loads(json.dumps(result)) == expected
        assert type(result["match"]) is str

    def test_downstream_access(self) -> None:
        result = RecognitionJob.from_api(CATALOG_BODY).to_result()
        assert result["match"] == "internal"
        assert result["track"]["title"] == "Golden Hour"


# --------------------------------------------------------------------------- check_response


class TestCheckResponse:
    def test_success_returns_decoded_body(self) -> None:
        assert check_response(200, json.dumps(CATALOG_BODY).encode(), "x") == CATALOG_BODY
        assert check_response(201, json.dumps(QUEUED_BODY).encode(), "x", job_id=JOB_ID) == QUEUED_BODY
        assert check_response(204, b"null", "x") is None

    def test_400_is_validation_error_with_field_message(self) -> None:
        body = json.dumps({"file": ["File size cannot exceed 100 MB."]}).encode()
        with pytest.raises(SlipstreamValidationError) as info:
            check_response(400, body, "the upload of clip.mp4")
        assert "File size cannot exceed 100 MB." in str(info.value)
        assert "the upload of clip.mp4" in str(info.value)
        assert info.value.http_status == 400

    @pytest.mark.parametrize(
        ("status", "job_id", "error"),
        [
            (400, None, SlipstreamValidationError),
            (401, None, SlipstreamAuthError),
            (403, None, SlipstreamAuthError),
            (401, JOB_ID, SlipstreamAuthError),
            (404, JOB_ID, SlipstreamJobNotFoundError),
            (404, None, SlipstreamApiError),
            (429, None, SlipstreamTransientError),
            (500, None, SlipstreamTransientError),
            (502, None, SlipstreamTransientError),
            (503, JOB_ID, SlipstreamTransientError),
            (504, None, SlipstreamTransientError),
            (418, None, SlipstreamApiError),
            (409, None, SlipstreamApiError),
            (302, None, SlipstreamApiError),
        ],
    )
    def test_status_mapping(self, status: int, job_id: str | None, error: type[SlipstreamError]) -> None:
        with pytest.raises(SlipstreamError) as info:
            check_response(status, b'{"detail": "nope"}', "the request", job_id=job_id)
        assert type(info.value) is error
        assert info.value.http_status == status

    def test_404_for_a_job_says_to_submit_again(self) -> None:
        with pytest.raises(SlipstreamJobNotFoundError, match=JOB_ID) as info:
            check_response(404, b'{"detail": "Not found."}', "the status of a job", job_id=JOB_ID)
        assert "Submit the video again" in str(info.value)

    def test_auth_error_says_where_the_key_lives(self) -> None:
        with pytest.raises(SlipstreamAuthError, match="password"):
            check_response(401, b'{"detail": "Invalid token."}', "x")

    @pytest.mark.parametrize("body", [b"<html>oops</html>", b"", b"not json", b"\xff\xfe\xfa"])
    def test_non_json_success_body_is_transient(self, body: bytes) -> None:
        with pytest.raises(SlipstreamTransientError, match="not JSON"):
            check_response(200, body, "the status of a job")

    def test_deeply_nested_success_body_is_a_slipstream_error(self) -> None:
        # A broken proxy can send anything; json.loads raises RecursionError (not ValueError) here.
        with pytest.raises(SlipstreamError):
            check_response(200, b"[" * 100_000, "the status of a job")

    def test_deeply_nested_error_body_keeps_its_status(self) -> None:
        with pytest.raises(SlipstreamTransientError):
            check_response(502, b"[" * 100_000, "the status of a job")


# --------------------------------------------------------------------------- error_message


class TestErrorMessage:
    def test_detail_shape(self) -> None:
        body = {"detail": "Provide exactly one of `file` or `storage_key`."}
        assert error_message(json.dumps(body).encode()) == "Provide exactly one of `file` or `storage_key`."

    def test_field_shape(self) -> None:
        body = {"file": ["File size cannot exceed 100 MB."]}
        assert error_message(json.dumps(body).encode()) == "file: File size cannot exceed 100 MB."

    def test_several_fields(self) -> None:
        body = {"filename": ["Bad extension."], "non_field_errors": ["Try again."]}
        assert error_message(json.dumps(body).encode()) == "filename: Bad extension.; Try again."

    def test_success_false_shape(self) -> None:
        body = {"success": False, "error": {"code": "RATE_LIMITED", "message": "Slow down"}}
        assert error_message(json.dumps(body).encode()) == "RATE_LIMITED: Slow down"

    def test_str_body(self) -> None:
        assert error_message('{"detail": "nope"}') == "nope"

    def test_nested_field_errors_keep_every_message(self) -> None:
        body = {"track": {"title": ["This field is required."], "artist": ["Too long."]}}
        message = error_message(json.dumps(body).encode())
        assert "This field is required." in message
        assert "Too long." in message
        assert "title" in message
        assert "artist" in message

    def test_nested_field_errors_name_the_parent_field(self) -> None:
        # {"metadata": {"title": [...]}} must not read as a top-level "title" error.
        body = {"metadata": {"title": ["This field is required."]}}
        assert "metadata" in error_message(json.dumps(body).encode())

    def test_html_page(self) -> None:
        body = (
            b"<html><head><title>502 Bad Gateway</title></head>"
            b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
        )
        message = error_message(body)
        assert "<" not in message
        assert ">" not in message
        assert message.startswith("502 Bad Gateway")
        assert "nginx" in message

    def test_empty_body(self) -> None:
        assert error_message(b"") == "no error details in the response"
        assert error_message(b"   \n") == "no error details in the response"

    def test_non_utf8_bytes(self) -> None:
        message = error_message(b"\xff\xfe\xfa bad gateway")
        assert isinstance(message, str)
        assert "bad gateway" in message

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (b'"Service unavailable"', "Service unavailable"),
            (b"42", "42"),
            (b"1.5", "1.5"),
            (b"null", "no error details in the response"),
            (b"true", "no error details in the response"),
            (b"{}", "no error details in the response"),
            (b"[]", "no error details in the response"),
            (b'{"error": {}}', "no error details in the response"),
        ],
    )
    def test_scalar_and_empty_json(self, body: bytes, expected: str) -> None:
        assert error_message(body) == expected

    def test_whitespace_only_detail_falls_back(self) -> None:
        assert error_message(b'{"detail": "   "}').strip() != ""

    def test_long_text_body_is_truncated(self) -> None:
        message = error_message(b"x" * 10_000)
        assert len(message) <= 201
        assert message.endswith("…")
        assert message.startswith("x" * 200)

    def test_long_html_body_is_truncated(self) -> None:
        message = error_message(b"<html><body>" + b"<p>Error</p>" * 5_000 + b"</body></html>")
        assert len(message) <= 201
        assert message.startswith("Error Error")

    def test_long_json_body_is_truncated(self) -> None:
        # A 10 kB JSON error must not become a 10 kB exception message / log line.
        message = error_message(json.dumps({"detail": "y" * 10_000}).encode())
        assert message.startswith("yyy")
        assert len(message) <= 1_000

    def test_deeply_nested_json_does_not_crash(self) -> None:
        message = error_message(b"[" * 600 + b"]" * 600)
        assert isinstance(message, str)
        assert message

    def test_unparseably_deep_json_does_not_crash(self) -> None:
        message = error_message(b"[" * 100_000)
        assert isinstance(message, str)
        assert message


# --------------------------------------------------------------------------- exceptions


class TestExceptionHierarchy:
    @pytest.mark.parametrize("error", [SlipstreamValidationError, SlipstreamAuthError, SlipstreamJobNotFoundError])
    def test_unfixable_errors_fail_without_retries(self, error: type[SlipstreamError]) -> None:
        exc = error("boom", status_code=400)
        assert isinstance(exc, AirflowFailException)
        assert isinstance(exc, SlipstreamError)
        assert isinstance(exc, AirflowException)
        assert exc.http_status == 400
        assert str(exc) == "boom"

    @pytest.mark.parametrize("error", [SlipstreamTransientError, SlipstreamApiError])
    def test_retryable_errors_are_not_fail_exceptions(self, error: type[SlipstreamError]) -> None:
        exc = error("boom")
        assert not isinstance(exc, AirflowFailException)
        assert isinstance(exc, SlipstreamError)
        assert isinstance(exc, AirflowException)
        assert exc.http_status is None

    def test_transient_is_an_api_error(self) -> None:
        assert issubclass(SlipstreamTransientError, SlipstreamApiError)

    def test_validation_error_is_a_value_error(self) -> None:
        assert issubclass(SlipstreamValidationError, ValueError)


@pytest.mark.parametrize("status", [501, 505, 507])
def test_check_response_non_transient_5xx_is_an_api_error_not_retried(status):
    # Only 500/502/503/504 are documented as transient; "not implemented" never heals by retrying.
    with pytest.raises(SlipstreamApiError) as err:
        check_response(status, b"", "x")
    assert type(err.value) is SlipstreamApiError
    assert err.value.http_status == status


@pytest.mark.parametrize("status", [200, 400, 401, 404, 418, 500])
def test_an_echoed_partner_key_never_reaches_a_message(status):
    # A proxy that echoes the request (Authorization header included) into its answer.
    body = b"<html>Bad gateway. Request headers: Authorization: Bearer s3cr3t-partner-key</html>"
    config = ClientConfig(base_url="https://api.example.com", api_key="s3cr3t-partner-key")
    with pytest.raises(SlipstreamError) as err:
        check_response(status, body, "the status of job x", job_id="x", scrub=config.scrub)
    assert "s3cr3t-partner-key" not in str(err.value)
    assert "***" in str(err.value)
