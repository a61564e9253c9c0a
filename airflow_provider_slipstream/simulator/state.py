"""The simulator's state: configuration, jobs, uploads, licenses, request log and fault rules.

Plain Python, guarded by one lock, because the server's event loop thread and the test
thread read and change it at the same time.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import fnmatch
import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal, get_args

from airflow_provider_slipstream.simulator.licenses import License, Quota
from airflow_provider_slipstream.simulator.scenarios import ODD_STATUS, STALL, track_for

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

SUBMIT_PATH = "/api/v4/video-recognition/"
UPLOAD_URL_PATH = "/api/v4/video-recognition/upload-url/"
JOB_ROUTE = "/api/v4/video-recognition/{job_id}/"
S3_PREFIX = "/sim-bucket/temp/"
S3_ROUTE = S3_PREFIX + "{storage_key}"
STORAGE_KEY_PREFIX = "video-recognition/"
TRACK_ROUTE = "/api/v4/{language}/tracks/{track_id}/"
# Documented under /api/v1/ and without a trailing slash (unlike every other path).
LICENSE_PATH = "/api/v1/licenses/generate"
_TRACK_PATH = re.compile(r"/api/v4/[^/]+/tracks/[^/]+/")

# The detailed log is bounded so a long-running simulator does not grow without limit;
# the totals behind /_sim/stats are plain counters and stay exact.
REQUEST_LOG_LIMIT = 10_000

FaultKind = Literal["status", "delay", "hold", "drop", "malformed", "html"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_GLOB_CHARS = frozenset("*?[")


@dataclasses.dataclass
class Fault:
    """One fault-injection rule; the first matching rule with `remaining` left applies.

    `path` is a prefix of the URL path, or an fnmatch glob when it contains `*?[`.
    `remaining` is decremented on each use (None = unlimited); the state keeps this very
    object, so a test can read `remaining` afterwards.
    """

    kind: FaultKind
    path: str = "/"
    method: str | None = None
    remaining: int | None = None
    status: int | None = None
    body: str | dict[str, Any] | None = None
    content_type: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if self.method is not None:
            self.method = self.method.upper()
        if self.remaining is not None and self.remaining < 0:
            raise ValueError("remaining must be >= 0 or None")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")

    def matches(self, method: str, path: str) -> bool:
        if self.remaining == 0 or (self.method is not None and self.method != method):
            return False
        if _GLOB_CHARS & set(self.path):
            return fnmatch.fnmatchcase(path, self.path)
        return path.startswith(self.path)


@dataclasses.dataclass
class RequestRecord:
    """One request as the simulator saw it (control calls under /_sim/ are not recorded)."""

    server: Literal["api", "s3"]
    method: str
    path: str
    # Lower-case names; an Authorization value is redacted to its scheme, so the log
    # proves whether the header was sent without ever holding the key.
    headers: dict[str, str]
    fault: str | None = None
    # Set when the response starts, i.e. before the client can have read it.
    status: int | None = None
    #: time.monotonic() when the request arrived, to measure how long a client kept polling.
    at: float = dataclasses.field(default_factory=time.monotonic)
    #: The client's (host, port): one per connection, so tests can count the connections a client opened.
    client: tuple[str, int] | None = None


@dataclasses.dataclass
class Job:
    job_id: str
    scenario: str
    filename: str
    sha256: str
    created_at: dt.datetime
    started: float  # time.monotonic() at creation
    # Timings are taken at creation so that reconfiguring affects only new jobs.
    queued_seconds: float
    processing_seconds: float
    ttl_seconds: float
    expired: bool = False

    def body(self, now: float) -> dict[str, Any] | None:
        """The RecognitionJob as the API returns it at `now`, or None once expired."""
        elapsed = now - self.started
        finished = self.queued_seconds + self.processing_seconds
        track = None
        if self.expired or (self.scenario != STALL and elapsed >= finished + self.ttl_seconds):
            return None
        if elapsed < self.queued_seconds:
            status = "queued"
        elif elapsed < finished or self.scenario == STALL:
            status = "transcoding" if self.scenario == ODD_STATUS else "processing"
        else:
            status, track = "completed", track_for(self.scenario)
        return {
            "job_id": self.job_id,
            "status": status,
            "track": track,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
        }


@dataclasses.dataclass
class Upload:
    """A presigned upload target, from issue to a completed PUT."""

    storage_key: str
    content_type: str
    state: Literal["issued", "uploading", "uploaded"] = "issued"
    size: int = 0
    sha256: str = ""


def redact_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name_b, value_b in raw:
        name, value = name_b.decode("latin-1").lower(), value_b.decode("latin-1")
        if name == "authorization":
            value = value.split(" ", 1)[0] + " [redacted]"
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def route_of(server: str, method: str, path: str) -> str:
    """`METHOD /route/template` so that per-job paths count as one route."""
    if server == "s3" and path.startswith(S3_PREFIX):
        return f"{method} {S3_ROUTE}"
    if _TRACK_PATH.fullmatch(path):
        return f"{method} {TRACK_ROUTE}"
    rest = path[len(SUBMIT_PATH) :]
    if path.startswith(SUBMIT_PATH) and path != UPLOAD_URL_PATH and rest.count("/") == 1 and rest.endswith("/"):
        return f"{method} {JOB_ROUTE}"
    return f"{method} {path}"


class SimulatorState:
    """Everything the simulator knows; all public methods are thread-safe."""

    def __init__(
        self,
        *,
        api_key: str = "sim-partner-key",
        queued_seconds: float = 0.5,
        processing_seconds: float = 1.5,
        job_ttl_seconds: float = 86400.0,
        upload_url_expires_in: int = 600,
        max_file_bytes: int = 100 * 1024 * 1024,
        license_daily_limit: int = 1000,
        license_monthly_limit: int = 30000,
    ) -> None:
        self._lock = threading.Lock()
        self._quota = Quota()
        # Signs presigned URLs; per state, so URLs of one simulator never verify on another.
        self._signing_secret = secrets.token_bytes(32)
        self.api_key = ""
        self.queued_seconds = self.processing_seconds = self.job_ttl_seconds = 0.0
        self.upload_url_expires_in = self.max_file_bytes = 0
        self.configure(
            api_key=api_key,
            queued_seconds=queued_seconds,
            processing_seconds=processing_seconds,
            job_ttl_seconds=job_ttl_seconds,
            upload_url_expires_in=upload_url_expires_in,
            max_file_bytes=max_file_bytes,
            license_daily_limit=license_daily_limit,
            license_monthly_limit=license_monthly_limit,
        )
        # Set by SimulatorServer once the S3 socket is bound.
        self.s3_base_url = "http://127.0.0.1:0"
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._uploads: dict[str, Upload] = {}
        self._log: collections.deque[RequestRecord] = collections.deque(maxlen=REQUEST_LOG_LIMIT)
        self._faults: list[Fault] = []
        self._jobs_created = 0
        self._by_route: collections.Counter[str] = collections.Counter()
        self._licenses: list[License] = []
        self._quota.clear(dt.datetime.now(dt.timezone.utc))

    # -- configuration -------------------------------------------------------------------

    def configure(
        self,
        *,
        api_key: str | None = None,
        queued_seconds: float | None = None,
        processing_seconds: float | None = None,
        job_ttl_seconds: float | None = None,
        upload_url_expires_in: int | None = None,
        max_file_bytes: int | None = None,
        license_daily_limit: int | None = None,
        license_monthly_limit: int | None = None,
        license_daily_used: int | None = None,
        license_monthly_used: int | None = None,
    ) -> None:
        """Change any subset of the configuration; validates everything before applying.

        `license_daily_used`/`license_monthly_used` set the quota counters (start near a cap).
        """
        seconds = {
            "queued_seconds": queued_seconds,
            "processing_seconds": processing_seconds,
            "job_ttl_seconds": job_ttl_seconds,
        }
        for name, value in seconds.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ValueError(f"{name} must be a number >= 0")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ValueError("api_key must be a non-empty string")
        # A zero or negative expiry is allowed: it issues URLs that are already expired.
        if upload_url_expires_in is not None and (
            isinstance(upload_url_expires_in, bool) or not isinstance(upload_url_expires_in, int)
        ):
            raise ValueError("upload_url_expires_in must be an integer")
        if max_file_bytes is not None and (
            isinstance(max_file_bytes, bool) or not isinstance(max_file_bytes, int) or max_file_bytes < 1
        ):
            raise ValueError("max_file_bytes must be a positive integer")
        quota = {
            "daily_limit": license_daily_limit,
            "monthly_limit": license_monthly_limit,
            "daily_used": license_daily_used,
            "monthly_used": license_monthly_used,
        }
        for name, value in quota.items():
            # A zero cap is allowed: it refuses every license.
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"license_{name} must be an integer >= 0")
        with self._lock:
            # Set counters belong to today's windows, not to ones that have ended since.
            self._quota.roll(dt.datetime.now(dt.timezone.utc))
            for name, value in quota.items():
                if value is not None:
                    setattr(self._quota, name, value)
            for name, value in seconds.items():
                if value is not None:
                    setattr(self, name, float(value))
            if api_key is not None:
                self.api_key = api_key
            if upload_url_expires_in is not None:
                self.upload_url_expires_in = upload_url_expires_in
            if max_file_bytes is not None:
                self.max_file_bytes = max_file_bytes

    def set_api_key(self, key: str) -> None:
        self.configure(api_key=key)

    def config(self) -> dict[str, Any]:
        """The configuration without the API key (safe to print or return over HTTP)."""
        with self._lock:
            return {
                "queued_seconds": self.queued_seconds,
                "processing_seconds": self.processing_seconds,
                "job_ttl_seconds": self.job_ttl_seconds,
                "upload_url_expires_in": self.upload_url_expires_in,
                "max_file_bytes": self.max_file_bytes,
                "license_daily_limit": self._quota.daily_limit,
                "license_monthly_limit": self._quota.monthly_limit,
            }

    def key_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.api_key.encode())

    def reset(self) -> None:
        """Forget jobs, uploads, licenses, the request log, fault rules and counters (not config)."""
        with self._lock:
            self._reset_locked()

    # -- fault rules ---------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first rule matching this request, with its count decremented."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    # -- request log and counters --------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)
            self._by_route[route_of(record.server, record.method, record.path)] += 1

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    @property
    def jobs_created(self) -> int:
        with self._lock:
            return self._jobs_created

    def count(self, method: str | None = None, path_glob: str | None = None) -> int:
        """How many logged requests match `method` and the fnmatch `path_glob`."""
        return sum(1 for _ in self._matching(method, path_glob))

    def connections(self, path_glob: str | None = None) -> int:
        """How many client connections carried the logged requests matching the fnmatch `path_glob`."""
        return len({record.client for record in self._matching(None, path_glob)})

    def _matching(self, method: str | None, path_glob: str | None) -> Iterator[RequestRecord]:
        wanted = method.upper() if method else None
        for record in self.requests:
            if (wanted is None or record.method == wanted) and (
                path_glob is None or fnmatch.fnmatchcase(record.path, path_glob)
            ):
                yield record

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "jobs_created": self._jobs_created,
                "licenses": len(self._licenses),
                "requests": sum(self._by_route.values()),
                "by_route": dict(self._by_route),
            }

    # -- jobs ----------------------------------------------------------------------------

    def create_job(self, filename: str, sha256: str, scenario: str) -> dict[str, Any]:
        with self._lock:
            job = Job(
                job_id=str(uuid.uuid4()),
                scenario=scenario,
                filename=filename,
                sha256=sha256,
                created_at=dt.datetime.now(dt.timezone.utc),
                started=time.monotonic(),
                queued_seconds=self.queued_seconds,
                processing_seconds=self.processing_seconds,
                ttl_seconds=self.job_ttl_seconds,
            )
            self._jobs[job.job_id] = job
            self._jobs_created += 1
        body = job.body(job.started)
        assert body is not None  # a fresh job cannot have expired
        return body

    def job_body(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job.body(time.monotonic()) if job is not None else None

    @property
    def jobs(self) -> dict[str, Job]:
        with self._lock:
            return dict(self._jobs)

    def expire_job(self, job_id: str) -> bool:
        """Make a job answer 404 from now on, as after the ~1 day retention; False if unknown."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.expired = True
            return job is not None

    # -- presigned uploads ---------------------------------------------------------------

    def sign(self, storage_key: str, amz_date: str, expires: str, content_type: str) -> str:
        message = "\n".join(("PUT", storage_key, amz_date, expires, content_type)).encode()
        return hmac.new(self._signing_secret, message, hashlib.sha256).hexdigest()

    def issue_upload(self, filename: str, content_type: str) -> Upload:
        upload = Upload(f"{STORAGE_KEY_PREFIX}{uuid.uuid4().hex}_{filename}", content_type)
        with self._lock:
            self._uploads[upload.storage_key] = upload
        return upload

    @property
    def uploads(self) -> dict[str, Upload]:
        with self._lock:
            return dict(self._uploads)

    def claim_upload(self, storage_key: str) -> bool:
        """Reserve an issued URL for one PUT; False if it is unknown, in use or used."""
        with self._lock:
            upload = self._uploads.get(storage_key)
            if upload is None or upload.state != "issued":
                return False
            upload.state = "uploading"
            return True

    def finish_upload(self, storage_key: str, size: int | None, sha256: str = "") -> None:
        """Mark a claimed PUT done (size given) or give the URL back (size None)."""
        with self._lock:
            upload = self._uploads[storage_key]
            if size is None:
                upload.state = "issued"
            else:
                upload.state, upload.size, upload.sha256 = "uploaded", size, sha256

    def uploaded(self, storage_key: str) -> Upload | None:
        with self._lock:
            upload = self._uploads.get(storage_key)
        return upload if upload is not None and upload.state == "uploaded" else None

    # -- licenses ------------------------------------------------------------------------

    def generate_license(
        self, track: Mapping[str, Any], user_id: str, project_name: str | None, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Spend quota and record a new license for a catalog track: the 200 body.

        Raises QuotaExceeded, having spent nothing. Every call is a new license: the docs do not
        say whether a repeat returns the earlier one, so the simulator takes the costly reading.
        """
        now = now or dt.datetime.now(dt.timezone.utc)
        with self._lock:
            usage = self._quota.spend(now)
            record = License(
                uuid.uuid4().hex, track["id"], track["name"], track["artist"]["name"], user_id, project_name, now
            )
            self._licenses.append(record)
        return {"success": True, "license": record.body(), "usage": usage}

    @property
    def licenses(self) -> list[License]:
        with self._lock:
            return list(self._licenses)

    def license_usage(self) -> dict[str, int]:
        with self._lock:
            return self._quota.usage()
