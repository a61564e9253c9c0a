"""Unit tests of the local input checks in ``airflow_provider_slipstream.validation``."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_slipstream.exceptions import SlipstreamValidationError
from airflow_provider_slipstream.validation import (
    ALLOWED_EXTENSIONS,
    MAX_DIRECT_UPLOAD_BYTES,
    STORAGE_KEY_PREFIX,
    parse_labels,
    validate_filename,
    validate_job_id,
    validate_size,
    validate_storage_key,
)

JOB_ID = "7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10"
MB = 1024 * 1024


class TestValidateJobId:
    def test_canonical_uuid_is_returned_unchanged(self) -> None:
        assert validate_job_id(JOB_ID) == JOB_ID

    def test_uppercase_uuid_is_lowercased(self) -> None:
        assert validate_job_id(JOB_ID.upper()) == JOB_ID

    @pytest.mark.parametrize(
        "job_id",
        [
            pytest.param("../x", id="traversal"),
            pytest.param("abc", id="abc"),
            pytest.param("", id="empty"),
            pytest.param(None, id="none"),
            pytest.param(123, id="int"),
            pytest.param(f"{JOB_ID}x", id="suffix"),
            pytest.param(f"{JOB_ID}/", id="trailing-slash"),
            pytest.param(f"{JOB_ID}/../x", id="uuid-with-path"),
            pytest.param(f"../{JOB_ID}", id="path-with-uuid"),
            pytest.param(f"{{{JOB_ID}}}", id="braces"),
            pytest.param(f"urn:uuid:{JOB_ID}", id="urn"),
            pytest.param(JOB_ID.replace("-", ""), id="no-hyphens"),
            pytest.param(f" {JOB_ID} ", id="spaces"),
            pytest.param(f"{JOB_ID}\n", id="newline"),
            pytest.param(JOB_ID[:-1] + "g", id="non-hex"),
            pytest.param(JOB_ID.replace("-", "_"), id="underscores"),
            pytest.param(f"{JOB_ID}?x=1", id="query"),
            pytest.param(JOB_ID.encode(), id="bytes"),
            pytest.param(["7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10"], id="list"),
        ],
    )
    def test_rejects(self, job_id: Any) -> None:
        with pytest.raises(SlipstreamValidationError) as info:
            validate_job_id(job_id)
        message = str(info.value)
        assert repr(job_id) in message
        assert "expected a UUID" in message
        assert "Check the job_id argument" in message

    def test_rejection_is_a_value_error_without_http_status(self) -> None:
        with pytest.raises(ValueError, match="not a Slipstream job id") as info:
            validate_job_id("abc")
        assert info.value.http_status is None


class TestValidateFilename:
    @pytest.mark.parametrize(
        "name", ["clip.mp4", "clip.mov", "clip.avi", "clip.mpeg", "CLIP.MP4", "clip.MoV", "my.clip.v2.avi"]
    )
    def test_accepts(self, name: str) -> None:
        assert validate_filename(name) == name

    @pytest.mark.parametrize("name", ["clip.mkv", "clip", "clip.mp4.exe", "clip.mpg", "clip.mp4 ", "mp4", ""])
    def test_rejects(self, name: str) -> None:
        with pytest.raises(SlipstreamValidationError) as info:
            validate_filename(name)
        message = str(info.value)
        assert repr(name) in message
        for ext in ALLOWED_EXTENSIONS:
            assert ext in message
        assert "Convert the video" in message

    def test_allowed_extensions_are_the_documented_four(self) -> None:
        assert set(ALLOWED_EXTENSIONS) == {".mp4", ".mov", ".avi", ".mpeg"}


class TestValidateStorageKey:
    def test_accepts_a_key_from_the_upload_url_step(self) -> None:
        key = "video-recognition/3f1e_clip.mp4"
        assert validate_storage_key(key) == key

    @pytest.mark.parametrize(
        "key",
        [
            pytest.param("temp/video-recognition/clip.mp4", id="wrong-prefix"),
            pytest.param("Video-Recognition/clip.mp4", id="prefix-case"),
            pytest.param("video-recognition", id="no-slash"),
            pytest.param("/video-recognition/clip.mp4", id="leading-slash"),
            pytest.param("video-recognition/../secret", id="dotdot"),
            pytest.param("video-recognition/a/../../b", id="dotdot-deep"),
            pytest.param(None, id="none"),
            pytest.param(123, id="int"),
            pytest.param(b"video-recognition/clip.mp4", id="bytes"),
            pytest.param("", id="empty"),
        ],
    )
    def test_rejects(self, key: Any) -> None:
        with pytest.raises(SlipstreamValidationError) as info:
            validate_storage_key(key)
        message = str(info.value)
        assert repr(key) in message
        assert repr(STORAGE_KEY_PREFIX) in message
        assert "create_upload_url" in message


class TestValidateSize:
    def test_direct_upload_limit_is_100_mb(self) -> None:
        assert MAX_DIRECT_UPLOAD_BYTES == 100 * MB

    @pytest.mark.parametrize("size", [0, -1])
    def test_empty_file(self, size: int) -> None:
        with pytest.raises(SlipstreamValidationError, match=r"'clip\.mp4' is empty \(0 bytes\)"):
            validate_size("clip.mp4", size, limit=MAX_DIRECT_UPLOAD_BYTES)

    def test_empty_file_without_limit(self) -> None:
        with pytest.raises(SlipstreamValidationError, match="empty"):
            validate_size("clip.mp4", 0, limit=None)

    def test_over_the_limit(self) -> None:
        with pytest.raises(SlipstreamValidationError) as info:
            validate_size("big.mp4", 150 * MB, limit=MAX_DIRECT_UPLOAD_BYTES)
        message = str(info.value)
        assert "'big.mp4' is 150.0 MB" in message
        assert "100 MB limit" in message
        assert "upload_method='presigned'" in message

    def test_one_byte_over_the_limit(self) -> None:
        with pytest.raises(SlipstreamValidationError, match="100 MB limit"):
            validate_size("big.mp4", MAX_DIRECT_UPLOAD_BYTES + 1, limit=MAX_DIRECT_UPLOAD_BYTES)

    @pytest.mark.parametrize("size", [1, 50 * MB, MAX_DIRECT_UPLOAD_BYTES])
    def test_within_the_limit(self, size: int) -> None:
        assert validate_size("clip.mp4", size, limit=MAX_DIRECT_UPLOAD_BYTES) is None

    def test_no_limit(self) -> None:
        assert validate_size("huge.mp4", 10 * 1024 * MB, limit=None) is None


@pytest.mark.parametrize(
    ("rendered", "labels"),
    [
        ("Epidemic Sound, Artlist", ("Epidemic Sound", "Artlist")),
        ("Epidemic Sound", ("Epidemic Sound",)),
        ("Artist's Choice, Artlist", ("Artist's Choice", "Artlist")),  # an apostrophe inside a name
        ('["Epidemic Sound", "Artlist"]', ("Epidemic Sound", "Artlist")),
        ("['Epidemic Sound', 'Artlist']", ("Epidemic Sound", "Artlist")),  # how a list param renders
        (["Epidemic Sound", " Artlist "], ("Epidemic Sound", "Artlist")),  # native rendering, an XComArg
        ("('Artlist', 'Epidemic Sound')", ("Artlist", "Epidemic Sound")),  # a tuple's repr
        ("[]", ()),
        ("", None),
        ("None", None),  # how a template renders a None param
        ("null", None),
        (None, None),
    ],
)
def test_templated_label_lists_mean_the_labels_they_name(rendered, labels):
    assert parse_labels(rendered, "competitor_labels") == labels


@pytest.mark.parametrize(
    "rendered", ["[1, 2]", "['unclosed", "('Artlist', 'Epidemic", "'Artlist', 'Musicbed'", {"Epidemic Sound": 1}, 42]
)
def test_label_lists_that_name_no_labels_are_refused(rendered):
    with pytest.raises(SlipstreamValidationError, match="competitor_labels must be a list of names"):
        parse_labels(rendered, "competitor_labels")
