"""
Recognising many videos in one task: the listing, the checkpoint, the submits, the polls of many
jobs, and the results file. ``SlipstreamBatchRecognizeOperator`` and ``SlipstreamJobsTrigger`` are
thin layers over this module.

The checkpoint is a ledger (``_ledger``) in ``<output_path>.jobs/``. Each record is about one video,
named by its path and fingerprint (size and modification time, so a path that now holds another
video is another input): ``listed`` (in this run's listing), ``job`` (submitted: written before
the upload thread takes its next video), ``done`` (its results line; ``retry`` when a later run
should try it again). The latest record wins. The results file is written once at the end, one
line per listed video, from the ledger: nothing is held in memory per video but its job id and
match kind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_slipstream._ledger import Ledger
from airflow_provider_slipstream.exceptions import (
    SlipstreamAuthError,
    SlipstreamError,
    SlipstreamJobNotFoundError,
    SlipstreamJobTimeoutError,
    SlipstreamSubmitUncertainError,
    SlipstreamTransientError,
    SlipstreamValidationError,
)
from airflow_provider_slipstream.hooks.slipstream import UNCERTAIN_SUBMIT_ADVICE
from airflow_provider_slipstream.models import MatchKind
from airflow_provider_slipstream.uploads import open_video
from airflow_provider_slipstream.validation import parse_list

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    import aiohttp

    from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook, UploadMethod

LEDGER_SUFFIX = ".jobs"
#: A steady progress line, not one per video.
PROGRESS_SECONDS = 30.0
_FAILED = "failed"
_BATCH_UNCERTAIN_ADVICE = (
    "The batch does not submit it again; if no job appears for this video, recognise it on its own "
    "(SlipstreamRecognizeVideoOperator) or in a batch with another output_path."
)


def storage_path(location: Any) -> Any:
    """A local ``Path`` (also for ``file://`` and ``local://``), or an ``ObjectStoragePath`` (``s3://conn_id@bucket/key``)."""
    for local in ("file://", "local://"):
        if isinstance(location, str) and location.startswith(local):
            return Path(location.removeprefix(local))
    if isinstance(location, str) and "://" in location:
        # Imported here: object storage pulls in fsspec, which local batches never need.
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        return ObjectStoragePath(location)
    return Path(location) if isinstance(location, str) else location


def is_local(path: Any) -> bool:
    """A plain local path (what :func:`storage_path` gives for local locations)."""
    # On Airflow 3.0 (universal-pathlib 0.2) an ObjectStoragePath is a pathlib.Path too, with a protocol.
    return isinstance(path, Path) and not hasattr(path, "protocol")


def video_name(path: Any) -> str:
    """How a video is named in the ledger and the results: a string that opens the same file again."""
    conn_id = getattr(path, "conn_id", None)
    if conn_id:
        # str() of an ObjectStoragePath drops its connection (or renders "s3://conn@/bucket/..."): keep it.
        return f"{path.protocol}://{conn_id}@{str(path.path).lstrip('/')}"
    return str(path)


def iter_videos(*, videos: Any = None, videos_glob: str | None = None, manifest: str | None = None) -> Iterator[str]:
    """The videos of a batch, one at a time: from a list, an object-storage (or local) glob, or a manifest."""
    if videos is not None:
        yield from parse_list(videos, "videos", noun="paths", example="'/data/a.mp4, /data/b.mp4'") or ()
    elif videos_glob is not None:
        base, pattern = _split_glob(videos_glob)
        for path in storage_path(base).glob(pattern):
            yield video_name(path)
    elif manifest is not None:
        with storage_path(manifest).open("r") as lines:
            # readline(), not iteration: Airflow 3.0's object-storage file wrapper is not iterable.
            for line in iter(lines.readline, ""):
                if (text := line.strip()) and not text.startswith("#"):
                    yield text


def _split_glob(pattern: str) -> tuple[str, str]:
    scheme, sep, rest = pattern.rpartition("://")
    parts = rest.split("/")
    for index, part in enumerate(parts):
        if any(char in part for char in "*?["):
            # "*.mp4" alone is relative to the working directory, as glob.glob has it.
            base = "/".join(parts[:index]) + "/" if index else ("" if sep else "./")
            return f"{scheme}{sep}{base}", "/".join(parts[index:])
    raise SlipstreamValidationError(
        f"videos_glob {pattern!r} has no wildcard; end it with a pattern such as '*.mp4' (or pass videos=[...])."
    )


def shard_manifests(videos: Iterable[str], *, shards: int, folder: str) -> list[str]:
    """
    Split a listing into ``shards`` manifest files in ``folder`` (local or object storage); return their paths.

    A video always lands in the same shard (a stable hash of its path), so a rerun over a grown listing
    sends each earlier video to the shard whose ledger already knows it. For
    ``SlipstreamBatchRecognizeOperator.partial(...).expand(manifest=shard_manifests(...))``.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards!r}")
    base = storage_path(folder)
    if is_local(base):  # object stores have no folders to make
        base.mkdir(parents=True, exist_ok=True)
    paths = [base / f"shard-{index:04d}-of-{shards:04d}.txt" for index in range(shards)]
    files = [path.open("w") for path in paths]
    try:
        for video in videos:
            digest = hashlib.sha1(video.encode(), usedforsecurity=False).digest()
            files[int.from_bytes(digest[:8], "big") % shards].write(video + "\n")
    finally:
        for file in files:
            file.close()
    return [video_name(path) for path in paths]


def error_part(exc: BaseException) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": str(exc)}}


def _retryable(exc: SlipstreamError) -> bool:
    """A later run may try again: a temporary failure (not bad input, an uncertain submit, an expired job)."""
    return not isinstance(exc, AirflowFailException)


@dataclass
class Entry:
    """What the ledger says about one video."""

    fingerprint: str
    job_id: str | None = None
    job_run: str | None = None
    kind: str | None = None  # set once it has its results line: a match kind, or "failed"
    retry: bool = False
    done_run: str | None = None
    done_at: int | None = None  # the ordinal of its results line's record in the ledger

    def complete(self, run: str) -> bool:
        return self.kind is not None and (not self.retry or self.done_run == run)


class Progress:
    """A log line every ``PROGRESS_SECONDS``: done / total, counts per match kind, rate, ETA."""

    def __init__(self, log: Any, total: int, counts: Counter[str], *, earlier: int, started: float) -> None:
        """``counts``: the videos done so far, ``earlier`` of them by earlier runs; ``started``: the run's start."""
        self.log, self.total, self.done, self.counts = log, total, sum(counts.values()), counts
        # The rate is this run's: from its start (in an earlier process, when resumed after a deferral),
        # without what earlier runs did.
        self._start_done, self._start = earlier, started
        self._next = time.monotonic() + PROGRESS_SECONDS

    def add(self, kind: str, *, earlier: bool = False) -> None:
        """One more video done; ``earlier`` when an earlier run did it (not this run's rate)."""
        self.done += 1
        self.counts[kind] += 1
        self._start_done += earlier

    def maybe_log(self, *, force: bool = False, note: str = "") -> None:
        if not force and time.monotonic() < self._next:
            return
        self._next = time.monotonic() + PROGRESS_SECONDS
        rate = (self.done - self._start_done) / max(time.time() - self._start, 1e-3)
        left = self.total - self.done
        eta = f"{left / rate:.0f} s" if rate > 0 else "unknown"
        counts = ", ".join(f"{kind} {self.counts[kind]}" for kind in (*(k.value for k in MatchKind), _FAILED))
        self.log.info(
            "Batch: %d / %d videos done (%s); %.1f videos/s, ETA %s%s", self.done, self.total, counts, rate, eta, note
        )


class BatchRun:
    """
    One run (``run``: a token per ``execute``) of a batch over one ledger: what is listed, submitted, done.

    :param deadline: ``time.monotonic()`` value that bounds submits and waits.
    """

    def __init__(
        self,
        hook: SlipstreamHook,
        output_path: str,
        run: str,
        *,
        log: Any,
        deadline: float,
        labels: tuple[str, ...] | None = None,
        upload_method: UploadMethod = "auto",
        started: float | None = None,
    ) -> None:
        self.hook, self.output_path, self.run, self.log = hook, output_path, run, log
        #: Unix time the run began (its first process), for the progress rate.
        self.started = time.time() if started is None else started
        self.deadline, self.labels, self.upload_method = deadline, labels, upload_method
        folder = storage_path(f"{output_path}{LEDGER_SUFFIX}")
        self.ledger = Ledger(folder, local=is_local(folder))
        self.state: dict[str, Entry] = {}
        self.listed: dict[str, str] = {}
        self._jobs: dict[str, str] = {}  # job id -> video
        self._fatal: BaseException | None = None
        self._lock = threading.Lock()  # upload threads list and finish videos concurrently
        for ordinal, record in enumerate(self.ledger.load()):
            self._replay(record, ordinal)
        done = [e for _, e in self._listed_entries() if e.kind and e.complete(run)]
        earlier = sum(1 for e in done if e.done_run != run)
        counts = Counter(e.kind for e in done if e.kind)
        self.progress = Progress(log, len(self.listed), counts, earlier=earlier, started=self.started)

    # -- the ledger ------------------------------------------------------------------------

    def _replay(self, record: Mapping[str, Any], ordinal: int) -> None:
        video, fingerprint, kind = record["video"], record["fp"], record["k"]
        if kind == "listed":
            if record["run"] == self.run:
                self.listed[video] = fingerprint
            return
        entry = self.state.get(video)
        if kind == "job":
            self.state[video] = Entry(fingerprint, record["job_id"], record["run"])
            self._jobs[record["job_id"]] = video
            return
        # A line without a job after a job (its resubmit failed) ends that job's wait too.
        if entry is None or entry.fingerprint != fingerprint or (record["job_id"] is None and entry.job_id):
            entry = self.state[video] = Entry(fingerprint)
        if entry.job_id == record["job_id"]:
            line = record["line"]
            entry.kind = _FAILED if "error" in line else line["match"]
            entry.retry, entry.done_run, entry.done_at = record["retry"], record["run"], ordinal

    def _listed_entries(self) -> Iterator[tuple[str, Entry]]:
        for video, fingerprint in self.listed.items():
            entry = self.state.get(video)
            if entry is not None and entry.fingerprint == fingerprint:
                yield video, entry

    def _finish(self, video: str, fingerprint: str, job_id: str | None, part: dict[str, Any], *, retry: bool) -> None:
        line = {"video": video, "job_id": job_id, **part} if "error" in part else {"video": video, **part}
        record: dict[str, Any] = {"k": "done", "run": self.run, "video": video, "fp": fingerprint, "job_id": job_id}
        record.update(retry=retry, line=line)
        with self._lock:
            self._replay(record, self.ledger.add(record))
            self.progress.add(self.state[video].kind or _FAILED)

    # -- listing and submitting (the worker) -------------------------------------------------

    def submit_all(self, videos: Iterable[str], *, max_concurrent_uploads: int) -> None:
        """
        Checkpoint the listing and submit every video without a job yet, ``max_concurrent_uploads`` at once.

        The upload threads also look each video up (its size and modification time), so that a listing
        of object-storage keys is not read one request at a time. Past the deadline no new upload
        starts (one already running may finish after it): the videos left get a line that a retry submits.
        """
        slots = threading.BoundedSemaphore(2 * max_concurrent_uploads)  # a bounded queue: the listing streams
        seen: set[str] = set()
        with ThreadPoolExecutor(max_concurrent_uploads, thread_name_prefix="slipstream-upload") as pool:
            for video in videos:
                if self._fatal is not None:
                    break
                if video in seen:
                    continue  # listed twice: one line
                seen.add(video)
                slots.acquire()
                pool.submit(self._take, video).add_done_callback(lambda _: slots.release())
        self.ledger.consolidate()
        self.progress.total = len(self.listed)
        if self._fatal is not None:
            raise self._fatal

    def _take(self, video: str) -> None:
        if self._fatal is not None:
            return
        try:
            fingerprint, entry = self._list(video)
            if fingerprint is None or (entry is not None and (entry.job_id or entry.complete(self.run))):
                return  # failed already, or an earlier run's job: waited for, not submitted again
            self._submit(video, fingerprint)
        except BaseException as exc:  # a ledger that cannot be written: stop before submitting more
            self._fatal = exc
        self.progress.maybe_log()

    def _list(self, video: str) -> tuple[str | None, Entry | None]:
        try:
            file = open_video(video)
        except SlipstreamError as exc:
            self._record_listed(video, "")
            self._finish(video, "", None, error_part(exc), retry=_retryable(exc))
            return None, None
        fingerprint = f"{file.size}:{file.modified}"
        self._record_listed(video, fingerprint)
        with self._lock:
            entry = self.state.get(video)
            if entry is None or entry.fingerprint != fingerprint:
                return fingerprint, None
            if entry.complete(self.run):
                self.progress.add(entry.kind or _FAILED, earlier=entry.done_run != self.run)
            elif entry.kind is not None and not entry.job_id:
                entry.kind = None  # an earlier run's temporary failure before any job: submit again
            return fingerprint, entry

    def _record_listed(self, video: str, fingerprint: str) -> None:
        with self._lock:
            self.listed[video] = fingerprint
            self.ledger.add({"k": "listed", "run": self.run, "video": video, "fp": fingerprint})
            self.progress.total = len(self.listed)

    def _submit(self, video: str, fingerprint: str) -> None:
        """Submit one video; past the deadline, a line instead, which a later run submits."""
        if time.monotonic() >= self.deadline:
            late = SlipstreamJobTimeoutError(
                "Not submitted before the batch's timeout; a retry of the task submits it."
            )
            self._finish(video, fingerprint, None, error_part(late), retry=True)
            return
        try:
            job = self.hook.submit_video(video, method=self.upload_method, deadline=self.deadline)
        except SlipstreamAuthError as exc:
            self._fatal = exc  # no other video can succeed either
            return
        except SlipstreamSubmitUncertainError as exc:
            uncertain = error_part(exc)
            uncertain["error"]["message"] = str(exc).replace(UNCERTAIN_SUBMIT_ADVICE, _BATCH_UNCERTAIN_ADVICE)
            self._finish(video, fingerprint, None, uncertain, retry=False)  # never re-sent: no duplicate job
            return
        except SlipstreamError as exc:
            self._finish(video, fingerprint, None, error_part(exc), retry=_retryable(exc))
            return
        record = {"k": "job", "run": self.run, "video": video, "fp": fingerprint, "job_id": job.job_id}
        # Durable before this thread takes its next video: a retry never submits it twice.
        ordinal = self.ledger.commit(record)
        with self._lock:
            self._replay(record, ordinal)

    # -- waiting ---------------------------------------------------------------------------

    def waiting(self) -> dict[str, str]:
        """Job id -> video of every listed video still waiting for its job."""
        return {e.job_id: v for v, e in self._listed_entries() if e.job_id and not e.complete(self.run)}

    def record(self, job_id: str, part: dict[str, Any], *, retry: bool = False) -> None:
        """A job's outcome from a poll: its result dict, or ``error_part`` of what ended it (``retry``: temporary)."""
        video = self.waiting_video(job_id)
        if video is None:
            return
        entry = self.state[video]
        if part.get("error", {}).get("type") == SlipstreamJobNotFoundError.__name__ and entry.job_run != self.run:
            self.log.warning("Job %s of an earlier try for %s has expired; submitting it again", job_id, video)
            self._submit(video, entry.fingerprint)
            if self._fatal is not None:
                raise self._fatal
            return
        self._finish(video, entry.fingerprint, job_id, part, retry=retry)

    def waiting_video(self, job_id: str) -> str | None:
        video = self._jobs.get(job_id)
        entry = None if video is None else self.state.get(video)
        if video is None or entry is None or entry.job_id != job_id or self.listed.get(video) != entry.fingerprint:
            return None
        return None if entry.complete(self.run) else video

    def time_out(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            if (video := self.waiting_video(job_id)) is not None:
                exc = SlipstreamJobTimeoutError(
                    f"Slipstream job {job_id} did not complete before the batch's timeout; a retry of the task "
                    "waits for it again."
                )
                self._finish(video, self.state[video].fingerprint, job_id, error_part(exc), retry=True)

    async def wait_all(self, poll_interval: float, max_concurrent_polls: int) -> None:
        """The worker's wait: poll every waiting job each ``poll_interval`` until all are done or the deadline."""
        async with self.hook.async_client() as client:
            while waiting := self.waiting():
                started = time.monotonic()
                for job_id, part, retry in await poll_once(
                    self.hook, client, waiting, self.labels, max_concurrent_polls, deadline=self.deadline
                ):
                    self.record(job_id, part, retry=retry)
                self.ledger.flush()
                self.progress.maybe_log()
                if time.monotonic() + poll_interval > self.deadline:
                    self.time_out(self.waiting())
                    break
                await asyncio.sleep(max(0.0, poll_interval - (time.monotonic() - started)))
        self.ledger.consolidate()

    # -- the results -----------------------------------------------------------------------

    def publish(self, *, enrich_catalog: bool = False) -> dict[str, Any]:
        """
        Write the results file (one line per listed video, its latest outcome) and return the summary.

        :param enrich_catalog: add ``catalog`` to internal matches' lines: one request per distinct track.
        """
        self.ledger.flush()
        current = dict(self._listed_entries())
        catalog: dict[str, Any] = {}
        if enrich_catalog:
            # Fetched before the file is opened: a failed catalog request must not leave it half-written.
            for line in self._latest_lines(current):
                self.hook.enrich(line, cache=catalog)
        written: set[str] = set()
        with storage_path(self.output_path).open("w") as out:
            for line in self._latest_lines(current):
                written.add(line["video"])
                line = self.hook.enrich(line, cache=catalog) if enrich_catalog else line
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
            missing = [video for video in self.listed if video not in written]
            for video in missing:  # a bug if ever: still one line per video, and a failure
                exc = SlipstreamError("No outcome was recorded for this video; retry the task.")
                out.write(json.dumps({"video": video, "job_id": None, **error_part(exc)}) + "\n")
        counts = Counter(entry.kind for entry in current.values() if entry.kind)
        return {
            "videos": len(self.listed),
            "counts": {kind.value: counts.get(kind.value, 0) for kind in MatchKind},
            "failed": counts.get(_FAILED, 0) + len(missing),
            "competitor_hits": counts.get(MatchKind.COMPETITOR.value, 0),
            "output_path": self.output_path,
        }

    def _latest_lines(self, current: Mapping[str, Entry]) -> Iterator[dict[str, Any]]:
        """The results line of each listed video's latest outcome, in ledger order."""
        for ordinal, record in enumerate(self.ledger.records()):
            entry = current.get(record["video"])
            if entry is not None and entry.done_at == ordinal and entry.complete(self.run):
                yield record["line"]


def allowed_failures(max_failed: int | float, videos: int) -> int:
    """``max_failed`` as a count: an int as it is, a fraction (0 < f < 1) of the batch, rounded down."""
    return max_failed if isinstance(max_failed, int) else math.floor(max_failed * videos)


async def poll_once(
    hook: SlipstreamHook,
    client: aiohttp.ClientSession,
    job_ids: Iterable[str],
    labels: tuple[str, ...] | list[str] | None,
    concurrency: int,
    *,
    deadline: float | None,
) -> list[tuple[str, dict[str, Any], bool]]:
    """
    Poll each job once, ``concurrency`` at a time (the hook's pace may allow fewer), until ``deadline``
    (``time.monotonic()``); return the ones that ended: (job id, result dict or ``error_part``, whether
    that error is temporary). A job whose poll failed for now, or was not reached before the deadline,
    waits for the next round; a rejected key ends the batch.
    """
    config = await hook.aget_config()
    competitor_labels = config.competitor_labels_for(None if labels is None else tuple(labels))
    ended: list[tuple[str, dict[str, Any], bool]] = []
    queue = iter(job_ids)

    async def worker() -> None:
        for job_id in queue:
            if deadline is not None and time.monotonic() >= deadline:
                return
            try:
                job = await hook.aget_job(job_id, client, deadline=deadline)
            except SlipstreamAuthError:
                raise
            except (SlipstreamTransientError, SlipstreamJobTimeoutError):
                continue
            except SlipstreamError as exc:  # 404 (expired), an undocumented answer: this video's error line
                ended.append((job_id, error_part(exc), _retryable(exc)))
            else:
                if job.is_completed:
                    ended.append((job_id, job.to_result(competitor_labels), False))

    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, concurrency))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return ended
