"""
The batch DAG on a CeleryExecutor deployment: PostgreSQL metadata database, Redis broker, two
Celery workers (concurrency 4 each), scheduler, DAG processor, triggerer and API server, all
separate processes started here on loopback ports.

One run of ``slipstream_audioverify_batch`` over many generated clips (scenario keyword in
each name). Checked: each clip recognised exactly once, with the outcome its name asks for;
the results are XComs in the PostgreSQL database; the summary counts; every recognition
waited on the triggerer with our trigger; and both workers ran tasks.

Then one run of ``slipstream_audioverify_catalog`` over 2,000 clips in 4 sharded batches (one task
instance each, deferrable): every clip recognised exactly once, its line in its shard's results
file, the shards spread over both workers and waiting on the triggerer.

Switched: runs with ``SLIPSTREAM_E2E_CELERY=1``, ``-m celery``, or when this file is named on
the command line (see conftest.py). Needs ``redis-server`` and ``postgresql`` installed: the
test fails, with the install command, when they are not.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_slipstream.simulator import SimulatorServer, SimulatorState
from tests.contract import expected_result
from tests.e2e.conftest import AirflowDeployment, TaskInstanceWatcher
from tests.e2e.services import PostgresServer, celery_deployment, start_celery_worker

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.e2e, pytest.mark.celery, pytest.mark.timeout(900)]

BATCH = "slipstream_audioverify_batch"
RUN_ID = "e2e_celery_batch"
#: Simulator scenario keyword in the file name -> the match kind the provider reports.
KINDS = {"internal": "internal", "competitor": "competitor", "external": "external", "no_music": "no_match"}
CLIPS = 60
WORKERS = ("e2e-worker-a", "e2e-worker-b")
CONCURRENCY = 4
TRIGGER_CLASSPATH = "airflow_provider_slipstream.triggers.slipstream.SlipstreamJobTrigger"
CELERY_DONE = re.compile(r"Task execute_workload\[[0-9a-f-]+\] succeeded")
STARTUP_TIMEOUT = 240
RUN_TIMEOUT = 480
CATALOG = "slipstream_audioverify_catalog"
CATALOG_RUN = "e2e_celery_catalog"
CATALOG_CLIPS = 2000
CATALOG_SHARDS = 4
JOBS_TRIGGER_CLASSPATH = "airflow_provider_slipstream.triggers.slipstream.SlipstreamJobsTrigger"


@dataclass
class Outcome:
    deployment: AirflowDeployment
    postgres: PostgresServer
    sim: SimulatorServer
    clips: list[tuple[Path, str]]
    state: str
    tis: dict[tuple[str, int], dict[str, Any]]
    watcher: TaskInstanceWatcher
    jobs_created: int
    seconds: float


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[tuple[Path, str]]:
    """CLIPS small .mp4 files, cycling the four scenarios: (path, expected match kind)."""
    folder = tmp_path_factory.mktemp("clips")
    made = []
    for i in range(CLIPS):
        keyword = list(KINDS)[i % len(KINDS)]
        path = folder / f"clip_{i:03d}_{keyword}.mp4"
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + f"e2e clip {i}".encode() * 64)
        made.append((path, KINDS[keyword]))
    return made


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorState(queued_seconds=0.5, processing_seconds=3.0)) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(sim, postgres, redis, process_registry, tmp_path_factory, wall_clock) -> AirflowDeployment:
    start = time.monotonic()
    airflow = celery_deployment(
        tmp_path_factory.mktemp("airflow_home"), process_registry, sim, postgres, redis, concurrency=CONCURRENCY
    )
    airflow.start_core([BATCH, CATALOG], timeout=STARTUP_TIMEOUT)
    for name in WORKERS:
        start_celery_worker(airflow, name, CONCURRENCY, STARTUP_TIMEOUT)
    wall_clock["start-up (postgres, redis, airflow, 2 workers)"] = time.monotonic() - start
    return airflow


@pytest.fixture(scope="module")
def outcome(deployment, postgres, sim, clips, process_registry, wall_clock) -> Outcome:
    api = deployment.api
    api.unpause(BATCH)
    jobs_before = sim.state.jobs_created
    start = time.monotonic()
    with TaskInstanceWatcher(api, interval=1.0) as watcher:
        api.trigger(BATCH, RUN_ID, {"video_paths": [str(path) for path, _ in clips]})
        states = api.wait_for_runs([(BATCH, RUN_ID)], RUN_TIMEOUT, check=process_registry.check_alive)
    seconds = time.monotonic() - start
    wall_clock[f"DAG run ({len(clips)} clips)"] = seconds
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in api.task_instances(BATCH, RUN_ID)}
    jobs = sim.state.jobs_created - jobs_before
    hosts = Counter(ti["hostname"] for (task_id, _), ti in tis.items() if task_id == "recognize")
    print(f"\n[e2e] CeleryExecutor: {len(clips)} clips in {seconds:.1f}s, run {states[(BATCH, RUN_ID)]}")
    print(f"[e2e] simulator jobs created: {jobs}; recognize task instances per worker: {dict(hosts)}")
    return Outcome(deployment, postgres, sim, clips, states[(BATCH, RUN_ID)], tis, watcher, jobs, seconds)


def test_batch_run_succeeded(outcome: Outcome):
    assert outcome.state == "success", outcome.deployment.failure_report(outcome.tis.values())
    recognize = sorted(i for task_id, i in outcome.tis if task_id == "recognize")
    assert recognize == list(range(len(outcome.clips)))
    not_ok = {key: ti["state"] for key, ti in outcome.tis.items() if ti["state"] != "success"}
    assert not not_ok


def test_every_clip_recognised_exactly_once_with_its_outcome(outcome: Outcome):
    assert outcome.jobs_created == len(outcome.clips)
    # One simulator job per file name: no clip submitted twice, none left out.
    names = Counter(job.filename for job in outcome.sim.state.jobs.values())
    assert names == Counter(path.name for path, _ in outcome.clips)

    api = outcome.deployment.api
    job_ids = set()
    for i, (path, kind) in enumerate(outcome.clips):
        result = api.xcom(BATCH, RUN_ID, "recognize", i)
        assert result == expected_result(result["job_id"], kind), path
        assert outcome.sim.state.jobs[result["job_id"]].filename == path.name
        job_ids.add(result["job_id"])
    assert len(job_ids) == len(outcome.clips)


def test_results_are_xcoms_in_the_postgres_metadata_database(outcome: Outcome):
    rows = outcome.postgres.query(
        "SELECT map_index, value FROM xcom WHERE dag_id = %s AND run_id = %s AND task_id = 'recognize' "
        "AND key = 'return_value' ORDER BY map_index",
        BATCH,
        RUN_ID,
    )
    assert [map_index for map_index, _ in rows] == list(range(len(outcome.clips)))
    for (map_index, value), (_, kind) in zip(rows, outcome.clips, strict=True):
        stored = json.loads(value) if isinstance(value, (str, bytes)) else value
        assert stored["match"] == kind, map_index


def test_summary_counts_every_kind(outcome: Outcome):
    summary = outcome.deployment.api.xcom(BATCH, RUN_ID, "summarize")
    expected = Counter(kind for _, kind in outcome.clips)
    assert summary["videos"] == len(outcome.clips)
    assert summary["counts"] == {kind: expected[kind] for kind in KINDS.values()}
    assert len(summary["competitor_hits"]) == expected["competitor"]
    assert {hit["label"] for hit in summary["competitor_hits"]} == {"Epidemic Sound"}


def test_every_recognition_waited_on_the_triggerer(outcome: Outcome):
    deployment, watcher = outcome.deployment, outcome.watcher
    triggerer_jobs = {job["id"] for job in deployment.api.get("/jobs", job_type="TriggererJob")["jobs"]}
    assert triggerer_jobs
    seen_deferred = [
        i for i in range(len(outcome.clips)) if "deferred" in watcher.states(BATCH, RUN_ID, "recognize", i)
    ]
    # The watcher polls once a second; it must have caught most of the ~3.5 s waits.
    assert len(seen_deferred) >= len(outcome.clips) // 2, seen_deferred
    for i in range(len(outcome.clips)):
        files = [p for p in deployment.task_log_files(BATCH, RUN_ID, "recognize", i) if ".trigger." in p.name]
        assert len(files) == 1, (i, files)
        assert int(files[0].name.rsplit(".", 2)[-2]) in triggerer_jobs
        text = files[0].read_text()
        assert f'"logger":"{TRIGGER_CLASSPATH}"' in text, i
        assert "Trigger fired event" in text, i
    for key, trigger in watcher.triggers.items():
        assert trigger["classpath"] == TRIGGER_CLASSPATH, key


def test_tasks_ran_on_both_celery_workers(outcome: Outcome):
    hosts = Counter(ti["hostname"] for ti in outcome.tis.values())
    assert set(hosts) == set(WORKERS), hosts
    assert all(hosts[name] >= 2 for name in WORKERS), hosts
    # Through the broker: each worker's Celery log shows the workloads it ran (two per
    # recognition: submit + defer, then resume).
    done = {
        name: len(CELERY_DONE.findall(outcome.deployment.procs.get(f"celery-worker-{name}").log_text()))
        for name in WORKERS
    }
    print(f"[e2e] Celery workloads succeeded per worker: {done}")
    assert all(count >= 2 for count in done.values()), done
    assert sum(done.values()) >= 2 * len(outcome.clips) + 2, done


@dataclass
class CatalogOutcome:
    state: str
    tis: dict[tuple[str, int], dict[str, Any]]
    summaries: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    new_jobs: Counter[str]
    jobs_created: int


@pytest.fixture(scope="module")
def catalog(outcome, deployment, sim, process_registry, tmp_path_factory, wall_clock) -> CatalogOutcome:
    """After the mapped run (``outcome``), so that the two do not share the workers."""
    api = deployment.api
    api.unpause(CATALOG)
    work = tmp_path_factory.mktemp("catalog")
    known = set(sim.state.jobs)
    jobs_before = sim.state.jobs_created
    start = time.monotonic()
    api.trigger(CATALOG, CATALOG_RUN, {"clips": CATALOG_CLIPS, "shards": CATALOG_SHARDS, "workdir": str(work)})
    states = api.wait_for_runs([(CATALOG, CATALOG_RUN)], RUN_TIMEOUT, check=process_registry.check_alive)
    seconds = time.monotonic() - start
    wall_clock[f"catalog run ({CATALOG_CLIPS} clips, {CATALOG_SHARDS} shards)"] = seconds
    tis = {(ti["task_id"], ti["map_index"]): ti for ti in api.task_instances(CATALOG, CATALOG_RUN)}
    summaries = [api.xcom(CATALOG, CATALOG_RUN, "recognize_shard", i) for i in range(CATALOG_SHARDS)]
    lines = [json.loads(line) for s in summaries for line in Path(s["output_path"]).read_text().splitlines()]
    new_jobs = Counter(job.filename for job_id, job in sim.state.jobs.items() if job_id not in known)
    print(f"\n[e2e] catalog: {CATALOG_CLIPS} clips in {CATALOG_SHARDS} shards, {seconds:.1f}s, {states}")
    return CatalogOutcome(
        states[(CATALOG, CATALOG_RUN)], tis, summaries, lines, new_jobs, sim.state.jobs_created - jobs_before
    )


def test_a_sharded_batch_recognises_2000_clips_exactly_once(catalog: CatalogOutcome):
    assert catalog.state == "success", {key: ti["state"] for key, ti in catalog.tis.items()}
    assert catalog.jobs_created == CATALOG_CLIPS
    assert len(catalog.new_jobs) == CATALOG_CLIPS
    assert set(catalog.new_jobs.values()) == {1}  # no clip submitted twice
    assert sum(s["videos"] for s in catalog.summaries) == CATALOG_CLIPS
    assert [s["failed"] for s in catalog.summaries] == [0] * CATALOG_SHARDS
    assert len(catalog.lines) == len({line["video"] for line in catalog.lines}) == CATALOG_CLIPS
    names = {line["video"].rsplit("/", 1)[-1] for line in catalog.lines}
    assert names == set(catalog.new_jobs)
    for line in catalog.lines:
        keyword = next(k for k in KINDS if line["video"].rsplit("/", 1)[-1].startswith(k))
        assert line == {"video": line["video"], **expected_result(line["job_id"], KINDS[keyword])}


def test_the_shards_ran_on_both_workers_and_waited_on_the_triggerer(catalog: CatalogOutcome, deployment):
    shards = {i: ti for (task_id, i), ti in catalog.tis.items() if task_id == "recognize_shard"}
    assert sorted(shards) == list(range(CATALOG_SHARDS))
    assert {ti["hostname"] for ti in shards.values()} == set(WORKERS)
    for i in shards:
        files = [
            p for p in deployment.task_log_files(CATALOG, CATALOG_RUN, "recognize_shard", i) if ".trigger." in p.name
        ]
        assert files, i
        assert any(
            f'"logger":"{JOBS_TRIGGER_CLASSPATH}"' in f.read_text() or "Trigger fired event" in f.read_text()
            for f in files
        ), i
