"""The trigger: waits for a Slipstream job on the triggerer, asynchronously."""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_slipstream import exceptions
from airflow_provider_slipstream._pace import Pace
from airflow_provider_slipstream.batch import PROGRESS_SECONDS, poll_once
from airflow_provider_slipstream.exceptions import SlipstreamError, SlipstreamJobTimeoutError, SlipstreamTransientError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook, log_status

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from airflow.providers.common.compat.sdk import BaseOperator, Context

#: The API asks clients to poll every 2 to 5 seconds.
DEFAULT_POLL_INTERVAL = 3.0
#: How long a sensor or recognize task waits when nothing else bounds it: jobs take seconds to about
#: a minute, so an hour means something is wrong (and results expire after about a day anyway).
DEFAULT_WAIT_TIMEOUT = timedelta(hours=1)
#: How much longer than its trigger's deadline a deferral may last before Airflow ends it: the
#: trigger reports the timeout itself; Airflow's defer timeout is the backstop for a lost triggerer.
DEFER_TIMEOUT_MARGIN = 60.0


class SlipstreamJobTrigger(BaseTrigger):
    """
    Poll a Slipstream job until it is completed, without blocking the triggerer's event loop.

    Emits exactly one event: ``{"status": "success", "job_id", "result"}`` with the result dict,
    or ``{"status": "error", "job_id", "error", "message"}`` where ``error`` names the
    :mod:`~airflow_provider_slipstream.exceptions` class to raise. Use
    :func:`result_from_event` to turn either back into the result or that exception.

    :param job_id: The job to wait for.
    :param slipstream_conn_id: The ``slipstream`` connection.
    :param poll_interval: Seconds between polls (Retry-After and backoff come on top).
    :param deadline: Unix time after which the wait ends with a timeout error; the operators always
        set one. None (triggers serialized by older versions) waits until Airflow's defer timeout.
    :param competitor_labels: Overrides the connection's and the built-in competitor labels.
    :param keep_waiting_on_transient: When a poll still fails after its retries (a long outage), log
        it and poll again at the next interval: waiting costs the triggerer nothing, so only permanent
        errors (401/403, 404) and the deadline end the wait. False ends it with the error instead.
    :param try_number: The try that deferred, echoed in the event as ``try_number`` (see
        :func:`resumed_by_an_earlier_try`).
    """

    def __init__(
        self,
        job_id: str,
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        deadline: float | None = None,
        competitor_labels: list[str] | tuple[str, ...] | None = None,
        keep_waiting_on_transient: bool = True,
        try_number: int | None = None,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.slipstream_conn_id = slipstream_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.competitor_labels = None if competitor_labels is None else list(competitor_labels)
        self.keep_waiting_on_transient = keep_waiting_on_transient
        self.try_number = try_number

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "slipstream_conn_id": self.slipstream_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "competitor_labels": self.competitor_labels,
                "keep_waiting_on_transient": self.keep_waiting_on_transient,
                "try_number": self.try_number,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        origin = {} if self.try_number is None else {"try_number": self.try_number}
        try:
            result = await self._wait()
        except SlipstreamError as exc:
            yield TriggerEvent(
                {"status": "error", "job_id": self.job_id, "error": type(exc).__name__, "message": str(exc), **origin}
            )
        else:
            yield TriggerEvent({"status": "success", "job_id": self.job_id, "result": result, **origin})

    async def _wait(self) -> dict[str, Any]:
        hook = SlipstreamHook(self.slipstream_conn_id)
        # `deadline` is wall-clock so it survives serialization; retries need the monotonic clock.
        retry_deadline = None if self.deadline is None else time.monotonic() + self.deadline - time.time()
        last_status: str | None = None
        async with hook.async_client() as client:
            while True:
                try:
                    job = await hook.aget_job(self.job_id, client, deadline=retry_deadline)
                except SlipstreamTransientError as exc:
                    if not self.keep_waiting_on_transient:
                        raise
                    self.log.warning("Still waiting for Slipstream job %s despite: %s", self.job_id, exc)
                else:
                    if job.status != last_status:
                        log_status(self.log, job)
                        last_status = job.status
                    if job.is_completed:
                        config = await hook.aget_config()
                        return job.to_result(config.competitor_labels_for(self.competitor_labels))
                # The last poll is at the deadline itself, then the wait ends.
                pause = (
                    self.poll_interval
                    if self.deadline is None
                    else min(self.poll_interval, self.deadline - time.time())
                )
                if pause <= 0:
                    raise SlipstreamJobTimeoutError(
                        f"Slipstream job {self.job_id} did not complete before the task's timeout "
                        f"(last status: {last_status or 'unknown'}). Raise the timeout, or fetch the result "
                        "later with SlipstreamGetTrackOperator while the job is kept (about a day)."
                    )
                await asyncio.sleep(pause)


class SlipstreamJobsTrigger(BaseTrigger):
    """
    Poll many Slipstream jobs of a batch over the triggerer's shared client, until all ended or the deadline.

    Emits one event: ``{"status": "success", "outcomes": [[job_id, result dict or {"error": ...}, retry], ...],
    "timed_out": bool, "run", "deadline", "try_number", "started"}``, or ``{"status": "error", "error",
    "message", ...}`` when the key is refused. It ends early once its outcomes reach ``max_event_bytes``, so
    that no event grows past Airflow's limits; the task records them and defers again for the jobs left.
    It polls each job every ``poll_interval``, the first time ``first_poll_after`` seconds after it starts.

    :param job_ids: The jobs to wait for (the operator bounds how many one trigger takes).
    :param deadline: Unix time at which the wait ends; jobs still running are reported as timed out.
    :param run: The batch run's token, echoed in the event.
    :param started: Unix time the batch run began, echoed in the event (for its progress rate).
    :param first_poll_after: Seconds before the first poll (default ``poll_interval``).
    """

    def __init__(
        self,
        job_ids: list[str],
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        deadline: float | None = None,
        competitor_labels: list[str] | tuple[str, ...] | None = None,
        max_concurrent_polls: int = 16,
        max_event_bytes: int = 512 * 1024,
        run: str | None = None,
        try_number: int | None = None,
        started: float | None = None,
        first_poll_after: float | None = None,
    ) -> None:
        super().__init__()
        self.job_ids = list(job_ids)
        self.started = started
        self.first_poll_after = poll_interval if first_poll_after is None else first_poll_after
        self.slipstream_conn_id = slipstream_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.competitor_labels = None if competitor_labels is None else list(competitor_labels)
        self.max_concurrent_polls = max_concurrent_polls
        self.max_event_bytes = max_event_bytes
        self.run_token = run
        self.try_number = try_number

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_ids": self.job_ids,
                "slipstream_conn_id": self.slipstream_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "competitor_labels": self.competitor_labels,
                "max_concurrent_polls": self.max_concurrent_polls,
                "max_event_bytes": self.max_event_bytes,
                "run": self.run_token,
                "try_number": self.try_number,
                "started": self.started,
                "first_poll_after": self.first_poll_after,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        origin = {
            "run": self.run_token,
            "deadline": self.deadline,
            "try_number": self.try_number,
            "started": self.started,
        }
        try:
            outcomes, timed_out = await self._wait()
        except SlipstreamError as exc:
            yield TriggerEvent({"status": "error", "error": type(exc).__name__, "message": str(exc), **origin})
        else:
            yield TriggerEvent({"status": "success", "outcomes": outcomes, "timed_out": timed_out, **origin})

    async def _wait(self) -> tuple[list[list[Any]], bool]:
        deadline = None if self.deadline is None else time.monotonic() + self.deadline - time.time()
        pace = Pace(uploads=1, polls=self.max_concurrent_polls, deadline=deadline)
        hook = SlipstreamHook(self.slipstream_conn_id, pace=pace)
        waiting = dict.fromkeys(self.job_ids)
        outcomes: list[list[Any]] = []
        size, started, logged = 0, time.monotonic(), time.monotonic()
        self.log.info("Waiting for %d Slipstream jobs of batch run %s", len(waiting), self.run_token)
        round_start, interval = time.monotonic(), self.first_poll_after
        async with hook.async_client() as client:
            while waiting:
                # The first poll waits first_poll_after (when the deadline leaves room): a trigger that
                # fires before the executor reported the deferring try makes Airflow fail the task
                # (apache/airflow#67287, #72716), and a re-deferred batch's jobs are often done already.
                pause = interval - (time.monotonic() - round_start)
                interval = self.poll_interval
                if self.deadline is None or self.deadline - time.time() > pause:
                    await asyncio.sleep(max(0.0, pause))
                round_start = time.monotonic()
                for job_id, part, retry in await poll_once(
                    hook,
                    client,
                    list(waiting),
                    self.competitor_labels,
                    self.max_concurrent_polls,
                    deadline=deadline,
                ):
                    if size >= self.max_event_bytes:
                        break  # the rest of this round waits for the next deferral (one more poll each)
                    del waiting[job_id]
                    outcomes.append([job_id, part, retry])
                    size += len(json.dumps(part)) + 64
                if not waiting or size >= self.max_event_bytes:
                    return outcomes, False
                if round_start - logged >= PROGRESS_SECONDS:
                    logged = round_start
                    done = len(self.job_ids) - len(waiting)
                    self.log.info(
                        "Batch trigger: %d / %d jobs done in %.0f s", done, len(self.job_ids), round_start - started
                    )
                left = math.inf if self.deadline is None else self.deadline - time.time()
                if left < self.poll_interval:
                    return outcomes, True
        return outcomes, False


def result_from_event(event: dict[str, Any] | None) -> dict[str, Any]:
    """The result dict of a success event; for an error event, raise the error it names."""
    if event and event.get("status") == "success":
        return event["result"]
    if not event:
        raise SlipstreamError("The Slipstream trigger ended without an event; retry the task.")
    error_class = getattr(exceptions, str(event.get("error")), SlipstreamError)
    if not (isinstance(error_class, type) and issubclass(error_class, SlipstreamError)):
        error_class = SlipstreamError
    raise error_class(str(event.get("message") or "The Slipstream trigger reported an unknown error."))


#: Where a deferring try records its number on Airflow 3.0 (see resumed_by_an_earlier_try).
DEFERRED_TRY_XCOM = "slipstream_deferred_try"


def defer_to_trigger(
    task: BaseOperator,
    context: Context,
    *,
    job_id: str,
    slipstream_conn_id: str,
    poll_interval: float,
    wait: float,
    competitor_labels: tuple[str, ...] | None,
) -> None:
    """Defer ``task`` to a :class:`SlipstreamJobTrigger` that waits ``wait`` seconds at most, then
    resume it in its ``execute_complete``."""
    trigger = SlipstreamJobTrigger(
        job_id=job_id,
        slipstream_conn_id=slipstream_conn_id,
        poll_interval=poll_interval,
        deadline=time.time() + wait,
        competitor_labels=competitor_labels,
        # Which try deferred (not the defer kwargs: `airflow dags test` drops those).
        try_number=context["ti"].try_number,
    )
    defer_with_backstop(task, context, trigger, wait=wait, poll_interval=poll_interval)


def defer_with_backstop(
    task: BaseOperator, context: Context, trigger: BaseTrigger, *, wait: float, poll_interval: float
) -> None:
    """Defer to a trigger whose own deadline is ``wait`` seconds away; resume in ``execute_complete``."""
    ti = context["ti"]
    if not AIRFLOW_V_3_1_PLUS:
        # A lost trigger's failure has no event to name its try; this XCom does.
        ti.xcom_push(key=DEFERRED_TRY_XCOM, value=ti.try_number)
    task.defer(
        trigger=trigger,
        method_name="execute_complete",
        # A backstop for a triggerer that dies; the trigger's own deadline ends first, with a clearer message.
        timeout=timedelta(seconds=wait + poll_interval + DEFER_TIMEOUT_MARGIN),
    )


def resumed_by_an_earlier_try(context: Context, next_method: str, next_kwargs: dict[str, Any] | None) -> bool:
    """
    Whether a task is being resumed with an earlier try's deferral outcome.

    Airflow 3.0 keeps a deferral's resume method across retries (apache/airflow#56704): the retry
    does not run ``execute`` again but re-reads the event (or the lost trigger's failure) that ended
    the try before, and so fails the same way on every try. Such a retry starts over with
    ``execute`` instead. Later versions clear the resume method, so this is never true there.
    """
    ti = context["ti"]
    if next_method == "__fail__":  # a lost or failed trigger: no event
        if AIRFLOW_V_3_1_PLUS:
            return False
        deferred_by = ti.xcom_pull(task_ids=ti.task_id, key=DEFERRED_TRY_XCOM, map_indexes=ti.map_index)
    else:
        deferred_by = ((next_kwargs or {}).get("event") or {}).get("try_number")
    return deferred_by is not None and deferred_by != ti.try_number
