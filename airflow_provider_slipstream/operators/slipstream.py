"""Operators: submit videos, read results, recognise in one task, branch on the match, license it."""

from __future__ import annotations

import ast
import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSkipException, BaseBranchOperator, BaseOperator, conf

from airflow_provider_slipstream._pace import Pace
from airflow_provider_slipstream._resumable import JobLedger, LicenseStore, StoredJob
from airflow_provider_slipstream.batch import BatchRun, allowed_failures, iter_videos
from airflow_provider_slipstream.exceptions import (
    SlipstreamBatchFailedError,
    SlipstreamJobNotCompletedError,
    SlipstreamJobNotFoundError,
    SlipstreamValidationError,
)
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook, UploadMethod
from airflow_provider_slipstream.links.slipstream import SlipstreamLicenseLink, SlipstreamTrackLink
from airflow_provider_slipstream.models import License, MatchKind, RecognitionJob
from airflow_provider_slipstream.retry import RetryPolicy
from airflow_provider_slipstream.triggers.slipstream import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    SlipstreamJobsTrigger,
    defer_to_trigger,
    defer_with_backstop,
    result_from_event,
    resumed_by_an_earlier_try,
)
from airflow_provider_slipstream.validation import (
    parse_labels,
    validate_project_name,
    validate_track_id,
    validate_user_id,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_slipstream.uploads import VideoPath

_UI_COLOR = "#d9f0e8"
#: Backoff between attempts to store a new job's id: short, so that the record lands soon after an
#: API server restart, before a retry of this task (if the scheduler gave up on this try) reads it.
_LEDGER_RETRY = RetryPolicy(backoff_base=0.5, backoff_max=4.0)
#: What a submit leaves, besides its last request's timeouts, for storing the job id before the bound.
_STORE_SECONDS = 5.0


def execution_seconds_left(task: BaseOperator, context: Context) -> float | None:
    """What is left of the task's ``execution_timeout`` (None without one), counted from the try's start."""
    if task.execution_timeout is None:
        return None
    # Airflow 3 does not count a deferral against execution_timeout: the trigger must.
    started = getattr(context["ti"], "start_date", None)
    spent = (datetime.now(timezone.utc) - started).total_seconds() if started else 0.0
    return max(task.execution_timeout.total_seconds() - spent, 0.0)


def _report_delay() -> float:
    """
    How long after a deferral its executor may still report the deferring try: the worker's supervisor
    notices the task process ended at its next check, up to ``[workers] min_heartbeat_interval`` later,
    then the report crosses the executor and a scheduler loop (hence twice the interval).
    """
    return 2 * conf.getfloat("workers", "min_heartbeat_interval", fallback=5.0)


class _SlipstreamSubmitBase(BaseOperator):
    """
    Submits one video; a later try of the same task instance resumes that job instead.

    The job id is stored (task state store, or a Variable before Airflow 3.3) before any other
    round trip after the submit, then pushed to XCom (key ``job_id``). A stored job is resumed only
    for the same input and is removed once the task succeeded: clearing a succeeded task submits
    again. ``durable=False`` turns resuming off.

    While Slipstream is unreachable or answers 429/503, a submit that provably created no job is
    re-sent until the try's bound (see :meth:`wait_seconds`), beyond the connection's ``max_retries``.
    """

    template_fields: Sequence[str] = ("video_path", "storage_key", "slipstream_conn_id")
    ui_color = _UI_COLOR

    def __init__(
        self,
        *,
        video_path: VideoPath | None = None,
        storage_key: str | None = None,
        upload_method: UploadMethod = "auto",
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
        durable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (video_path is None) == (storage_key is None):
            raise ValueError(
                f"{self.task_id}: pass exactly one of video_path (a local or object-storage path) "
                "or storage_key (from a presigned upload)."
            )
        if upload_method not in ("auto", "direct", "presigned"):
            raise ValueError(
                f"{self.task_id}: upload_method must be 'auto', 'direct' or 'presigned', not {upload_method!r}."
            )
        self.video_path = video_path
        self.storage_key = storage_key
        self.upload_method: UploadMethod = upload_method
        self.slipstream_conn_id = slipstream_conn_id
        self.durable = durable

    @cached_property
    def hook(self) -> SlipstreamHook:
        return SlipstreamHook(self.slipstream_conn_id)

    @property
    def video(self) -> str:
        """The input in words, as it is stored beside its job: the rendered path, or the storage key."""
        return f"storage_key:{self.storage_key}" if self.storage_key is not None else str(self.video_path)

    def resume_or_submit(self, context: Context, bound: float) -> RecognitionJob:
        """
        The job of an earlier try for this same input, if Slipstream still has it; else a new one.

        :param bound: the try's end (``time.monotonic()``). Until then an outage is ridden out: a
            submit that provably created nothing is re-sent, and the new job's id waits for the API
            server to take it.
        """
        ledger = JobLedger(context) if self.durable else None
        stored = ledger.get() if ledger is not None else None
        job = self._resume(stored) if stored is not None else None
        if job is None:
            # The last re-send must be answered, and its id stored, before Airflow ends the try at
            # the bound (execution_timeout): a POST cut off there would leave a job no try knows.
            config = self.hook.config
            job = self._submit(bound - config.connect_timeout - config.read_timeout - _STORE_SECONDS)
            if ledger is not None:
                self._remember(ledger, StoredJob(job.job_id, self.video), bound)
        context["ti"].xcom_push(key="job_id", value=job.job_id)
        return job

    def wait_seconds(self, context: Context) -> float:
        """How long this try rides out an outage: what is left of ``execution_timeout``, else the default."""
        left = execution_seconds_left(self, context)
        return DEFAULT_WAIT_TIMEOUT.total_seconds() if left is None else left

    def forget(self, context: Context) -> None:
        """The task succeeded: drop its stored job, so nothing is left and a clear submits afresh."""
        if self.durable:
            JobLedger(context).discard()

    def _resume(self, stored: StoredJob) -> RecognitionJob | None:
        if stored.video != self.video:
            self.log.info(
                "Job %s of an earlier try was for %s, not %s: submitting this video",
                stored.job_id,
                stored.video,
                self.video,
            )
            return None
        try:
            job = self.hook.get_job(stored.job_id)
        except SlipstreamJobNotFoundError:
            self.log.warning("Job %s of an earlier try has expired; submitting %s again", stored.job_id, self.video)
            return None
        self.log.info("Resuming Slipstream job %s (%s) of an earlier try for %s", job.job_id, job.status, self.video)
        return job

    def _submit(self, deadline: float) -> RecognitionJob:
        if self.storage_key is not None:
            return self.hook.submit_storage_key(self.storage_key, deadline=deadline)
        return self.hook.submit_video(self.video_path, method=self.upload_method, deadline=deadline)

    def _remember(self, ledger: JobLedger, stored: StoredJob, deadline: float) -> None:
        """
        Store the job for a later try, retrying while the API server is away (a restart).

        Without the record a later try submits a second job; and while the API server is away this
        try cannot report anything either, so waiting for it costs nothing. Past the deadline the try
        carries on: the job exists and this try may still finish it.
        """
        store_durably(lambda: ledger.put(stored), f"Slipstream job {stored.job_id}", deadline, self.log)


def store_durably(put: Callable[[], None], what: str, deadline: float, log: Any) -> bool:
    """Run ``put`` (a write to the API server) until it succeeds or ``deadline`` (monotonic) comes; True if stored."""
    attempt = 0
    while True:
        attempt += 1
        try:
            put()
            return True
        except Exception:
            delay = _LEDGER_RETRY.delay(attempt)
            if time.monotonic() + delay > deadline:
                log.warning("Could not store %s for a later try; carrying on with it", what, exc_info=True)
                return False
            log.warning("Could not store %s yet; trying again in %.1f s", what, delay, exc_info=True)
        time.sleep(delay)


class SlipstreamSubmitVideoOperator(_SlipstreamSubmitBase):
    """
    Submit a video to Slipstream AudioVerify and return the job id (XCom ``return_value``).

    Wait for the result with :class:`~airflow_provider_slipstream.sensors.slipstream.SlipstreamJobSensor`.
    A retried task returns the job its earlier try submitted for the same video.

    :param video_path: A local path or an object-storage path/URL such as ``s3://conn_id@bucket/clip.mp4``
        (templated). Allowed extensions: .mp4 .mov .avi .mpeg.
    :param storage_key: Instead of a path, the key of a finished presigned upload (templated).
    :param upload_method: ``"direct"`` (multipart, up to 100 MB), ``"presigned"``, or ``"auto"``
        (direct for small files).
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    :param durable: Resume the job of an earlier try (default); False submits on every try.
    """

    def execute(self, context: Context) -> str:
        job = self.resume_or_submit(context, time.monotonic() + self.wait_seconds(context))
        self.forget(context)
        return job.job_id


class SlipstreamRecognizeVideoOperator(_SlipstreamSubmitBase):
    """
    Submit a video, wait for recognition, and return the result dict, all in one task.

    Waits in the worker (``poll_interval``) or, with ``deferrable=True``, on the triggerer, where
    temporary API failures are waited out. A retried task resumes the job it already submitted
    for the same video while Slipstream still keeps it.

    The return value (XCom): ``{"job_id", "status", "match", "track"}``.

    :param video_path: A local or object-storage path (templated); or pass ``storage_key``.
    :param storage_key: The key of a finished presigned upload (templated).
    :param upload_method: ``"auto"``, ``"direct"`` or ``"presigned"``.
    :param poll_interval: Seconds between polls (the API asks for 2 to 5).
    :param timeout: Longest wait for the result, in seconds or as a timedelta. Default: what is left
        of the task's ``execution_timeout``, else ``DEFAULT_WAIT_TIMEOUT`` (one hour). Reaching
        it fails the try with ``SlipstreamJobTimeoutError``; a retry resumes the same job. It also
        bounds how long a submit is re-sent while Slipstream is unreachable.
    :param deferrable: Wait on the triggerer; defaults to ``[operators] default_deferrable``.
    :param competitor_labels: Labels that count as competitor libraries (templated: a list, or a string
        rendered from one: comma-separated, or a JSON or Python list literal); defaults to the
        connection's ``competitor_labels`` extra, else the built-in list.
    :param enrich_catalog: Add ``catalog`` (short URL, library, writers, publishers, ISRC) to an
        internal match's result, with one catalog request, and the "Slipstream track" link.
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    :param durable: Resume the job of an earlier try (default); False submits on every try.
    """

    template_fields: Sequence[str] = (*_SlipstreamSubmitBase.template_fields, "competitor_labels")
    operator_extra_links = (SlipstreamTrackLink(),)

    def __init__(
        self,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        competitor_labels: list[str] | str | None = None,
        enrich_catalog: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0:
            raise ValueError(f"{self.task_id}: poll_interval must be positive, got {poll_interval!r}.")
        self.enrich_catalog = enrich_catalog
        self.poll_interval = poll_interval
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"{self.task_id}: timeout must be positive, got {timeout!r}.")
        self.deferrable = deferrable
        self.competitor_labels = competitor_labels

    def execute(self, context: Context) -> dict[str, Any]:
        labels = parse_labels(self.competitor_labels, f"{self.task_id}: competitor_labels")
        bound = time.monotonic() + self.wait_seconds(context)
        job = self.resume_or_submit(context, bound)
        if not job.is_completed:
            # One bound for the try: a submit that rode out an outage leaves the wait what is left.
            wait = max(bound - time.monotonic(), self.poll_interval)
            if self.deferrable:
                defer_to_trigger(
                    self,
                    context,
                    job_id=job.job_id,
                    slipstream_conn_id=self.slipstream_conn_id,
                    poll_interval=self.poll_interval,
                    wait=wait,
                    competitor_labels=labels,
                )
            job = self.hook.wait_for_job(job.job_id, poll_interval=self.poll_interval, timeout=wait)
        return self._done(context, job.to_result(self.hook.config.competitor_labels_for(labels)))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._done(context, result_from_event(event))

    def _done(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        # Enriched before the stored job is dropped: a failed catalog request leaves a retry the job to resume.
        result = with_catalog(self.hook, context, result, enrich=self.enrich_catalog)
        self.forget(context)
        return result

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        if resumed_by_an_earlier_try(context, next_method, next_kwargs):
            return self.execute(context)  # resumes this input's job
        return super().resume_execution(next_method, next_kwargs, context)

    def wait_seconds(self, context: Context) -> float:
        """The bound of this try: ``timeout``, else the default; never past what is left of ``execution_timeout``."""
        left = execution_seconds_left(self, context)
        wait = self.timeout if self.timeout is not None else super().wait_seconds(context)
        return max(wait if left is None else min(wait, left), self.poll_interval)


#: How long a batch may take when nothing else bounds it: thousands of videos take hours, and
#: Slipstream keeps results about a day.
DEFAULT_BATCH_TIMEOUT = timedelta(hours=24)
#: A trigger's job ids travel in its kwargs: 5,000 ids are about 200 KB, well under Airflow's limits.
MAX_JOBS_PER_TRIGGER = 5000


class SlipstreamBatchRecognizeOperator(BaseOperator):
    """
    Recognise many videos in one task instance; write one JSON line per video; return a small summary.

    The videos are listed as a stream, from exactly one of ``videos``, ``videos_glob`` or ``manifest``.
    They are submitted ``max_concurrent_uploads`` at a time in the worker; the jobs are then polled
    from the worker or, with ``deferrable=True``, by :class:`SlipstreamJobsTrigger` on the triggerer
    (``jobs_per_trigger`` jobs per deferral). A 429/503 from Slipstream slows the whole batch down
    (honouring ``Retry-After``), and successes speed it up again.

    Each line of ``output_path``: the result dict plus ``video``; or ``{"video", "job_id", "error":
    {"type", "message"}}`` for a video that could not be recognised (a broken file, an expired job).
    Per-video failures do not fail the task unless more than ``max_failed`` occur; then it fails
    with a message that names the file. The XCom: ``{"videos", "counts", "failed", "competitor_hits",
    "output_path"}``.

    Resumable per video: every job id is checkpointed in ``<output_path>.jobs/`` before the next video
    is submitted, so a retried or cleared task never submits a video twice while its job is kept
    (about a day) and never reuses a job for a changed file (size and modification time). The ledger
    stays after success: clearing the task writes the same results again; a new ``output_path`` (or
    deleting its ``.jobs`` folder) recognises the videos afresh.

    :param videos: Paths or object-storage URLs (templated; a list, an XComArg, or a rendered string).
    :param videos_glob: A glob such as ``"s3://aws@bucket/inbox/{{ ds }}/*.mp4"`` (templated).
    :param manifest: A file with one path per line (templated); ``#`` starts a comment line.
    :param output_path: The JSON Lines results file, local or object storage (templated). Required.
    :param max_concurrent_uploads: Videos uploading at once.
    :param max_concurrent_polls: Job polls in flight at once.
    :param max_failed: Failures allowed before the task fails: a count (int) or a fraction of the
        batch (a float below 1). Default 0.1: up to 10 %.
    :param poll_interval: Seconds between rounds of polls.
    :param timeout: Longest run in seconds or as a timedelta; default what is left of
        ``execution_timeout`` (less a margin to write the results), else 24 hours. Jobs still running
        then get a timeout line; a retry waits for them again.
    :param deferrable: Wait on the triggerer; defaults to ``[operators] default_deferrable``.
    :param jobs_per_trigger: Jobs per deferral (at most 5,000).
    :param upload_method: ``"auto"``, ``"direct"`` or ``"presigned"``.
    :param competitor_labels: As for :class:`SlipstreamRecognizeVideoOperator` (templated).
    :param enrich_catalog: Add ``catalog`` to the lines of internal matches, as the recognize operator
        does: one catalog request per distinct track, when the results file is written.
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    """

    template_fields: Sequence[str] = (
        "videos",
        "videos_glob",
        "manifest",
        "output_path",
        "competitor_labels",
        "slipstream_conn_id",
    )
    ui_color = _UI_COLOR

    def __init__(
        self,
        *,
        output_path: str,
        videos: Any = None,
        videos_glob: str | None = None,
        manifest: str | None = None,
        max_concurrent_uploads: int = 8,
        max_concurrent_polls: int = 16,
        max_failed: int | float = 0.1,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        jobs_per_trigger: int = 1000,
        upload_method: UploadMethod = "auto",
        competitor_labels: list[str] | str | None = None,
        enrich_catalog: bool = False,
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.enrich_catalog = enrich_catalog
        if sum(source is not None for source in (videos, videos_glob, manifest)) != 1:
            raise ValueError(f"{self.task_id}: pass exactly one of videos, videos_glob or manifest.")
        concurrency = {"max_concurrent_uploads": max_concurrent_uploads, "max_concurrent_polls": max_concurrent_polls}
        for name, value in concurrency.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{self.task_id}: {name} must be a positive integer, got {value!r}.")
        if not 1 <= jobs_per_trigger <= MAX_JOBS_PER_TRIGGER:
            raise ValueError(
                f"{self.task_id}: jobs_per_trigger must be 1 to {MAX_JOBS_PER_TRIGGER}, got {jobs_per_trigger!r}."
            )
        if isinstance(max_failed, bool) or not (
            (isinstance(max_failed, int) and max_failed >= 0) or (isinstance(max_failed, float) and 0 <= max_failed < 1)
        ):
            raise ValueError(
                f"{self.task_id}: max_failed must be a count (an int >= 0) or a fraction (a float from 0 to "
                f"below 1), got {max_failed!r}."
            )
        if poll_interval <= 0:
            raise ValueError(f"{self.task_id}: poll_interval must be positive, got {poll_interval!r}.")
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"{self.task_id}: timeout must be positive, got {timeout!r}.")
        if upload_method not in ("auto", "direct", "presigned"):
            raise ValueError(
                f"{self.task_id}: upload_method must be 'auto', 'direct' or 'presigned', not {upload_method!r}."
            )
        self.videos, self.videos_glob, self.manifest = videos, videos_glob, manifest
        self.output_path = output_path
        self.max_concurrent_uploads, self.max_concurrent_polls = max_concurrent_uploads, max_concurrent_polls
        self.max_failed, self.poll_interval, self.deferrable = max_failed, poll_interval, deferrable
        self.jobs_per_trigger = jobs_per_trigger
        self.upload_method: UploadMethod = upload_method
        self.competitor_labels, self.slipstream_conn_id = competitor_labels, slipstream_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        deadline = time.time() + self._bound(context)
        batch = self._batch(uuid.uuid4().hex, deadline)
        batch.submit_all(
            iter_videos(videos=self.videos, videos_glob=self.videos_glob, manifest=self.manifest),
            max_concurrent_uploads=self.max_concurrent_uploads,
        )
        return self._wait(context, batch, deadline)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "success":
            result_from_event(event)  # raises the error it names
        assert event is not None  # for mypy: result_from_event raised otherwise
        batch = self._batch(event["run"], event["deadline"], event.get("started"))
        for job_id, part, retry in event["outcomes"]:
            batch.record(job_id, part, retry=retry)
        if event["timed_out"]:
            batch.time_out(batch.waiting())
        batch.ledger.consolidate()
        return self._wait(context, batch, event["deadline"])

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        if resumed_by_an_earlier_try(context, next_method, next_kwargs):
            return self.execute(context)  # resumes from the ledger
        return super().resume_execution(next_method, next_kwargs, context)

    def _batch(self, run: str, deadline: float, started: float | None = None) -> BatchRun:
        """The batch ``run`` (its token, begun at ``started``) over the ledger, bounded by ``deadline`` (Unix times)."""
        if not isinstance(self.output_path, str) or not self.output_path.strip():
            raise SlipstreamValidationError(
                f"{self.task_id}: output_path must be the path of the results file (local or object "
                f"storage, e.g. 's3://aws@bucket/results/{{{{ ds }}}}.jsonl'), got {self.output_path!r}."
            )
        labels = parse_labels(self.competitor_labels, f"{self.task_id}: competitor_labels")
        bound = time.monotonic() + deadline - time.time()
        pace = Pace(uploads=self.max_concurrent_uploads, polls=self.max_concurrent_polls, deadline=bound)
        return BatchRun(
            SlipstreamHook(self.slipstream_conn_id, pace=pace),
            self.output_path.strip(),
            run,
            log=self.log,
            deadline=bound,
            labels=labels,
            upload_method=self.upload_method,
            started=started,
        )

    def _wait(self, context: Context, batch: BatchRun, deadline: float) -> dict[str, Any]:
        """Defer the batch's waiting jobs (a trigger at a time), or wait for them here; then publish."""
        waiting = batch.waiting()
        left = deadline - time.time()
        first_poll_after = max(self.poll_interval, _report_delay())
        # A trigger with less time than its first poll's wait and one more interval would fire at once
        # (and race the executor's report); the last stretch is waited for here instead.
        if waiting and self.deferrable and left > first_poll_after + self.poll_interval:
            batch.progress.maybe_log(force=True, note=f"; deferring {min(len(waiting), self.jobs_per_trigger)} jobs")
            trigger = SlipstreamJobsTrigger(
                job_ids=list(waiting)[: self.jobs_per_trigger],
                slipstream_conn_id=self.slipstream_conn_id,
                poll_interval=self.poll_interval,
                deadline=deadline,
                competitor_labels=batch.labels,
                max_concurrent_polls=self.max_concurrent_polls,
                run=batch.run,
                try_number=context["ti"].try_number,
                started=batch.started,
                first_poll_after=first_poll_after,
            )
            defer_with_backstop(self, context, trigger, wait=left, poll_interval=self.poll_interval)
        if waiting:
            asyncio.run(batch.wait_all(self.poll_interval, self.max_concurrent_polls))
        summary = batch.publish(enrich_catalog=self.enrich_catalog)
        batch.progress.maybe_log(force=True, note=f"; results in {summary['output_path']}")
        allowed = allowed_failures(self.max_failed, summary["videos"])
        if summary["failed"] > allowed:
            raise SlipstreamBatchFailedError(
                f"{summary['failed']} of {summary['videos']} videos failed, more than max_failed={self.max_failed!r} "
                f"allows ({allowed}). Each failure's error is in its line of {summary['output_path']}; a retry "
                "submits again the videos whose failure was temporary."
            )
        return summary

    def _bound(self, context: Context) -> float:
        """Seconds this try may run: ``timeout``, else 24 h; within ``execution_timeout`` less a margin."""
        bound = self.timeout if self.timeout is not None else DEFAULT_BATCH_TIMEOUT.total_seconds()
        left = execution_seconds_left(self, context)
        if left is not None and self.execution_timeout is not None:
            # Room to write the results file before Airflow ends the try.
            bound = min(bound, left - min(30.0, 0.1 * self.execution_timeout.total_seconds()))
        return max(bound, self.poll_interval)


class SlipstreamGetTrackOperator(BaseOperator):
    """
    Return the result dict of a completed job (XCom ``return_value``).

    Fails with a clear message if the job is not completed yet: wait for it first with
    :class:`~airflow_provider_slipstream.sensors.slipstream.SlipstreamJobSensor`, or use
    :class:`SlipstreamRecognizeVideoOperator`, which waits by itself.

    :param job_id: The job (templated), e.g. ``"{{ ti.xcom_pull('submit') }}"``.
    :param competitor_labels: Labels that count as competitor libraries (templated; a list, or a
        comma-separated string or list literal as a template renders it).
    :param enrich_catalog: As for :class:`SlipstreamRecognizeVideoOperator`.
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    """

    template_fields: Sequence[str] = ("job_id", "slipstream_conn_id", "competitor_labels")
    operator_extra_links = (SlipstreamTrackLink(),)
    ui_color = _UI_COLOR

    def __init__(
        self,
        *,
        job_id: str,
        competitor_labels: list[str] | str | None = None,
        enrich_catalog: bool = False,
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.enrich_catalog = enrich_catalog
        self.competitor_labels = competitor_labels
        self.slipstream_conn_id = slipstream_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        labels = parse_labels(self.competitor_labels, f"{self.task_id}: competitor_labels")
        hook = SlipstreamHook(self.slipstream_conn_id)
        job = hook.get_job(self.job_id)
        if not job.is_completed:
            raise SlipstreamJobNotCompletedError(
                f"Slipstream job {job.job_id} is still {job.status!r}. Wait for it first with "
                "SlipstreamJobSensor, or use SlipstreamRecognizeVideoOperator, which waits by itself."
            )
        result = job.to_result(hook.config.competitor_labels_for(labels))
        self.log.info("Slipstream job %s: %s %s", job.job_id, result["match"], _describe(result))
        return with_catalog(hook, context, result, enrich=self.enrich_catalog)


def with_catalog(hook: SlipstreamHook, context: Context, result: dict[str, Any], *, enrich: bool) -> dict[str, Any]:
    """With ``enrich``: the result with its ``catalog`` entry, and the track's page as the task's link."""
    if not enrich:
        return result
    result = hook.enrich(result)
    SlipstreamTrackLink().persist(context, (result.get("catalog") or {}).get("short_url"))
    return result


class SlipstreamGenerateLicenseOperator(BaseOperator):
    """
    License a catalog track for the end user who uploaded a video; return the license dict.

    The public ``license_url`` is what resolves a Content ID claim; it is also the task's
    "Slipstream license" link. A license is generated once per (connection, track, user, project):
    it is stored in an Airflow Variable (``slipstream_license__<hash>``) the moment it arrives, and a
    retried or cleared task, or any later task asking for the same, reuses it while it has not
    expired, without spending quota. Those Variables are the only record of the licenses (Slipstream
    has no lookup): keep them.

    Usage at or above 80 % of the daily or monthly cap is logged as a warning; a refusal because the
    quota is used up fails the task at once, saying when the window resets if Slipstream says so.

    The return value (XCom): ``{"license_id", "license_url", "track_id", "track_name", "artist_name",
    "user_id", "created_at", "expires_at", "usage": {"daily_used", "monthly_used", "daily_limit",
    "monthly_limit"}}``.

    :param user_id: Your end user's id (templated), e.g. ``"{{ params.user_id }}"``; sent as ``X-User-ID``.
    :param track_id: The catalog track (templated); or pass ``result``.
    :param result: A result dict of an internal match, e.g. ``recognize.output`` (templated).
    :param project_name: What the license is for, at most 255 characters (templated; optional).
    :param skip_non_catalog: For a ``result`` that is not an internal match: skip the task (True) rather
        than fail it (default False).
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    """

    template_fields: Sequence[str] = ("user_id", "track_id", "result", "project_name", "slipstream_conn_id")
    operator_extra_links = (SlipstreamLicenseLink(),)
    ui_color = _UI_COLOR

    def __init__(
        self,
        *,
        user_id: str,
        track_id: str | None = None,
        result: Any = None,
        project_name: str | None = None,
        skip_non_catalog: bool = False,
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (track_id is None) == (result is None):
            raise ValueError(f"{self.task_id}: pass exactly one of track_id or result (e.g. recognize.output).")
        self.user_id, self.track_id, self.result = user_id, track_id, result
        self.project_name, self.skip_non_catalog = project_name, skip_non_catalog
        self.slipstream_conn_id = slipstream_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        track_id = validate_track_id(self.track_id if self.result is None else self._track_of_result())
        user_id, project_name = validate_user_id(self.user_id), validate_project_name(self.project_name)
        store = LicenseStore(self.slipstream_conn_id, track_id, user_id, project_name)
        granted = _unexpired(store.get(), self.log)
        if granted is None:
            granted = self._generate(context, store)
        else:
            self.log.info(
                "Reusing Slipstream license %s, generated earlier for track %s, user %r%s: no quota spent",
                granted.license_id,
                track_id,
                user_id,
                f", project {project_name!r}" if project_name else "",
            )
        SlipstreamLicenseLink().persist(context, granted.license_url)
        self.log.info("License for %r by %r: %s", granted.track_name, granted.artist_name, granted.license_url)
        return granted.to_dict()

    def _generate(self, context: Context, store: LicenseStore) -> License:
        """Generate the license and store it at once: Slipstream has no lookup, a lost license is lost for good."""
        hook = SlipstreamHook(self.slipstream_conn_id)
        config = hook.config
        reserve = config.connect_timeout + config.read_timeout + _STORE_SECONDS
        left = execution_seconds_left(self, context)
        if left is not None and left < reserve:
            # Airflow would end the try mid-request, after Slipstream created (and charged) the license.
            raise SlipstreamValidationError(
                f"{self.task_id}: only {left:.0f} s of execution_timeout are left, and a license request needs "
                f"up to {reserve:.0f} s (the connection's timeouts and storing the answer). Raise execution_timeout "
                "or lower the connection's timeouts."
            )
        bound = None if left is None else time.monotonic() + left
        granted = hook.generate_license(
            store.track_id, store.user_id, store.project_name, deadline=None if bound is None else bound - reserve
        )
        # Without a bound, storing is still worth a minute of an API server restart.
        until = time.monotonic() + 60.0 if bound is None else bound
        if not store_durably(lambda: store.put(granted), f"license {granted.license_id}", until, self.log):
            self.log.warning("License not stored; keep its record from here: %s", granted.to_dict())
        near = granted.usage.near_caps()
        if near:
            self.log.warning(
                "Slipstream license usage is near its cap (%s); at the cap, licensing fails until the window resets.",
                ", ".join(near),
            )
        return granted

    def _track_of_result(self) -> Any:
        result = _as_mapping(self.result)
        if result is None or "match" not in result:
            raise SlipstreamValidationError(
                f"{self.task_id}: result must be a Slipstream result dict (e.g. recognize.output), got {self.result!r}."
            )
        if result["match"] != MatchKind.INTERNAL.value:
            message = (
                f"{self.task_id}: the match is {result['match']!r}, not a Slipstream catalog track: there is "
                "nothing to license. Branch on the match first (SlipstreamMatchBranchOperator), or pass "
                "skip_non_catalog=True to skip."
            )
            if self.skip_non_catalog:
                raise AirflowSkipException(message)
            raise SlipstreamValidationError(message)
        return (result.get("track") or {}).get("id")


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    """A result dict, also as a template renders it (its JSON, or its Python repr)."""
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(value)
                break
            except (ValueError, SyntaxError, RecursionError):
                continue
    return value if isinstance(value, Mapping) else None


def _unexpired(granted: License | None, log: Any) -> License | None:
    if granted is None or granted.expires_at is None:
        return granted
    try:
        expires = datetime.fromisoformat(granted.expires_at.replace("Z", "+00:00"))
    except ValueError:
        return granted  # unreadable: keep it rather than spend quota on a guess
    if expires.tzinfo is not None and expires <= datetime.now(timezone.utc):
        log.info("Stored license %s expired at %s; generating a new one", granted.license_id, granted.expires_at)
        return None
    return granted


class SlipstreamMatchBranchOperator(BaseBranchOperator):
    """
    Follow the task(s) mapped to a result's ``match``: internal, competitor, external or no_match.

    Direct downstream tasks not chosen are skipped. A match kind without a mapping follows none.

    :param branches: Maps match kinds to a task id or a list of task ids, e.g.
        ``{"internal": "publish", "competitor": "flag_competitor", "external": "review", "no_match": "publish"}``.
    :param result: The result dict, e.g. ``recognize.output`` (an XComArg).
    :param result_task_id: Or the id of the task whose XCom ``return_value`` is the result dict.
    """

    template_fields: Sequence[str] = ("result", "result_task_id")
    ui_color = "#f0e6d9"

    def __init__(
        self,
        *,
        branches: Mapping[str, str | Iterable[str]],
        result: Any = None,
        result_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        valid = {kind.value for kind in MatchKind}
        unknown = sorted(str(key) for key in branches if str(key) not in valid)
        if unknown:
            raise ValueError(f"{self.task_id}: unknown match kinds {unknown}; use {sorted(valid)}.")
        if (result is None) == (result_task_id is None):
            raise ValueError(f"{self.task_id}: pass exactly one of result (e.g. recognize.output) or result_task_id.")
        self.branches = {
            MatchKind(key).value: [ids] if isinstance(ids, str) else list(ids) for key, ids in branches.items()
        }
        self.result = result
        self.result_task_id = result_task_id

    def choose_branch(self, context: Context) -> list[str]:
        result = self.result
        if self.result_task_id is not None:
            result = context["ti"].xcom_pull(task_ids=self.result_task_id)
        match = result.get("match") if isinstance(result, Mapping) else None
        if match not in {kind.value for kind in MatchKind}:
            raise ValueError(
                f"{self.task_id}: expected a Slipstream result dict with a 'match' key, got {result!r}. "
                "Point result/result_task_id at a sensor, get-track or recognize task."
            )
        follow = self.branches.get(match, [])
        self.log.info("Match %r %s: following %s", match, _describe(result), follow or "no task")
        return follow


def _describe(result: Mapping[str, Any]) -> str:
    track = result.get("track")
    if not track:
        return "(no track)"
    return f"({track.get('title')!r} by {track.get('artist')!r}, label {track.get('external_label')!r})"
