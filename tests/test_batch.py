"""
The batch operator and its pieces against the simulator: the results file's contract for every kind
of outcome, resuming without a second submit, 429 storms, the deferred path's events, shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_slipstream._pace import Pace
from airflow_provider_slipstream.batch import BatchRun, Ledger, iter_videos, shard_manifests
from airflow_provider_slipstream.exceptions import SlipstreamBatchFailedError, SlipstreamValidationError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.operators.slipstream import SlipstreamBatchRecognizeOperator
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import Fault, SimulatorServer
from airflow_provider_slipstream.triggers.slipstream import SlipstreamJobsTrigger
from tests.contract import EXPECTED_TRACKS, expected_catalog, expected_result
from tests.fakes import LogRecorder

SUBMIT = "/api/v4/video-recognition/"
KINDS = list(EXPECTED_TRACKS)
HANG_GUARD_SECONDS = 60.0


class FakeTI:
    def __init__(self) -> None:
        self.try_number, self.task_id, self.map_index = 1, "batch", -1
        self.start_date = None

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def clips(folder: Path, per_kind: int) -> list[Path]:
    """``per_kind`` distinct clips of each match kind (distinct bytes: distinct jobs)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for sample in sample_videos().values():
        for index in range(per_kind):
            path = folder / f"{sample.stem}_{index:04d}{sample.suffix}"
            path.write_bytes(sample.read_bytes() + f"#{index}".encode())
            made.append(path)
    return made


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def kind_of(video: str) -> str:
    return next(kind for kind, sample in sample_videos().items() if Path(video).name.startswith(sample.stem))


def operator(**kwargs: Any) -> SlipstreamBatchRecognizeOperator:
    kwargs.setdefault("poll_interval", 0.2)
    return SlipstreamBatchRecognizeOperator(task_id=f"batch_{uuid.uuid4().hex[:6]}", **kwargs)


