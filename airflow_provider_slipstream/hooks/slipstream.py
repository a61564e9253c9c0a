"""The hook: every call to the Slipstream AudioVerify API goes through here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import requests
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_slipstream._async_session import proxy_for, shared_session
from airflow_provider_slipstream.connection import ClientConfig
from airflow_provider_slipstream.exceptions import (
    SlipstreamApiError,
    SlipstreamError,
    SlipstreamJobTimeoutError,
    SlipstreamSubmitUncertainError,
    SlipstreamTrackNotFoundError,
    SlipstreamTransientError,
)
from airflow_provider_slipstream.get_provider_info import connection_type_info
from airflow_provider_slipstream.models import (
    CatalogTrack,
    License,
    MatchKind,
    RecognitionJob,
    UploadTarget,
    check_response,
    error_message,
)
from airflow_provider_slipstream.retry import NO_RETRY, SUBMIT_RETRYABLE_STATUS, RetryPolicy
from airflow_provider_slipstream.uploads import StreamingBody, VideoFile, VideoPath, multipart_body, open_video
from airflow_provider_slipstream.validation import (
    MAX_DIRECT_UPLOAD_BYTES,
    validate_filename,
    validate_job_id,
    validate_language,
    validate_project_name,
    validate_storage_key,
    validate_track_id,
    validate_user_id,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    import aiohttp

    from airflow_provider_slipstream._pace import Lane, Pace

API_PREFIX = "/api/v4/video-recognition/"
TRACK_PATH = "/api/v4/{language}/tracks/{track_id}/"
#: Under /api/v1/, and without a trailing slash, as documented.
LICENSE_PATH = "/api/v1/licenses/generate"
#: Files up to this size go as one multipart POST with ``upload_method="auto"``; larger ones
#: take the presigned route, whose bytes never pass through the API.
DEFAULT_PRESIGNED_THRESHOLD_BYTES = 25 * 1024 * 1024
UploadMethod = Literal["auto", "direct", "presigned"]


class _Retry(Exception):
    """One failed attempt that the policy allows to repeat."""

    def __init__(self, error: SlipstreamError, retry_after: str | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _Attempts:
    """Counts the attempts of one request and says how long to wait before the next one."""

    def __init__(
        self,
        policy: RetryPolicy,
        log: Any,
        deadline: float | None,
        *,
        until_deadline: bool = False,
        pace: Pace | None = None,
        lane: Lane | None = None,
    ) -> None:
        self.policy, self.log, self.number = policy, log, 0
        #: A batch's shared pace, and the lane (uploads or polls) whose slot each attempt holds.
        self.pace, self.lane = pace, lane
        #: Of the attempt in its slot: seconds Slipstream refused it for (429/503), else None.
        self._throttled_for: float | None = None
        # until_deadline (a submit that provably created nothing): the deadline only adds re-sends past
        # max_retries while they fit before it. It never cuts the budget short, nor aims a last POST at
        # the deadline itself, where Airflow may end the try mid-request.
        self.deadline = None if until_deadline else deadline
        self.extra_until = deadline if until_deadline else None

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One attempt, holding a slot of the lane; a refused attempt gives it back slowed down."""
        if self.lane:
            self.lane.acquire()
        self._throttled_for = None
        try:
            yield
        finally:
            if self.lane:
                self.lane.release(throttled_for=self._throttled_for)

    @contextlib.asynccontextmanager
    async def aslot(self) -> AsyncIterator[None]:
        """:meth:`slot` for the event loop."""
        if self.lane:
            await self.lane.aacquire()
        self._throttled_for = None
        try:
            yield
        finally:
            if self.lane:
                self.lane.release(throttled_for=self._throttled_for)

    def pause_after(self, retry: _Retry) -> float:
        """Inside :meth:`slot`: the pause before the next attempt (cut at the pace's bound), or the final error."""
        # A refusal (429/503: "not processed, slow down") slows the whole batch down, even when it ends
        # the retries; other failures do not.
        refused = retry.error.http_status in SUBMIT_RETRYABLE_STATUS
        self._throttled_for = 1.0 if refused else None
        delay = self.next_delay(retry)
        if refused:
            self._throttled_for = delay
        return self.pace.cap(delay) if self.pace else delay

    def next_delay(self, retry: _Retry) -> float:
        self.number += 1
        delay = self.policy.delay(self.number, retry.retry_after)
        if self.number > self.policy.max_retries:
            if self.extra_until is None or time.monotonic() + delay > self.extra_until:
                raise retry.error
            self.log.warning(
                "%s Retry %d (past max_retries, within the task's bound) in %.1f s.", retry.error, self.number, delay
            )
            return delay
        left = None if self.deadline is None else self.deadline - time.monotonic()
        if left is not None and delay > left:
            if left <= 0:
                raise SlipstreamJobTimeoutError(
                    f"{retry.error} Waiting {delay:.1f} s more would pass the wait's timeout. "
                    "Raise the timeout if Slipstream is often this busy."
                ) from retry.error
            # A long Retry-After (or backoff) would overrun the caller's wait: try once more at its end.
            delay = left
        self.log.warning("%s Retry %d of %d in %.1f s.", retry.error, self.number, self.policy.max_retries, delay)
        return delay


