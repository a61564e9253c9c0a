"""
Airflow 3.3's ``ResumableJobMixin``, or an equivalent for older Airflow 3.x.

The fallback keeps the submitted job id in an Airflow Variable named after the task instance,
so a retried task reconnects to its job instead of submitting the video again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class VariableResumableJobMixin(ABC):
    """Same contract as ``airflow.sdk.ResumableJobMixin``; the job id lives in a Variable."""

    external_id_key: str = "remote_job_id"

    def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.durable = durable

    def execute_resumable(self, context: Context) -> Any:
        from airflow.sdk import Variable

        key = self._variable_key(context)
        stored = Variable.get(key, default=None) if self.durable else None
        status = self.get_job_status(stored, context) if stored else None
        if status is not None and self.is_job_active(status):
            result = self.poll_until_complete(stored, context)
        elif status is not None and self.is_job_succeeded(status):
            result = self.get_job_result(stored, context)
        else:
            external_id = self.submit_job(context)
            if self.durable:
                Variable.set(key, external_id)
            self.poll_until_complete(external_id, context)
            result = self.get_job_result(external_id, context)
        if self.durable:
            # Unlike the task state store, Variables never expire: remove the id once it served.
            Variable.delete(key)
        return result

    def _variable_key(self, context: Context) -> str:
        ti = context["ti"]
        return f"{self.external_id_key}__{ti.dag_id}__{ti.run_id}__{ti.task_id}__{ti.map_index}"

    @abstractmethod
    def submit_job(self, context: Context) -> Any: ...

    @abstractmethod
    def get_job_status(self, external_id: Any, context: Context) -> str: ...

    @abstractmethod
    def is_job_active(self, status: str) -> bool: ...

    @abstractmethod
    def is_job_succeeded(self, status: str) -> bool: ...

    @abstractmethod
    def poll_until_complete(self, external_id: Any, context: Context) -> Any: ...

    @abstractmethod
    def get_job_result(self, external_id: Any, context: Context) -> Any: ...


try:
    from airflow.sdk import ResumableJobMixin
except ImportError:  # Airflow < 3.3
    ResumableJobMixin = VariableResumableJobMixin  # type: ignore[assignment,misc]

__all__ = ["ResumableJobMixin", "VariableResumableJobMixin"]
