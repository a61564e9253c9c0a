"""
Where a task keeps the job it submitted, so that its next try resumes that job instead of
submitting the video again; and where generated licenses are kept (:class:`LicenseStore`).

Airflow 3.3 and later: the task state store, scoped to the task instance and shared by its tries.
Before 3.3: an Airflow Variable stands in (common-compat's ``ResumableJobMixin`` stand-in does not
resume at all), named after a hash of the task instance, because Variable keys hold at most 250
characters and dag, run and task ids together can be longer.

A record names the video it was submitted for: a task instance that now has another input (a
mapped index whose upstream list changed) submits anew instead of returning another video's result.
The record is removed once the task succeeded, on every version, so clearing a succeeded task
submits again (a fresh recognition) and nothing is left behind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_slipstream.models import License

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: The record's key in the task state store, and the prefix of the fallback Variables.
LEDGER_KEY = "slipstream_job"


@dataclass(frozen=True)
class StoredJob:
    """A submitted job and the input it was submitted for (a video path, or ``storage_key:<key>``)."""

    job_id: str
    video: str

    @classmethod
    def from_stored(cls, value: Any) -> StoredJob | None:
        if isinstance(value, dict) and isinstance(value.get("job_id"), str) and isinstance(value.get("video"), str):
            return cls(job_id=value["job_id"], video=value["video"])
        return None  # absent, or written by another version: nothing to resume


class JobLedger:
    """The stored job of one task instance: ``get``, ``put`` and ``discard``."""

    def __init__(self, context: Context) -> None:
        self._store = context.get("task_state_store")
        ti = context["ti"]
        map_index = -1 if ti.map_index is None else ti.map_index
        self._ti = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": map_index}
        #: Used only before Airflow 3.3, where there is no task state store.
        self.variable_key = variable_key(ti.dag_id, ti.run_id, ti.task_id, map_index)

    def get(self) -> StoredJob | None:
        if self._store is not None:
            return StoredJob.from_stored(self._store.get(LEDGER_KEY))
        from airflow.providers.common.compat.sdk import Variable

        return StoredJob.from_stored(Variable.get(self.variable_key, default=None, deserialize_json=True))

    def put(self, job: StoredJob) -> None:
        if self._store is not None:
            self._store.set(LEDGER_KEY, asdict(job))
            return
        from airflow.providers.common.compat.sdk import Variable

        # The task instance rides along in the value: the hashed key alone would not say whose it is.
        Variable.set(self.variable_key, {**asdict(job), **self._ti}, serialize_json=True)

    def discard(self) -> None:
        if self._store is not None:
            self._store.delete(LEDGER_KEY)
            return
        from airflow.providers.common.compat.sdk import Variable

        Variable.delete(self.variable_key)


def variable_key(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The fallback Variable's key: 80 characters, whatever the length of the ids."""
    digest = hashlib.sha256(f"{dag_id}\x00{run_id}\x00{task_id}\x00{map_index}".encode()).hexdigest()
    return f"{LEDGER_KEY}__{digest}"


#: The prefix of the Variables that keep generated licenses.
LICENSE_KEY = "slipstream_license"


class LicenseStore:
    """
    The license generated for one (connection, track, user, project), kept in an Airflow Variable.

    Not the task state store: a license is worth keeping beyond its task instance. A retried or
    cleared task, a rerun or another DAG licensing the same track for the same user and project
    reuses it instead of spending quota; and Slipstream has no lookup, so this is the only record.
    """

    def __init__(self, conn_id: str, track_id: str, user_id: str, project_name: str | None) -> None:
        self.track_id, self.user_id, self.project_name = track_id, user_id, project_name
        self.identity = {"conn_id": conn_id, "track_id": track_id, "user_id": user_id, "project_name": project_name}
        # JSON, so that no project (null) and a project named "None" are different licenses.
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()
        self.variable_key = f"{LICENSE_KEY}__{digest}"

    def get(self) -> License | None:
        from airflow.providers.common.compat.sdk import Variable

        stored = Variable.get(self.variable_key, default=None, deserialize_json=True)
        if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in self.identity.items()):
            return None  # absent, or written by another version: generate
        try:
            return License.from_dict(stored["license"])
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, granted: License) -> None:
        from airflow.providers.common.compat.sdk import Variable

        Variable.set(self.variable_key, {**self.identity, "license": granted.to_dict()}, serialize_json=True)