def run_deferred(op: SlipstreamBatchRecognizeOperator, context: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """execute -> trigger run -> execute_complete, as the triggerer would, until the task returns."""
    deferrals = 0
    step = lambda: op.execute(context)  # noqa: E731
    while True:
        try:
            return step(), deferrals
        except TaskDeferred as deferred:
            deferrals += 1
            trigger = deferred.trigger
            # The trigger travels serialized: run the copy the triggerer would build.
            path, kwargs = trigger.serialize()
            assert path.endswith("SlipstreamJobsTrigger")
            assert len(json.dumps(kwargs)) < 1024 * 1024
            copy = SlipstreamJobsTrigger(**kwargs)

            async def first_event(trigger: SlipstreamJobsTrigger = copy) -> Any:
                async for event in trigger.run():
                    return event.payload
                return None

            event = asyncio.run(asyncio.wait_for(first_event(), HANG_GUARD_SECONDS))
            assert len(json.dumps(event)) < 1024 * 1024
            step = lambda event=event: op.execute_complete(context, event)  # noqa: E731


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_results_file_is_the_contract_for_every_video(
    sim_conn: SimulatorServer, tmp_path: Path, deferrable: bool
) -> None:
    made = clips(tmp_path / "inbox", per_kind=3)
    (tmp_path / "inbox" / "broken_empty.mp4").write_bytes(b"")  # refused before any request
    out = tmp_path / "results.jsonl"
    op = operator(
        videos_glob=f"{tmp_path}/inbox/*.mp4",
        output_path=str(out),
        deferrable=deferrable,
        jobs_per_trigger=2,
        max_failed=1,
    )
    # .mov and .avi clips are not matched by the glob: only the .mp4 ones are in the batch.
    listed = sorted(str(p) for p in made if p.suffix == ".mp4")
    if deferrable:
        summary, deferrals = run_deferred(op, {"ti": FakeTI()})
        assert deferrals >= len(listed) // 2  # two jobs per trigger
    else:
        summary = op.execute({"ti": FakeTI()})
    got = {line["video"]: line for line in lines(out)}
    assert sorted(got) == sorted([*listed, str(tmp_path / "inbox" / "broken_empty.mp4")])
    for video in listed:
        line = got[video]
        assert line == {"video": video, **expected_result(line["job_id"], kind_of(video))}
    broken = got[str(tmp_path / "inbox" / "broken_empty.mp4")]
    assert broken["job_id"] is None
    assert broken["error"]["type"] == "SlipstreamValidationError"
    assert "empty" in broken["error"]["message"]
    counts = {kind: sum(kind_of(v) == kind for v in listed) for kind in KINDS}
    assert summary == {
        "videos": len(listed) + 1,
        "counts": counts,
        "failed": 1,
        "competitor_hits": counts["competitor"],
        "output_path": str(out),
    }
    assert sim_conn.state.jobs_created == len(listed)


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
def test_enriched_lines_carry_the_catalog_for_internal_matches_only(
    sim_conn: SimulatorServer, tmp_path: Path, deferrable: bool
) -> None:
    clips(tmp_path / "inbox", per_kind=3)
    out = tmp_path / "results.jsonl"
    op = operator(videos_glob=f"{tmp_path}/inbox/*", output_path=str(out), deferrable=deferrable, enrich_catalog=True)
    summary = run_deferred(op, {"ti": FakeTI()})[0] if deferrable else op.execute({"ti": FakeTI()})

    assert summary["counts"]["internal"] == 3
    for line in lines(out):
        expected = {"video": line["video"], **expected_result(line["job_id"], kind_of(line["video"]))}
        if line["match"] == "internal":
            expected["catalog"] = expected_catalog()
        assert line == expected
    # One catalog request for the three internal matches of the same track; none for the others.
    assert sim_conn.state.count(path_glob="/api/v4/en/tracks/*") == 1


def test_an_expired_job_and_a_refused_upload_are_error_lines(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    made = clips(tmp_path / "in", per_kind=2)
    sim_conn.state.add_fault(Fault("status", path=SUBMIT, method="POST", status=400, remaining=1))
    batch = BatchRun(
        SlipstreamHook(), str(tmp_path / "out.jsonl"), "run1", log=LogRecorder(), deadline=time.monotonic() + 60
    )
    batch.submit_all((str(p) for p in made), max_concurrent_uploads=4)
    expired_job = next(iter(batch.waiting()))
    assert sim_conn.state.expire_job(expired_job)
    asyncio.run(batch.wait_all(0.2, 4))
    summary = batch.publish()
    got = lines(tmp_path / "out.jsonl")
    assert len(got) == len(made)
    errors = {line["error"]["type"]: line for line in got if "error" in line}
    assert set(errors) == {"SlipstreamValidationError", "SlipstreamJobNotFoundError"}
    assert "(400)" in errors["SlipstreamValidationError"]["error"]["message"]
    assert errors["SlipstreamJobNotFoundError"]["job_id"] == expired_job
    assert summary["failed"] == 2


def test_a_retry_resumes_every_job_and_submits_nothing_twice(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    made = clips(tmp_path / "in", per_kind=3)
    out = tmp_path / "out.jsonl"
    sim_conn.state.configure(processing_seconds=1)  # the first try ends while every job still runs
    first = BatchRun(SlipstreamHook(), str(out), "try1", log=LogRecorder(), deadline=time.monotonic() + 60)
    first.submit_all((str(p) for p in made[:7]), max_concurrent_uploads=3)  # "killed" after 7 submits
    assert sim_conn.state.jobs_created == 7
    sim_conn.state.configure(processing_seconds=0, queued_seconds=0)
    # One of the earlier jobs expired meanwhile: the retry submits that video once more.
    expired = next(iter(first.waiting()))
    sim_conn.state.expire_job(expired)
    summary = operator(videos=[str(p) for p in made], output_path=str(out)).execute({"ti": FakeTI()})
    assert sim_conn.state.jobs_created == len(made) + 1
    assert summary["failed"] == 0
    assert len(lines(out)) == len(made)
    assert expired not in {line["job_id"] for line in lines(out)}
    # A clear after success: the same results again, no submit.
    again = operator(videos=[str(p) for p in made], output_path=str(out)).execute({"ti": FakeTI()})
    assert again == summary
    assert sim_conn.state.jobs_created == len(made) + 1


def test_a_changed_file_is_a_new_input(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    made = clips(tmp_path / "in", per_kind=1)
    out = str(tmp_path / "out.jsonl")
    operator(videos=[str(p) for p in made], output_path=out).execute({"ti": FakeTI()})
    internal = next(p for p in made if kind_of(str(p)) == "internal")
    internal.write_bytes(sample_videos()["internal"].read_bytes() + b"a longer, different clip")
    operator(videos=[str(p) for p in made], output_path=out).execute({"ti": FakeTI()})
    assert sim_conn.state.jobs_created == len(made) + 1


def test_a_429_storm_slows_the_batch_without_failing_it(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    made = clips(tmp_path / "in", per_kind=5)
    storm = sim_conn.state.add_fault(
        Fault("status", path=SUBMIT, method="POST", status=429, headers={"Retry-After": "1"}, remaining=12)
    )
    pace = Pace(uploads=6, polls=6)
    batch = BatchRun(
        SlipstreamHook(pace=pace), str(tmp_path / "o.jsonl"), "r", log=LogRecorder(), deadline=time.monotonic() + 120
    )
    started = time.monotonic()
    batch.submit_all((str(p) for p in made), max_concurrent_uploads=6)
    asyncio.run(batch.wait_all(0.2, 6))
    assert storm.remaining == 0
    assert batch.publish()["failed"] == 0
    assert sim_conn.state.jobs_created == len(made)
    # The whole batch waited out Retry-After together, and halved its concurrency, then grew it again.
    assert pace.throttles >= 1
    assert time.monotonic() - started >= 1.0
    assert pace.uploads.limit > 1


def test_max_failed_fails_the_task_naming_the_file(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    good = clips(tmp_path / "in", per_kind=1)
    broken = []
    for index in range(2):
        broken.append(tmp_path / "in" / f"empty_{index}.mp4")
        broken[-1].write_bytes(b"")
    out = str(tmp_path / "out.jsonl")
    with pytest.raises(SlipstreamBatchFailedError, match=r"2 of 6 videos failed.*out\.jsonl"):
        operator(videos=[str(p) for p in good + broken], output_path=out, max_failed=1).execute({"ti": FakeTI()})
    assert len(lines(Path(out))) == 6
    summary = operator(videos=[str(p) for p in good + broken], output_path=out, max_failed=0.5).execute(
        {"ti": FakeTI()}
    )
    assert summary["failed"] == 2


def test_a_trigger_event_stays_small_and_the_task_defers_again(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    made = clips(tmp_path / "in", per_kind=4)
    op = operator(videos=[str(p) for p in made], output_path=str(tmp_path / "o.jsonl"), deferrable=True)
    batch = BatchRun(SlipstreamHook(), op.output_path, "r", log=LogRecorder(), deadline=time.monotonic() + 60)
    batch.submit_all((str(p) for p in made), max_concurrent_uploads=4)
    trigger = SlipstreamJobsTrigger(job_ids=list(batch.waiting()), poll_interval=0.2, max_event_bytes=1000, run="r")

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(asyncio.wait_for(first_event(), HANG_GUARD_SECONDS))
    assert event["status"] == "success"
    assert 0 < len(event["outcomes"]) < len(made)  # ended early at ~1000 bytes of results
    assert not event["timed_out"]


def test_a_deferral_whose_jobs_are_done_fires_an_interval_later_and_logs_the_runs_rate(
    sim_conn: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow fails a task whose trigger fires before the executor reported its deferring try
    # (apache/airflow#67287): a batch re-deferred over finished jobs must not fire at once.
    sim_conn.state.configure(processing_seconds=0, queued_seconds=0)
    made = [str(p) for p in clips(tmp_path / "in", per_kind=2)]
    log = LogRecorder()
    op = operator(videos=made, output_path=str(tmp_path / "o.jsonl"), deferrable=True, poll_interval=1.5)
    monkeypatch.setattr(SlipstreamBatchRecognizeOperator, "log", property(lambda _: log))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": FakeTI()})
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["first_poll_after"] == 2.0  # twice [workers] min_heartbeat_interval (tests/conftest.py)
    kwargs["started"] -= 100  # the run began 100 s ago, in an earlier process

    async def first_event() -> Any:
        async for event in SlipstreamJobsTrigger(**kwargs).run():
            return event.payload

    started = time.monotonic()
    event = asyncio.run(asyncio.wait_for(first_event(), HANG_GUARD_SECONDS))
    assert time.monotonic() - started >= 2.0
    assert len(event["outcomes"]) == len(made)
    assert sim_conn.state.count("GET", "/api/v4/video-recognition/*/") == len(made)  # one poll each, not two
    assert op.execute_complete({"ti": FakeTI()}, event)["failed"] == 0
    # The rate over the run's 100 s, not over the moment since the event arrived.
    rates = [float(msg.split("; ")[1].split(" videos/s")[0]) for _, msg in log.records if "videos/s" in msg]
    assert 0 < rates[-1] <= 0.1  # 8 videos in about 100 s (the bulk of an event at once: thousands per second)


def test_a_batch_near_its_bound_waits_in_the_worker_instead_of_a_trigger_that_would_fire_at_once(
    sim_conn: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "5")  # the default: first poll after 10 s
    sim_conn.state.configure(processing_seconds=0, queued_seconds=0)
    made = [str(p) for p in clips(tmp_path / "in", per_kind=1)]
    # 8 s left: a trigger could not wait its 10 s before polling, so the task polls here (no TaskDeferred).
    op = operator(videos=made, output_path=str(tmp_path / "o.jsonl"), deferrable=True, poll_interval=3, timeout=8)
    assert op.execute({"ti": FakeTI()})["failed"] == 0


def test_a_cleared_batch_logs_its_own_rate_not_the_earlier_runs_videos(
    sim_conn: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim_conn.state.configure(processing_seconds=0, queued_seconds=0)
    made = [str(p) for p in clips(tmp_path / "in", per_kind=3)]
    out = str(tmp_path / "o.jsonl")
    assert operator(videos=made, output_path=out).execute({"ti": FakeTI()})["failed"] == 0
    log = LogRecorder()
    monkeypatch.setattr(SlipstreamBatchRecognizeOperator, "log", property(lambda _: log))
    assert operator(videos=made, output_path=out).execute({"ti": FakeTI()})["failed"] == 0  # all done earlier
    lines_logged = [msg for _, msg in log.records if "videos/s" in msg]
    assert lines_logged
    assert all(" 0.0 videos/s" in msg for msg in lines_logged), lines_logged


def test_inputs_list_glob_manifest_and_shards(tmp_path: Path) -> None:
    made = [str(p) for p in clips(tmp_path / "in", per_kind=5)]
    assert list(iter_videos(videos=", ".join(made[:3]))) == made[:3]
    assert list(iter_videos(videos=json.dumps(made))) == made
    assert sorted(iter_videos(videos_glob=f"{tmp_path}/in/*.mov")) == sorted(p for p in made if p.endswith(".mov"))
    shards = shard_manifests(iter(made), shards=3, folder=str(tmp_path / "shards"))
    parts = [list(iter_videos(manifest=s)) for s in shards]
    assert sorted(v for part in parts for v in part) == sorted(made)
    assert all(parts)
    # Stable: the same listing splits the same way.
    assert [list(iter_videos(manifest=s)) for s in shard_manifests(made, shards=3, folder=str(tmp_path / "b"))] == parts
    with pytest.raises(SlipstreamValidationError, match="no wildcard"):
        list(iter_videos(videos_glob=f"{tmp_path}/in/"))


def test_bad_arguments_are_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="exactly one of videos"):
        SlipstreamBatchRecognizeOperator(task_id="t", output_path="o", videos=["a"], manifest="m")
    with pytest.raises(ValueError, match="max_failed"):
        SlipstreamBatchRecognizeOperator(task_id="t", output_path="o", videos=["a"], max_failed=1.5)
    with pytest.raises(ValueError, match="jobs_per_trigger"):
        SlipstreamBatchRecognizeOperator(task_id="t", output_path="o", videos=["a"], jobs_per_trigger=10_000)
    with pytest.raises(SlipstreamValidationError, match="output_path"):
        SlipstreamBatchRecognizeOperator(task_id="t", output_path=" ", videos=["a"]).execute({"ti": FakeTI()})


def test_a_submit_phase_leaves_one_ledger_part(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    made = clips(tmp_path / "in", per_kind=5)
    batch = BatchRun(
        SlipstreamHook(), str(tmp_path / "o.jsonl"), "r", log=LogRecorder(), deadline=time.monotonic() + 60
    )
    batch.submit_all((str(p) for p in made), max_concurrent_uploads=4)
    assert len(list((tmp_path / "o.jsonl.jobs").iterdir())) == 1
    again = BatchRun(
        SlipstreamHook(), str(tmp_path / "o.jsonl"), "r", log=LogRecorder(), deadline=time.monotonic() + 60
    )
    assert again.waiting() == batch.waiting()
    assert len(again.waiting()) == len(made)


def test_ledger_group_commit_compaction_and_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "o.jsonl.jobs"
    ledger = Ledger(folder, local=True)
    for index in range(70):
        assert ledger.commit({"k": "listed", "video": f"v{index}"}) == index
    assert len(list(folder.iterdir())) == 70
    assert [r["video"] for r in Ledger(folder, local=True).load()] == [f"v{index}" for index in range(70)]
    assert len(list(folder.iterdir())) == 1  # merged on load
    # A writer whose clock runs behind the last part's still writes after it.
    monkeypatch.setattr(time, "time_ns", lambda: 1)
    late = Ledger(folder, local=True)
    list(late.load())
    late.commit({"k": "listed", "video": "after"})
    assert [r["video"] for r in Ledger(folder, local=True).records()][-1] == "after"
    shutil.rmtree(folder)
    assert list(Ledger(folder, local=True).records()) == []


def test_a_torn_last_line_is_skipped_and_a_local_part_is_never_half_written(tmp_path: Path) -> None:
    folder = tmp_path / "o.jsonl.jobs"
    Ledger(folder, local=True).commit({"k": "listed", "video": "a"})
    (part,) = folder.iterdir()
    with part.open("a") as out:
        out.write('{"k": "listed", "vid')  # a write that never completed (another writer's)
    assert [r["video"] for r in Ledger(folder, local=True).records()] == ["a"]
    with part.open("a") as out:
        out.write('\n{"k": "listed", "video": "b"}\n')
    with pytest.raises(ValueError, match="corrupt"):
        list(Ledger(folder, local=True).records())
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def run_past_its_bound(made: list[str], out: str, bound: float = 2) -> list[dict[str, Any]]:
    """
    A batch bounded at ``bound`` seconds that cannot finish in them: it fails (``max_failed=0``)
    within the bound plus the uploads running then, whatever the API asks. Its results lines.
    """
    started = time.monotonic()
    with pytest.raises(SlipstreamBatchFailedError):
        operator(videos=made, output_path=out, max_concurrent_uploads=2, timeout=bound, max_failed=0).execute(
            {"ti": FakeTI()}
        )
    assert time.monotonic() - started < bound + 2
    return lines(Path(out))


def retry_submits_the_rest(sim: SimulatorServer, made: list[str], out: str) -> None:
    """Once the API is well again, a retry completes the batch with one job per video in all."""
    sim.state.clear_faults()
    assert operator(videos=made, output_path=out).execute({"ti": FakeTI()})["failed"] == 0
    assert sim.state.jobs_created == len(made)


def test_the_submit_phase_stops_at_the_deadline_and_a_retry_submits_the_rest(
    sim_conn: SimulatorServer, tmp_path: Path
) -> None:
    made = [str(p) for p in clips(tmp_path / "in", per_kind=4)]
    out = str(tmp_path / "out.jsonl")
    sim_conn.state.add_fault(Fault("delay", path=SUBMIT, method="POST", seconds=0.5))
    errors = [line["error"]["message"] for line in run_past_its_bound(made, out) if "error" in line]
    late = [message for message in errors if "Not submitted before the batch's timeout" in message]
    assert late
    # The others were submitted, and their jobs were still running at the bound.
    assert len(errors) == len(made)
    assert sim_conn.state.jobs_created == len(made) - len(late)
    retry_submits_the_rest(sim_conn, made, out)


def test_submits_refused_with_a_long_retry_after_stop_at_the_deadline(
    sim_conn: SimulatorServer, tmp_path: Path
) -> None:
    made = [str(p) for p in clips(tmp_path / "in", per_kind=2)]
    out = str(tmp_path / "out.jsonl")
    sim_conn.state.add_fault(
        Fault("status", path=SUBMIT, method="POST", status=429, headers={"Retry-After": "20"}, remaining=3)
    )
    # Not 20 s: the pace cuts the wait at the bound.
    not_sent = [line for line in run_past_its_bound(made, out) if "Not s" in line.get("error", {}).get("message", "")]
    assert not_sent
    assert sim_conn.state.jobs_created == 0  # every one refused, or never sent
    retry_submits_the_rest(sim_conn, made, out)


def test_an_expired_earlier_job_is_not_submitted_again_past_the_deadline(
    sim_conn: SimulatorServer, tmp_path: Path
) -> None:
    made = [str(p) for p in clips(tmp_path / "in", per_kind=1)][:1]
    out = str(tmp_path / "out.jsonl")
    first = BatchRun(SlipstreamHook(), out, "try1", log=LogRecorder(), deadline=time.monotonic() + 60)
    first.submit_all(made, max_concurrent_uploads=1)
    (job_id,) = first.waiting()
    sim_conn.state.expire_job(job_id)
    late = BatchRun(SlipstreamHook(), out, "try2", log=LogRecorder(), deadline=time.monotonic() - 1)
    late.submit_all(made, max_concurrent_uploads=1)
    late.record(job_id, {"error": {"type": "SlipstreamJobNotFoundError", "message": "expired"}})
    assert sim_conn.state.jobs_created == 1
    late.publish()
    (line,) = lines(Path(out))
    assert "Not submitted before the batch's timeout" in line["error"]["message"]


def test_local_urls_and_an_unchanged_file_behind_a_chmod(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    made = clips(tmp_path / "in", per_kind=1)
    videos = [f"file://{p}" for p in made]
    out = f"local://{tmp_path}/out.jsonl"
    assert operator(videos=videos, output_path=out).execute({"ti": FakeTI()})["failed"] == 0
    assert (tmp_path / "out.jsonl.jobs").is_dir()
    made[0].chmod(0o600)  # changes st_ctime, not the video
    assert operator(videos=videos, output_path=out).execute({"ti": FakeTI()})["failed"] == 0
    assert sim_conn.state.jobs_created == len(made)


@pytest.mark.parametrize("where", ["worker", "trigger"])
def test_polls_stop_at_the_deadline_through_a_429_storm(sim_conn: SimulatorServer, tmp_path: Path, where: str) -> None:
    made = clips(tmp_path / "in", per_kind=1)
    batch = BatchRun(
        SlipstreamHook(pace=Pace(uploads=2, polls=2)),
        str(tmp_path / "o.jsonl"),
        "r",
        log=LogRecorder(),
        deadline=time.monotonic() + 60,
    )
    batch.submit_all((str(p) for p in made), max_concurrent_uploads=2)
    assert len(batch.waiting()) == len(made)
    batch.deadline = time.monotonic() + 3
    sim_conn.state.add_fault(
        Fault("status", path="/api/v4/video-recognition/*/", method="GET", status=429, headers={"Retry-After": "20"})
    )
    started = time.monotonic()
    if where == "worker":
        asyncio.run(batch.wait_all(0.2, 2))
        batch.publish()
        messages = [line["error"]["message"] for line in lines(tmp_path / "o.jsonl")]
        assert len(messages) == len(made)
        assert all("did not complete before the batch's timeout" in message for message in messages)
    else:
        trigger = SlipstreamJobsTrigger(job_ids=list(batch.waiting()), poll_interval=0.2, deadline=time.time() + 3)

        async def first_event() -> Any:
            async for event in trigger.run():
                return event.payload

        event = asyncio.run(asyncio.wait_for(first_event(), HANG_GUARD_SECONDS))
        assert event["timed_out"], event
        assert event["outcomes"] == []
    # Within the bound plus one request's timeouts, whatever Retry-After asks.
    assert time.monotonic() - started < 3 + 5 + 2


def test_a_temporary_poll_error_is_polled_again_by_the_next_run(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    made = [str(p) for p in clips(tmp_path / "in", per_kind=1)]
    out = str(tmp_path / "out.jsonl")
    sim_conn.state.configure(processing_seconds=0, queued_seconds=0)
    sim_conn.state.add_fault(
        Fault("status", path="/api/v4/video-recognition/*/", method="GET", status=409, remaining=1)
    )
    with pytest.raises(SlipstreamBatchFailedError):
        operator(videos=made, output_path=out, max_failed=0).execute({"ti": FakeTI()})
    (odd,) = [line for line in lines(Path(out)) if "error" in line]
    summary = operator(videos=made, output_path=out, max_failed=0).execute({"ti": FakeTI()})
    assert summary["failed"] == 0
    assert sim_conn.state.jobs_created == len(made)
    assert {line["video"]: line for line in lines(Path(out))}[odd["video"]]["job_id"] == odd["job_id"]


def test_the_results_line_is_the_latest_outcome(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    clip = tmp_path / "in" / "internal_clip.mp4"
    clip.mkdir(parents=True)  # first a directory: refused
    out = str(tmp_path / "out.jsonl")
    with pytest.raises(SlipstreamBatchFailedError):
        operator(videos=[str(clip)], output_path=out, max_failed=0).execute({"ti": FakeTI()})
    assert "is a directory" in lines(Path(out))[0]["error"]["message"]
    clip.rmdir()
    with pytest.raises(SlipstreamBatchFailedError):
        operator(videos=[str(clip)], output_path=out, max_failed=0).execute({"ti": FakeTI()})
    assert "does not exist" in lines(Path(out))[0]["error"]["message"]


def test_a_relative_glob_lists_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clips(tmp_path, per_kind=1)
    monkeypatch.chdir(tmp_path)
    assert sorted(iter_videos(videos_glob="*.mp4")) == [
        "external_indie_track_0000.mp4",
        "internal_golden_hour_0000.mp4",
    ]


def test_a_kill_mid_batch_then_a_retry_submits_no_checkpointed_video_twice(
    sim_conn: SimulatorServer, tmp_path: Path
) -> None:
    made = [str(p) for p in clips(tmp_path / "in", per_kind=10)]
    out = tmp_path / "out.jsonl"
    # Each submit takes 50 ms, so the kill lands with uploads in flight.
    sim_conn.state.add_fault(Fault("delay", path=SUBMIT, method="POST", seconds=0.05))
    code = (
        "import json, sys\n"
        "from airflow_provider_slipstream.operators.slipstream import SlipstreamBatchRecognizeOperator\n"
        "class TI:\n    try_number, task_id, map_index, start_date = 1, 't', -1, None\n"
        "op = SlipstreamBatchRecognizeOperator(task_id='t', videos=json.loads(sys.argv[1]), output_path=sys.argv[2],"
        " max_concurrent_uploads=4)\n"
        "op.execute({'ti': TI()})\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code, json.dumps(made), str(out)])
    try:
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while sim_conn.state.jobs_created < 15 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.005)
        os.kill(worker.pid, signal.SIGKILL)  # as a worker's host dies: nothing runs after this
    finally:
        worker.wait()
    time.sleep(0.5)  # requests the server had already received finish
    created = sim_conn.state.jobs_created
    checkpointed = {
        r["video"]: r["job_id"] for r in Ledger(Path(f"{out}.jobs"), local=True).records() if r["k"] == "job"
    }
    assert 15 <= created < len(made)
    # What the kill can cost: only the uploads in flight whose job Slipstream created but whose id had
    # not reached the ledger yet (at most max_concurrent_uploads).
    assert 0 <= created - len(checkpointed) <= 4
    sim_conn.state.clear_faults()
    sim_conn.state.configure(processing_seconds=0)
    summary = operator(videos=made, output_path=str(out)).execute({"ti": FakeTI()})
    assert summary["failed"] == 0
    assert sim_conn.state.jobs_created == created + len(made) - len(checkpointed)
    got = {line["video"]: line["job_id"] for line in lines(out)}
    assert sorted(got) == sorted(made)
    for video, job_id in checkpointed.items():
        assert got[video] == job_id  # resumed, not submitted again


def test_a_restarted_trigger_picks_up_every_job_from_its_kwargs(sim_conn: SimulatorServer, tmp_path: Path) -> None:
    made = clips(tmp_path / "in", per_kind=3)
    sim_conn.state.configure(processing_seconds=2)
    batch = BatchRun(
        SlipstreamHook(), str(tmp_path / "o.jsonl"), "r", log=LogRecorder(), deadline=time.monotonic() + 60
    )
    batch.submit_all((str(p) for p in made), max_concurrent_uploads=4)
    _, kwargs = SlipstreamJobsTrigger(job_ids=list(batch.waiting()), poll_interval=0.2, run="r").serialize()

    async def first_event(trigger: SlipstreamJobsTrigger) -> Any:
        async for event in trigger.run():
            return event.payload

    async def killed_then_restarted() -> Any:
        with contextlib.suppress(TimeoutError):  # the triggerer died: its trigger was cancelled mid-wait
            await asyncio.wait_for(first_event(SlipstreamJobsTrigger(**kwargs)), 0.5)
        return await asyncio.wait_for(first_event(SlipstreamJobsTrigger(**kwargs)), HANG_GUARD_SECONDS)

    event = asyncio.run(killed_then_restarted())
    assert sorted(job_id for job_id, _, _ in event["outcomes"]) == sorted(batch.waiting())
    for job_id, part, retry in event["outcomes"]:
        assert part == expected_result(job_id, kind_of(batch.waiting()[job_id]))
        assert retry is False
