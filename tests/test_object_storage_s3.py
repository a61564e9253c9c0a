"""
Object storage for real: an S3-compatible server on loopback (moto's server mode), reached through the
Amazon provider's s3fs filesystem and an ``aws`` connection, as a partner's deployment reaches S3.
"""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import boto3
import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath
from moto import server as moto_server

from airflow_provider_slipstream.operators.slipstream import (
    SlipstreamBatchRecognizeOperator,
    SlipstreamRecognizeVideoOperator,
)
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import SimulatorServer
from tests.contract import expected_result

CONN_ID = "s3_test"


class FakeTI:
    try_number, task_id, map_index, start_date = 1, "t", -1, None

    def xcom_push(self, key: str, value: Any) -> None:
        pass


@pytest.fixture(scope="module")
def s3_endpoint():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch) -> str:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    name = f"videos-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return name


def upload_samples(bucket: str, prefix: str, copies: int) -> list[tuple[str, str]]:
    """(s3 URL, match kind) of each uploaded clip."""
    made = []
    for kind, sample in sample_videos().items():
        for index in range(copies):
            url = f"s3://{CONN_ID}@{bucket}/{prefix}/{sample.stem}_{index}{sample.suffix}"
            ObjectStoragePath(url).write_bytes(sample.read_bytes() + bytes([index]))
            made.append((url, kind))
    return made


def test_the_batch_lists_an_s3_prefix_and_writes_its_results_to_s3(sim_conn: SimulatorServer, bucket: str) -> None:
    made = dict(upload_samples(bucket, "inbox/2026-12-04", copies=2))
    output = f"s3://{CONN_ID}@{bucket}/results/2026-12-04.jsonl"
    summary = SlipstreamBatchRecognizeOperator(
        task_id="batch",
        videos_glob=f"s3://{CONN_ID}@{bucket}/inbox/2026-12-04/*",
        output_path=output,
        poll_interval=0.2,
    ).execute({"ti": FakeTI()})
    assert summary["videos"] == len(made)
    assert summary["failed"] == 0
    lines = [json.loads(line) for line in ObjectStoragePath(output).read_text().splitlines()]
    assert sorted(line["video"] for line in lines) == sorted(made)
    for line in lines:
        assert line == {"video": line["video"], **expected_result(line["job_id"], made[line["video"]])}
    # The checkpoint lives beside the results, in the bucket: a clear resubmits nothing.
    assert any(ObjectStoragePath(f"{output}.jobs").iterdir())
    jobs = sim_conn.state.jobs_created
    SlipstreamBatchRecognizeOperator(
        task_id="batch",
        videos_glob=f"s3://{CONN_ID}@{bucket}/inbox/2026-12-04/*",
        output_path=output,
        poll_interval=0.2,
    ).execute({"ti": FakeTI()})
    assert sim_conn.state.jobs_created == jobs


@pytest.mark.parametrize("upload_method", ["direct", "presigned"])
def test_the_single_video_operator_reads_an_s3_path(sim_conn: SimulatorServer, bucket: str, upload_method: str) -> None:
    (url, kind), *_ = upload_samples(bucket, "single", copies=1)
    result = SlipstreamRecognizeVideoOperator(
        task_id="recognize", video_path=url, upload_method=upload_method, poll_interval=0.2, durable=False
    ).execute({"ti": FakeTI()})
    assert result == expected_result(result["job_id"], kind)
