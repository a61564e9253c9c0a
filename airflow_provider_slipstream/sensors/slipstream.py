"""The sensor: waits for a submitted Slipstream job and returns its result dict."""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout, BaseSensorOperator, PokeReturnValue, conf

from airflow_provider_slipstream.exceptions import SlipstreamJobTimeoutError, SlipstreamTransientError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook, log_status
from airflow_provider_slipstream.triggers.slipstream import (
    DEFAULT_POLL_INTERVAL,
    SlipstreamJobTrigger,
    result_from_event,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_slipstream.models import RecognitionJob

#: Longest pause (Retry-After or backoff) one reschedule-mode poke sleeps out, in seconds.
MAX_RETRY_WAIT_PER_POKE = 60.0
#: Where the last seen status is kept between pokes, so each change is logged once.
_LAST_STATUS_KEY = "slipstream_last_status"


class SlipstreamJobSensor(BaseSensorOperator):
    """
    Wait until a Slipstream recognition job is completed; return the result dict as XCom.

    Runs in ``reschedule`` mode by default, so no worker slot is held between pokes; with
    ``deferrable=True`` the wait moves to the triggerer after one immediate poke. Temporary API
    failures (5xx, 429, network) are logged and the sensor keeps waiting; a rejected key or an
    unknown/expired job fails the task at once, without retries.

    The XCom value: ``{"job_id", "status", "match", "track"}`` where ``match`` is ``internal``,
    ``competitor``, ``external`` or ``no_match``.

    :param job_id: The job to wait for (templated), e.g. ``"{{ ti.xcom_pull('submit') }}"``.
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    :param competitor_labels: Labels that count as competitor libraries; defaults to the
        connection's ``competitor_labels`` extra, else the built-in list (which includes Epidemic Sound).
    :param deferrable: Wait on the triggerer instead; defaults to ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("job_id", "slipstream_conn_id", "competitor_labels")
    ui_color = "#d9f0e8"

    def __init__(
        self,
        *,
        job_id: str,
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
        competitor_labels: list[str] | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = DEFAULT_POLL_INTERVAL,
        mode: str = "reschedule",
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, mode=mode, **kwargs)
        self.job_id = job_id
        self.slipstream_conn_id = slipstream_conn_id
        self.competitor_labels = competitor_labels
        self.deferrable = deferrable
        self._last_status: str | None = None

    @cached_property
    def hook(self) -> SlipstreamHook:
        return SlipstreamHook(self.slipstream_conn_id)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        # In reschedule mode a poke may sleep out a short Retry-After, but must not hold its
        # worker slot through a long one: it gives up and the next poke tries again.
        deadline = time.monotonic() + MAX_RETRY_WAIT_PER_POKE if self.reschedule else None
        try:
            job = self.hook.get_job(self.job_id, deadline=deadline)
        except (SlipstreamTransientError, SlipstreamJobTimeoutError) as exc:
            self.log.warning("Slipstream is not answering right now; will poke again: %s", exc)
            return False
        self._log_status_change(job, context)
        if not job.is_completed:
            return False
        labels = self.hook.config.competitor_labels_for(self.competitor_labels)
        return PokeReturnValue(is_done=True, xcom_value=job.to_result(labels))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        done = self.poke(context)
        if isinstance(done, PokeReturnValue):
            return done.xcom_value
        self.defer(
            trigger=SlipstreamJobTrigger(
                job_id=self.job_id,
                slipstream_conn_id=self.slipstream_conn_id,
                poll_interval=self.poke_interval,
                deadline=time.time() + self.timeout,
                competitor_labels=self.competitor_labels,
                keep_waiting_on_transient=True,
            ),
            method_name="execute_complete",
            # A backstop for a triggerer that dies; the trigger's own deadline ends first, with a clearer message.
            timeout=timedelta(seconds=self.timeout + 60),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            return result_from_event(event)
        except SlipstreamJobTimeoutError as exc:
            # Airflow applies soft_fail / never_fail to sensor timeouts.
            raise AirflowSensorTimeout(str(exc)) from exc

    def _log_status_change(self, job: RecognitionJob, context: Context) -> None:
        # In reschedule mode each poke is a new process: remember the status in the task state
        # store (Airflow >= 3.3) so it is logged once per change, not once per poke.
        store = context.get("task_state_store")
        previous = store.get(_LAST_STATUS_KEY) if store is not None else self._last_status
        if job.status == previous:
            return
        log_status(self.log, job)
        self._last_status = job.status
        if store is not None:
            store.set(_LAST_STATUS_KEY, job.status)
