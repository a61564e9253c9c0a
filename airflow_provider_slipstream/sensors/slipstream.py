"""The sensor: waits for a submitted Slipstream job and returns its result dict."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
    timezone,
)
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS

from airflow_provider_slipstream.exceptions import SlipstreamJobTimeoutError, SlipstreamTransientError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook, log_status
from airflow_provider_slipstream.triggers.slipstream import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    defer_to_trigger,
    result_from_event,
    resumed_by_an_earlier_try,
)
from airflow_provider_slipstream.validation import parse_labels

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_slipstream.models import RecognitionJob

#: The default poke interval of a reschedule-mode sensor: well above ``[workers]
#: min_heartbeat_interval`` (5 s by default), so a poke's report cannot arrive after the next poke
#: was queued (apache/airflow#71172). Poke and deferrable waits use the API's 2-5 s guidance.
RESCHEDULE_POKE_INTERVAL = 10.0
#: Where the last seen status is kept between pokes, so each change is logged once.
_LAST_STATUS_KEY = "slipstream_last_status"


class SlipstreamJobSensor(BaseSensorOperator):
    """
    Wait until a Slipstream recognition job is completed; return the result dict as XCom.

    Runs in ``reschedule`` mode by default, so no worker slot is held between pokes; with
    ``deferrable=True`` the wait moves to the triggerer after one immediate poke. Temporary API
    failures (5xx, 429, network) are logged and the sensor keeps waiting until its ``timeout``; a
    rejected key or an unknown/expired job fails the task at once, without retries. ``soft_fail``
    and ``never_fail`` apply in every mode, the first poke of a deferrable sensor included.

    The XCom value: ``{"job_id", "status", "match", "track"}`` where ``match`` is ``internal``,
    ``competitor``, ``external`` or ``no_match``.

    :param job_id: The job to wait for (templated), e.g. ``"{{ ti.xcom_pull('submit') }}"``.
    :param slipstream_conn_id: The ``slipstream`` connection (templated).
    :param competitor_labels: Labels that count as competitor libraries (templated: a list, or a string
        rendered from one); defaults to the connection's ``competitor_labels`` extra, else the built-in
        list (which includes Epidemic Sound).
    :param deferrable: Wait on the triggerer instead; defaults to ``[operators] default_deferrable``.
    :param poke_interval: Seconds between pokes; default 10 in reschedule mode (see
        ``RESCHEDULE_POKE_INTERVAL``), else 3. Each poke is one request: the pokes are the retries.
    :param timeout: Longest wait, in seconds; default one hour (``DEFAULT_WAIT_TIMEOUT``), not Airflow's
        seven days: results expire after about a day, and a job takes about a minute.
    """

    template_fields: Sequence[str] = ("job_id", "slipstream_conn_id", "competitor_labels")
    ui_color = "#d9f0e8"

    def __init__(
        self,
        *,
        job_id: str,
        slipstream_conn_id: str = SlipstreamHook.default_conn_name,
        competitor_labels: list[str] | str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float | None = None,
        timeout: float | timedelta | None = None,
        mode: str = "reschedule",
        **kwargs: Any,
    ) -> None:
        if poke_interval is None:
            poke_interval = (
                RESCHEDULE_POKE_INTERVAL if mode == "reschedule" and not deferrable else DEFAULT_POLL_INTERVAL
            )
        # A parameter of its own, so that a DAG's default_args can still set it.
        timeout = DEFAULT_WAIT_TIMEOUT if timeout is None else timeout
        super().__init__(poke_interval=poke_interval, timeout=timeout, mode=mode, **kwargs)
        self.job_id = job_id
        self.slipstream_conn_id = slipstream_conn_id
        self.competitor_labels = competitor_labels
        self.deferrable = deferrable
        self._last_status: str | None = None

    @cached_property
    def hook(self) -> SlipstreamHook:
        return SlipstreamHook(self.slipstream_conn_id)

    def execute(self, context: Context) -> Any:
        if self.reschedule and not AIRFLOW_V_3_1_PLUS:
            _parse_first_reschedule_date(context["ti"])
        return super().execute(context)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        labels = parse_labels(self.competitor_labels, f"{self.task_id}: competitor_labels")
        # One request per poke, no retry sleeps: the sensor's poke loop is the retry loop, so its
        # timeout is overrun by at most one poke interval and one request.
        try:
            job = self.hook.get_job(self.job_id, retry=False)
        except SlipstreamTransientError as exc:
            self.log.warning("Slipstream is not answering right now; will poke again: %s", exc)
            return self._not_yet(context, labels)
        self._log_status_change(job, context)
        if not job.is_completed:
            return self._not_yet(context, labels)
        if (store := self._poke_store(context)) is not None:
            store.delete(_LAST_STATUS_KEY)  # done: a cleared sensor logs its statuses afresh
        return PokeReturnValue(is_done=True, xcom_value=job.to_result(self.hook.config.competitor_labels_for(labels)))

    def _not_yet(self, context: Context, labels: tuple[str, ...] | None) -> bool:
        # Deferring from inside poke() keeps Airflow's own poke handling (soft_fail, never_fail,
        # silent_fail) around the first poke: TaskDeferred passes through it untouched.
        if self.deferrable:
            defer_to_trigger(
                self,
                context,
                job_id=self.job_id,
                slipstream_conn_id=self.slipstream_conn_id,
                poll_interval=self.poke_interval,
                wait=self.timeout,
                competitor_labels=labels,
            )
        return False

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            return result_from_event(event)
        except SlipstreamJobTimeoutError as exc:
            # Airflow applies soft_fail / never_fail to sensor timeouts.
            raise AirflowSensorTimeout(str(exc)) from exc

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        if resumed_by_an_earlier_try(context, next_method, next_kwargs):
            return self.execute(context)  # a fresh try, outside the deferral's soft_fail handling below
        # Airflow 3.0 applies soft_fail, but not never_fail, to a deferral's outcome, and neither to a
        # lost trigger (its defer timeout); 3.1 and later apply both to both, as this does.
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(
                    f"Skipping due to {'soft_fail' if self.soft_fail else 'never_fail'}: {exc}"
                ) from exc
            raise

    def _poke_store(self, context: Context) -> Any:
        """
        The task state store (Airflow >= 3.3) in reschedule mode, where each poke is a new process
        and the last status must outlive it; else None (the sensor object lives through its pokes,
        and a deferrable sensor finishing on the triggerer would leave the key behind).
        """
        return context.get("task_state_store") if self.reschedule and not self.deferrable else None

    def _log_status_change(self, job: RecognitionJob, context: Context) -> None:
        # Logged once per change, not once per poke.
        store = self._poke_store(context)
        previous = store.get(_LAST_STATUS_KEY) if store is not None else self._last_status
        if job.status == previous:
            return
        log_status(self.log, job)
        self._last_status = job.status
        if store is not None:
            store.set(_LAST_STATUS_KEY, job.status)


def _parse_first_reschedule_date(ti: Any) -> None:
    """
    Airflow 3.0's ``airflow dags test`` hands a sensor its first reschedule date as a string (the
    in-process supervisor skips the response's validation), so every rescheduled sensor's second poke
    fails with ``TypeError: datetime - str``. Fixed in 3.1; delete this with the 3.0 support.
    """
    first_reschedule_date = ti.get_first_reschedule_date

    def parsed(context: Context) -> Any:
        value = first_reschedule_date(context)
        return timezone.parse(value) if isinstance(value, str) else value

    # The task instance is a pydantic model, which refuses unknown attributes: shadow the method on
    # this one instance only.
    object.__setattr__(ti, "get_first_reschedule_date", parsed)
