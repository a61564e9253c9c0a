"""Operators: submit videos, read results, recognise in one task, and branch on the match."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseBranchOperator, BaseOperator, conf

from airflow_provider_slipstream._resumable import ResumableJobMixin
from airflow_provider_slipstream.exceptions import SlipstreamJobNotCompletedError, SlipstreamJobNotFoundError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook, UploadMethod
from airflow_provider_slipstream.models import JobStatus, MatchKind, RecognitionJob
from airflow_provider_slipstream.triggers.slipstream import (
    DEFAULT_POLL_INTERVAL,
    SlipstreamJobTrigger,
    result_from_event,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_slipstream.uploads import VideoPath

#: Status given to a stored job that Slipstream no longer knows (404): submit again.
_EXPIRED = "expired"
_UI_COLOR = "#d9f0e8"


class _SlipstreamSubmitBase(ResumableJobMixin, BaseOperator):
    """
    Submits one video and makes task retries resume that job instead of submitting it again.

    The job id is pushed to XCom (key ``job_id``) as soon as it is known, and kept in Airflow's
    task state store (a Variable before Airflow 3.3) for the next try.
    """

    template_fields: Sequence[str] = ("video_path", "storage_key", "slipstream_conn_id")
    ui_color = _UI_COLOR
    external_id_key = "slipstream_job_id"

    def __init__(
        self,
        *,
        video_path: VideoPath | None = None,
        storage_key: str | None = None,
        upload_method: UploadMethod = "auto",
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
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
        # The last job read, so a completed one is not fetched again for its result.
        self._known_job: RecognitionJob | None = None

    @cached_property
    def hook(self) -> SlipstreamHook:
        return SlipstreamHook(self.slipstream_conn_id)

    def submit_job(self, context: Context) -> str:
        if self.storage_key is not None:
            job = self.hook.submit_storage_key(self.storage_key)
        else:
            job = self.hook.submit_video(self.video_path, method=self.upload_method)
        context["ti"].xcom_push(key="job_id", value=job.job_id)
        return job.job_id

    def get_job_status(self, external_id: Any, context: Context) -> str:
        try:
            job = self.hook.get_job(str(external_id))
        except SlipstreamJobNotFoundError:
            self.log.warning("Job %s from an earlier try has expired; submitting the video again", external_id)
            return _EXPIRED
        self.log.info("Resuming Slipstream job %s (%s) from an earlier try", job.job_id, job.status)
        context["ti"].xcom_push(key="job_id", value=job.job_id)
        self._known_job = job
        return job.status

    def is_job_active(self, status: str) -> bool:
        # Undocumented statuses count as "still running": the API has no failed state.
        return status not in (JobStatus.COMPLETED.value, _EXPIRED)

    def is_job_succeeded(self, status: str) -> bool:
        return status == JobStatus.COMPLETED.value


class SlipstreamSubmitVideoOperator(_SlipstreamSubmitBase):
    """
    Submit a video to Slipstream AudioVerify and return the job id (XCom ``return_value``).

    Wait for the result with :class:`~airflow_provider_slipstream.sensors.slipstream.SlipstreamJobSensor`.

    :param video_path: A local path or an object-storage path/URL such as ``s3://conn_id@bucket/clip.mp4``
        (templated). Allowed extensions: .mp4 .mov .avi .mpeg.
    :param storage_key: Instead of a path, the key of a finished presigned upload (templated).
    :param upload_method: ``"direct"`` (multipart, up to 100 MB), ``"presigned"``, or ``"auto"``
        (direct for small files).
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    """

    def execute(self, context: Context) -> str:
        return self.execute_resumable(context)

    # ResumableJobMixin returns poll_until_complete's value when it reconnects, so it is the result.
    def poll_until_complete(self, external_id: Any, context: Context) -> str:  # type: ignore[override]
        # Submitting is this operator's whole job; waiting is the sensor's.
        return str(external_id)

    def get_job_result(self, external_id: Any, context: Context) -> str:
        return str(external_id)


class SlipstreamRecognizeVideoOperator(_SlipstreamSubmitBase):
    """
    Submit a video, wait for recognition, and return the result dict, all in one task.

    Waits in the worker (``poll_interval``) or, with ``deferrable=True``, on the triggerer. A
    retried task resumes the job it already submitted while Slipstream still keeps it.

    The return value (XCom): ``{"job_id", "status", "match", "track"}``.

    :param video_path: A local or object-storage path (templated); or pass ``storage_key``.
    :param storage_key: The key of a finished presigned upload (templated).
    :param upload_method: ``"auto"``, ``"direct"`` or ``"presigned"``.
    :param poll_interval: Seconds between polls (the API asks for 2 to 5).
    :param timeout: Longest wait for the result, in seconds or as a timedelta; None waits until
        the task's ``execution_timeout``.
    :param deferrable: Wait on the triggerer; defaults to ``[operators] default_deferrable``.
    :param competitor_labels: Labels that count as competitor libraries (templated); defaults to the
        connection's ``competitor_labels`` extra, else the built-in list.
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    """

    template_fields: Sequence[str] = (*_SlipstreamSubmitBase.template_fields, "competitor_labels")

    def __init__(
        self,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        competitor_labels: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0:
            raise ValueError(f"{self.task_id}: poll_interval must be positive, got {poll_interval!r}.")
        self.poll_interval = poll_interval
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
        self.deferrable = deferrable
        self.competitor_labels = competitor_labels

    def execute(self, context: Context) -> dict[str, Any]:
        return self.execute_resumable(context)

    def poll_until_complete(self, external_id: Any, context: Context) -> dict[str, Any]:  # type: ignore[override]
        job_id = str(external_id)
        if self.deferrable:
            self.defer(
                trigger=SlipstreamJobTrigger(
                    job_id=job_id,
                    slipstream_conn_id=self.slipstream_conn_id,
                    poll_interval=self.poll_interval,
                    deadline=None if self.timeout is None else time.time() + self.timeout,
                    competitor_labels=self.competitor_labels,
                ),
                method_name="execute_complete",
            )
        self._known_job = self.hook.wait_for_job(job_id, poll_interval=self.poll_interval, timeout=self.timeout)
        return self._result(self._known_job)

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        job = self._known_job
        if job is None or job.job_id != str(external_id) or not job.is_completed:
            job = self.hook.get_job(str(external_id))
        return self._result(job)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        return result_from_event(event)

    def _result(self, job: RecognitionJob) -> dict[str, Any]:
        return job.to_result(self.hook.config.competitor_labels_for(self.competitor_labels))


class SlipstreamGetTrackOperator(BaseOperator):
    """
    Return the result dict of a completed job (XCom ``return_value``).

    Fails with a clear message if the job is not completed yet: wait for it first with
    :class:`~airflow_provider_slipstream.sensors.slipstream.SlipstreamJobSensor`, or use
    :class:`SlipstreamRecognizeVideoOperator`, which waits by itself.

    :param job_id: The job (templated), e.g. ``"{{ ti.xcom_pull('submit') }}"``.
    :param competitor_labels: Labels that count as competitor libraries (templated).
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    """

    template_fields: Sequence[str] = ("job_id", "slipstream_conn_id", "competitor_labels")
    ui_color = _UI_COLOR

    def __init__(
        self,
        *,
        job_id: str,
        competitor_labels: list[str] | None = None,
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.competitor_labels = competitor_labels
        self.slipstream_conn_id = slipstream_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        hook = SlipstreamHook(self.slipstream_conn_id)
        job = hook.get_job(self.job_id)
        if not job.is_completed:
            raise SlipstreamJobNotCompletedError(
                f"Slipstream job {job.job_id} is still {job.status!r}. Wait for it first with "
                "SlipstreamJobSensor, or use SlipstreamRecognizeVideoOperator, which waits by itself."
            )
        result = job.to_result(hook.config.competitor_labels_for(self.competitor_labels))
        self.log.info("Slipstream job %s: %s %s", job.job_id, result["match"], _describe(result))
        return result


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