@dataclass(frozen=True)
class _Answer:
    """What a request's answer is read against: the ids its 404 is about, a license's quota, its extra headers."""

    job_id: str | None
    track_id: str | None
    license_request: bool
    headers: dict[str, str]


def _strip_authorization(request: requests.PreparedRequest) -> requests.PreparedRequest:
    # Used as the `auth` of presigned uploads: setting any auth stops requests from adding
    # .netrc credentials, and the partner key must never reach the storage host.
    request.headers.pop("Authorization", None)
    return request


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


class SlipstreamHook(BaseHook):
    """
    Talk to Slipstream AudioVerify: submit videos, create presigned uploads, read job results.

    Requests are retried per ``slipstream-api.md``: 429 (honouring ``Retry-After``), 5xx and
    network errors with bounded exponential backoff and jitter; 400/401/403/404 never. A submit
    is re-sent only when it provably did not reach the server or the server refused it (429/503).

    :param slipstream_conn_id: The ``slipstream`` connection holding the base URL and partner key.
    :param presigned_threshold_bytes: With ``upload_method="auto"``, larger files use a presigned upload.
    :param pace: Shared by the hooks of one batch: bounds its concurrent uploads and polls, and slows
        all of them down when Slipstream answers 429/503 to any (see ``_pace``).
    """

    conn_name_attr = "slipstream_conn_id"
    default_conn_name = "slipstream_default"
    conn_type = "slipstream"
    hook_name = "Slipstream AudioVerify"

    def __init__(
        self,
        slipstream_conn_id: str = default_conn_name,
        *,
        presigned_threshold_bytes: int = DEFAULT_PRESIGNED_THRESHOLD_BYTES,
        pace: Pace | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.slipstream_conn_id = slipstream_conn_id
        self.presigned_threshold_bytes = presigned_threshold_bytes
        self.pace = pace
        self._async_config: ClientConfig | None = None

    # Airflow < 3.2 builds the connection form from these two methods; 3.2+ reads ``ui-field-behaviour``
    # and ``conn-fields`` from get_provider_info and no longer calls them. Both derive from that metadata.
    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form's standard fields, for Airflow < 3.2."""
        behaviour = connection_type_info()["ui-field-behaviour"]
        return {
            "hidden_fields": behaviour["hidden-fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The connection form's extra fields, for Airflow < 3.2 (plain wtforms: the UI only reads them)."""
        from wtforms import BooleanField, IntegerField, StringField
        from wtforms.validators import Optional

        widgets: dict[str, Any] = {}
        for name, spec in connection_type_info()["conn-fields"].items():
            kind, default = spec["schema"]["type"][0], spec["schema"].get("default")
            if kind == "boolean":
                widgets[name] = BooleanField(spec["label"], default=default)
            elif kind == "integer":
                widgets[name] = IntegerField(spec["label"], validators=[Optional()], default=default)
            else:  # these versions offer no number field: a string the connection parses
                text_default = None if default is None else str(default)
                widgets[name] = StringField(spec["label"], validators=[Optional()], default=text_default)
        return widgets

    @cached_property
    def config(self) -> ClientConfig:
        return ClientConfig.from_connection(self.get_connection(self.slipstream_conn_id))

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = _user_agent()
        return session

    def get_conn(self) -> requests.Session:
        return self.session

    def test_connection(self) -> tuple[bool, str]:
        """
        Check the Base URL and the Partner API key with two harmless reads, once each (no retries).

        Slipstream answers 401 to a read without a key and 404 to a keyed read of an unknown job:
        only both together tell the API from any web server, many of which answer 404 to anything.
        """
        try:
            config = self.config
        except SlipstreamError as exc:
            return False, str(exc)
        ok, message = _check_connection(self.session, config)
        # The answer quotes the server, which could echo the request.
        return ok, message.replace(config.api_key, "***")

    # -- the API ---------------------------------------------------------------------------

    def get_job(self, job_id: str, *, deadline: float | None = None, retry: bool = True) -> RecognitionJob:
        """
        Read a job's status and, once completed, its track.

        :param deadline: a ``time.monotonic()`` value: retries sleep at most until it, make a last
            attempt there, and then end with :class:`SlipstreamJobTimeoutError`.
        :param retry: False makes one attempt only, for callers that are a retry loop themselves (sensors).
        """
        job_id = validate_job_id(job_id)
        what = f"the status of job {job_id}"
        data = self._request(
            "GET",
            f"{API_PREFIX}{job_id}/",
            what=what,
            job_id=job_id,
            deadline=deadline,
            policy=None if retry else NO_RETRY,
        )
        return RecognitionJob.from_api(data)

    def get_catalog_track(self, track_id: str, language: str = "en", *, deadline: float | None = None) -> CatalogTrack:
        """A Slipstream catalog track with its rights metadata: where an internal match's ``track.id`` leads."""
        track_id, language = validate_track_id(track_id), validate_language(language)
        data = self._request(
            "GET",
            TRACK_PATH.format(language=language, track_id=track_id),
            what=f"catalog track {track_id}",
            track_id=track_id,
            deadline=deadline,
        )
        return CatalogTrack.from_api(data)

    def enrich(self, result: dict[str, Any], *, cache: dict[str, Any] | None = None) -> dict[str, Any]:
        """
        An internal match's result dict with ``catalog`` added (one catalog request); any other unchanged.

        A track the catalog does not know (404) gives ``catalog: None`` and a warning: the match stands.
        :param cache: catalog entries by track id, for a batch that meets the same track many times.
        """
        track_id = (result.get("track") or {}).get("id")
        if result.get("match") != MatchKind.INTERNAL.value or not track_id:
            return result
        if cache is not None and track_id in cache:
            return {**result, "catalog": cache[track_id]}
        entry: dict[str, Any] | None
        try:
            entry = self.get_catalog_track(track_id).to_catalog()
        except SlipstreamTrackNotFoundError as exc:
            self.log.warning("%s Its result gets catalog None.", exc)
            entry = None
        if cache is not None:
            cache[track_id] = entry
        return {**result, "catalog": entry}

    def generate_license(
        self, track_id: str, user_id: str, project_name: str | None = None, *, deadline: float | None = None
    ) -> License:
        """
        License a catalog track for one end user (``X-User-ID``); the answer is the only record of it.

        Each call may spend quota and nothing can look a license up later, so the POST follows the submit
        rule: re-sent only when it provably never reached Slipstream, or on 429/503. A quota refusal
        raises :class:`SlipstreamLicenseQuotaError` at once.
        """
        track_id, user_id = validate_track_id(track_id), validate_user_id(user_id)
        project_name = validate_project_name(project_name)
        body: dict[str, str] = {"track_id": track_id}
        if project_name is not None:
            body["project_name"] = project_name
        what = f"a license of track {track_id} for user {user_id!r}"
        data = self._request(
            "POST",
            LICENSE_PATH,
            what=what,
            json=body,
            headers={"X-User-ID": user_id},
            track_id=track_id,
            submit=True,
            license_request=True,
            deadline=deadline,
            until_deadline=deadline is not None,
        )
        try:
            granted = License.from_api(data)
        except SlipstreamApiError as exc:
            # Generated (and spent) without a usable id: a retry would spend quota again.
            raise SlipstreamSubmitUncertainError(
                f"Slipstream answered the request for {what} with a license this provider cannot read ({exc}). "
                f"It is not requested again. The answer: {json.dumps(data)[:2000]}"
            ) from None
        self.log.info("Generated Slipstream license %s: %s", granted.license_id, granted.license_url)
        return granted

    # The submit methods take a ``deadline`` (a ``time.monotonic()`` value, e.g. a task's bound): until
    # then, requests that provably created no job (refused connections, 429, 503; the upload steps'
    # transient errors) are re-sent beyond the connection's ``max_retries``. Without one, it bounds them.

    def submit_file(self, path: VideoPath, *, deadline: float | None = None) -> RecognitionJob:
        """Submit a video as one streamed multipart upload (up to 100 MB)."""
        return self._post_file(open_video(path, max_bytes=MAX_DIRECT_UPLOAD_BYTES), deadline)

    def create_upload_url(self, filename: str, *, deadline: float | None = None) -> UploadTarget:
        """Ask for a one-time presigned URL to upload ``filename`` to."""
        validate_filename(filename)
        data = self._request(
            "POST",
            f"{API_PREFIX}upload-url/",
            what=f"an upload URL for {filename!r}",
            json={"filename": filename},
            deadline=deadline,
            until_deadline=True,
        )
        return UploadTarget.from_api(data)

    def upload_to_url(self, target: UploadTarget, path: VideoPath, *, deadline: float | None = None) -> None:
        """PUT the file to a presigned URL: streamed, with the pinned Content-Type and no Authorization."""
        self._put_file(target, open_video(path), deadline)

    def submit_storage_key(self, storage_key: str, *, deadline: float | None = None) -> RecognitionJob:
        """Submit a video already uploaded to a presigned URL."""
        storage_key = validate_storage_key(storage_key)
        data = self._request(
            "POST",
            API_PREFIX,
            what=f"the video {storage_key!r}",
            json={"storage_key": storage_key},
            submit=True,
            deadline=deadline,
            until_deadline=True,
        )
        return self._submitted(data, storage_key)

    def submit_video(
        self, path: VideoPath, *, method: UploadMethod = "auto", deadline: float | None = None
    ) -> RecognitionJob:
        """Submit a local or object-storage video, directly or through a presigned upload."""
        if method not in ("auto", "direct", "presigned"):
            raise ValueError(f"upload method must be 'auto', 'direct' or 'presigned', not {method!r}")
        video = open_video(path, max_bytes=MAX_DIRECT_UPLOAD_BYTES if method == "direct" else None)
        if method == "direct" or (method == "auto" and video.size <= self.presigned_threshold_bytes):
            return self._post_file(video, deadline)
        target = self.create_upload_url(video.name, deadline=deadline)
        self._put_file(target, video, deadline)
        return self.submit_storage_key(target.storage_key, deadline=deadline)

    def wait_for_job(self, job_id: str, *, poll_interval: float = 3.0, timeout: float | None = None) -> RecognitionJob:
        """
        Poll until the job is completed; raise :class:`SlipstreamJobTimeoutError` after ``timeout`` seconds.

        A poll that still fails after its retries (an outage) is logged and the wait goes on, as on the
        triggerer: only a permanent error (401/403, 404) or the timeout ends it early.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last_status: str | None = None
        while True:
            try:
                job = self.get_job(job_id, deadline=deadline)
            except SlipstreamTransientError as exc:
                self.log.warning("Still waiting for Slipstream job %s despite: %s", job_id, exc)
            else:
                if job.status != last_status:
                    log_status(self.log, job)
                    last_status = job.status
                if job.is_completed:
                    return job
            pause = poll_interval if deadline is None else min(poll_interval, deadline - time.monotonic())
            if pause <= 0:
                raise SlipstreamJobTimeoutError(
                    f"Slipstream job {job_id} was still {last_status or 'unknown'!r} after {timeout:g} s. Raise the "
                    "timeout, or check the job later with SlipstreamGetTrackOperator."
                )
            time.sleep(pause)

    async def aget_job(
        self, job_id: str, client: aiohttp.ClientSession, *, deadline: float | None = None
    ) -> RecognitionJob:
        """Async :meth:`get_job` for triggers: never blocks the event loop."""
        job_id = validate_job_id(job_id)
        config = await self.aget_config()
        what = f"the status of job {job_id}"
        attempts = _Attempts(config.retry, self.log, deadline, pace=self.pace, lane=self._lane("GET"))
        while True:
            async with attempts.aslot():
                try:
                    data = await self._asend(client, config, f"{API_PREFIX}{job_id}/", what, job_id)
                    return RecognitionJob.from_api(data)
                except _Retry as failed:
                    retry = failed
                pause = attempts.pause_after(retry)
            await asyncio.sleep(pause)

    async def aget_config(self) -> ClientConfig:
        """:attr:`config` for the event loop: no blocking call, on any Airflow 3.x."""
        if self._async_config is None and "config" in self.__dict__:
            # A worker that read the connection already (a batch polls from its own event loop).
            self._async_config = self.config
        if self._async_config is None:
            # Imported here so that tests can watch them. `conn.extra_dejson` and `mask_secret()`
            # call the supervisor synchronously, which blocks a triggerer's loop (and fails on
            # Airflow 3.0, whose BaseHook has no aget_connection either); these helpers do not.
            from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

            conn = await get_async_connection(self.slipstream_conn_id, hook=self)
            extra = await get_async_extra_dejson(conn)
            config = ClientConfig.from_connection(conn, extra=extra, mask_key=False)
            await _amask_secret(config.api_key)
            self._async_config = config
        return self._async_config

    @contextlib.asynccontextmanager
    async def async_client(self) -> AsyncIterator[aiohttp.ClientSession]:
        """
        The event loop's shared aiohttp session, for :meth:`aget_job`: ``async with hook.async_client() as client``.

        Every trigger in a triggerer shares one pooled session (see ``_async_session``); it closes
        when the last of them is done.
        """
        async with shared_session(_user_agent()) as session:
            yield session

    # -- plumbing --------------------------------------------------------------------------

    def _post_file(self, video: VideoFile, deadline: float | None) -> RecognitionJob:
        def body() -> tuple[StreamingBody, dict[str, str]]:
            data, content_type = multipart_body(video)
            return data, {"Content-Type": content_type}

        data = self._request(
            "POST",
            API_PREFIX,
            what=f"the upload of {video.name!r}",
            body=body,
            submit=True,
            deadline=deadline,
            until_deadline=True,
        )
        return self._submitted(data, video.name)

    def _put_file(self, target: UploadTarget, video: VideoFile, deadline: float | None) -> None:
        def body() -> tuple[StreamingBody, dict[str, str]]:
            return StreamingBody(video), {"Content-Type": target.content_type}

        self._request(
            "PUT",
            target.upload_url,
            what=f"the presigned upload of {video.name!r}",
            body=body,
            api=False,
            deadline=deadline,
            until_deadline=True,
        )

    def _submitted(self, data: Any, video: str) -> RecognitionJob:
        job = RecognitionJob.from_api(data)
        # Named, so that the log of one of many mapped instances says which clip it is.
        self.log.info("Submitted %s to Slipstream: job %s (%s)", video, job.job_id, job.status)
        return job

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        what: str,
        json: Any = None,
        body: Callable[[], tuple[StreamingBody, dict[str, str]]] | None = None,
        headers: dict[str, str] | None = None,
        job_id: str | None = None,
        track_id: str | None = None,
        license_request: bool = False,
        submit: bool = False,
        api: bool = True,
        deadline: float | None = None,
        until_deadline: bool = False,
        policy: RetryPolicy | None = None,
    ) -> Any:
        config = self.config
        attempts = _Attempts(
            policy or config.retry,
            self.log,
            deadline,
            until_deadline=until_deadline,
            pace=self.pace,
            lane=self._lane(method),
        )
        while True:
            with attempts.slot():
                try:
                    return self._send(
                        method,
                        path_or_url,
                        config,
                        what,
                        json,
                        body,
                        _Answer(job_id, track_id, license_request, headers or {}),
                        submit,
                        api,
                    )
                except _Retry as failed:
                    retry = failed
                # Outside the except block, so a final error is not chained to the internal _Retry.
                pause = attempts.pause_after(retry)
            time.sleep(pause)

    def _lane(self, method: str) -> Lane | None:
        if self.pace is None:
            return None
        return self.pace.polls if method == "GET" else self.pace.uploads

    def _send(
        self,
        method: str,
        path_or_url: str,
        config: ClientConfig,
        what: str,
        json: Any,
        body: Callable[[], tuple[StreamingBody, dict[str, str]]] | None,
        answer: _Answer,
        submit: bool,
        api: bool,
    ) -> Any:
        data, headers = body() if body else (None, {})
        headers = {**headers, **answer.headers}
        try:
            response = self.session.request(
                method,
                config.base_url + path_or_url if api else path_or_url,
                json=json,
                data=data,
                headers=headers,
                auth=_BearerAuth(config.api_key) if api else _strip_authorization,
                timeout=(config.connect_timeout, config.read_timeout),
                allow_redirects=False,
            )
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.InvalidHeader,
        ) as exc:
            # Nothing was sent and no retry can change that.
            raise SlipstreamApiError(
                f"Cannot send {what}: {type(exc).__name__}. Check the connection's base URL."
            ) from None  # see _network_retry
        except requests.RequestException as exc:
            if submit and not _never_sent(exc):
                raise _uncertain_submit(
                    what, f"the connection failed after sending ({type(exc).__name__})", answer
                ) from None
            raise _network_retry(what, exc) from None
        if not api:
            return _check_upload(response, what)
        try:
            return check_response(
                response.status_code,
                response.content,
                what,
                job_id=answer.job_id,
                track_id=answer.track_id,
                license_request=answer.license_request,
                retry_after=response.headers.get("Retry-After"),
                scrub=config.scrub,
            )
        except SlipstreamTransientError as exc:
            if submit and response.status_code not in SUBMIT_RETRYABLE_STATUS:
                raise _uncertain_submit(what, str(exc), answer) from exc
            raise _Retry(exc, response.headers.get("Retry-After")) from exc

    async def _asend(
        self, client: aiohttp.ClientSession, config: ClientConfig, path: str, what: str, job_id: str
    ) -> Any:
        import aiohttp

        try:
            async with client.get(
                config.base_url + path,
                headers={"Authorization": f"Bearer {config.api_key}"},
                # `connect` bounds the wait for one of the shared pool's connections too, as httpx's pool
                # timeout did: a queue of polls behind a slow server must not carry a trigger past its deadline.
                timeout=aiohttp.ClientTimeout(
                    connect=config.read_timeout, sock_connect=config.connect_timeout, sock_read=config.read_timeout
                ),
                allow_redirects=False,
                proxy=proxy_for(config.base_url),
            ) as response:
                content = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _network_retry(what, exc) from None
        try:
            return check_response(response.status, content, what, job_id=job_id, scrub=config.scrub)
        except SlipstreamTransientError as exc:
            raise _Retry(exc, response.headers.get("Retry-After")) from exc


def log_status(log: Any, job: RecognitionJob) -> None:
    """Log a job's new status; an undocumented one is a warning (it counts as "not finished")."""
    if job.is_known_status:
        log.info("Slipstream job %s is %s", job.job_id, job.status)
    else:
        log.warning("Slipstream job %s reports undocumented status %r; still waiting", job.job_id, job.status)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never established (refused, DNS failure, connect timeout)."""
    from urllib3.exceptions import NewConnectionError  # NameResolutionError is a subclass

    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _network_retry(what: str, exc: Exception) -> _Retry:
    # Only the exception class is shown, and the HTTP client's exception is not chained: it embeds
    # full URLs (a presigned URL's signature is a credential), and its frames hold the request's
    # headers, which a traceback that shows locals (Airflow 3.0's console) would print.
    return _Retry(
        SlipstreamTransientError(
            f"Could not reach Slipstream for {what} ({type(exc).__name__}). "
            "Check the network and the connection's base URL."
        )
    )


def _check_upload(response: requests.Response, what: str) -> None:
    """Storage hosts answer in their own (S3) terms, and a 403 there says nothing about the partner key."""
    status = response.status_code
    if status < 300:
        return
    error = SlipstreamApiError(
        f"The storage host refused {what} ({status}: {error_message(response.content)}). The presigned URL "
        "may have expired, been used already, or the Content-Type differed from the one it was signed for; "
        "submit the video again to get a fresh URL.",
        status_code=status,
    )
    if status == 429 or status >= 500:
        raise _Retry(SlipstreamTransientError(str(error), status_code=status), response.headers.get("Retry-After"))
    raise error


#: The last sentence of an uncertain submit's message (a batch, which never re-sends it, says otherwise).
UNCERTAIN_SUBMIT_ADVICE = "Clear the task to submit again if no job appears for this video."


def _uncertain_submit(what: str, detail: str, answer: _Answer) -> SlipstreamSubmitUncertainError:
    if answer.license_request:
        return SlipstreamSubmitUncertainError(
            f"Requesting {what} failed and may still have generated it (and spent quota): {detail}. It was not "
            "re-sent, and Slipstream offers no way to look a license up. Compare the quota usage in Slipstream's "
            "dashboard before clearing the task, which requests a new license."
        )
    return SlipstreamSubmitUncertainError(
        f"Submitting {what} failed and may still have created a job: {detail}. It was not re-sent, because "
        f"Slipstream has no idempotency key and a second POST could create a duplicate job. {UNCERTAIN_SUBMIT_ADVICE}"
    )


def _user_agent() -> str:
    from airflow_provider_slipstream import __version__

    return f"airflow-provider-slipstream/{__version__}"


#: A job id that cannot exist: the API answers 404 to a keyed read of it.
_PROBE_PATH = f"{API_PREFIX}00000000-0000-0000-0000-000000000000/"


def _check_connection(session: requests.Session, config: ClientConfig) -> tuple[bool, str]:
    """The answer of :meth:`SlipstreamHook.test_connection`, in the connection form's terms."""
    where = f"Base URL {config.base_url}"

    def probe(auth: Callable[[requests.PreparedRequest], requests.PreparedRequest]) -> requests.Response:
        return session.get(
            config.base_url + _PROBE_PATH,
            auth=auth,
            timeout=(config.connect_timeout, config.read_timeout),
            allow_redirects=False,
        )

    try:
        # No key first: it must not reach a server that turns out not to be Slipstream. The
        # empty auth also keeps requests from sending .netrc credentials.
        anonymous = probe(_strip_authorization)
        if _unavailable(anonymous.status_code):
            return False, _unavailable_message(where, anonymous)
        if anonymous.status_code not in (401, 403):
            return False, (
                f"The {where} is not the Slipstream API: a request without a key got {_answer(anonymous)}, "
                "where the API answers 401. Check the Base URL (leave it empty for https://api.slipstreammusic.com)."
            )
        keyed = probe(_BearerAuth(config.api_key))
    except requests.RequestException as exc:
        return False, (
            f"Could not reach the {where} ({type(exc).__name__}; connect timeout {config.connect_timeout:g} s). "
            "Check the Base URL, and that this machine can reach it."
        )
    if keyed.status_code == 404:
        return True, f"Connected to the Slipstream API at the {where}; the Partner API key was accepted."
    if keyed.status_code in (401, 403):
        return False, (
            f"The Slipstream API at the {where} refused the Partner API key with {_answer(keyed)}. Check the "
            "key: it may be mistyped, revoked or for another environment."
        )
    if _unavailable(keyed.status_code):
        return False, _unavailable_message(where, keyed)
    return False, (
        f"The {where} answered {_answer(keyed)} to a read with the Partner API key, where the Slipstream API "
        "answers 404. Check the Base URL."
    )


def _unavailable(status: int) -> bool:
    return status == 429 or status >= 500


def _unavailable_message(where: str, response: requests.Response) -> str:
    return (
        f"The {where} answered {_answer(response)}: Slipstream (or a proxy in front of it) is unavailable "
        "right now. Try again later; if this persists, check the Base URL."
    )


def _answer(response: requests.Response) -> str:
    if 300 <= response.status_code < 400:
        return f"{response.status_code} (a redirect to {response.headers.get('Location', 'nowhere')})"
    return f"{response.status_code} ({error_message(response.content)})"


async def _amask_secret(secret: str) -> None:
    """Register a secret with the masker (and the supervisor) without blocking the event loop."""
    try:
        from airflow.sdk.log import amask_secret  # Airflow 3.3.2+
    except ImportError:
        from airflow.providers.common.compat.sdk import mask_secret
        from asgiref.sync import sync_to_async

        # As common-compat does: in a worker thread the blocking supervisor call is safe.
        await sync_to_async(mask_secret)(secret)
    else:
        await amask_secret(secret)
