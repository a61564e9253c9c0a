"""
Storage errors while reading a video: temporary ones (s3fs maps S3 throttling and 5xx to OSError)
are retryable, permanent ones (missing file, directory) fail the task at once.

The video lives on a real fsspec filesystem, reached through ``ObjectStoragePath``: fsspec's
in-memory one, with switches that make its metadata calls or its reads raise OSError.
"""

from __future__ import annotations

import errno
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import fsspec
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from fsspec.implementations.memory import MemoryFileSystem
from fsspec.spec import AbstractFileSystem

from airflow_provider_slipstream.exceptions import SlipstreamStorageError, SlipstreamValidationError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.uploads import CHUNK_BYTES, open_video

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_slipstream.simulator import SimulatorServer

PROTOCOL = "flakytest"
SLOW_DOWN = "503 SlowDown: Please reduce your request rate."


class FlakyFileSystem(MemoryFileSystem):
    """fsspec's memory filesystem, with its own store, that raises OSError when told to."""

    protocol = PROTOCOL
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]
    #: Raised by every metadata call (info/stat/exists), as s3fs does for a throttled HEAD.
    info_error: ClassVar[OSError | None] = None
    #: Reads fail once this many bytes of a file were delivered.
    fail_reads_after: ClassVar[int | None] = None

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        # The memory filesystem strips only its own "memory://".
        if isinstance(path, str) and path.startswith(f"{PROTOCOL}://"):
            path = "memory://" + path.removeprefix(f"{PROTOCOL}://")
        return super()._strip_protocol(path)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        if self.info_error is not None:
            raise self.info_error
        return super().info(path, **kwargs)

    def exists(self, path: str, **kwargs: Any) -> bool:
        # fsspec's default: any error from info() reads as "does not exist" (the memory
        # filesystem's own shortcut would hide the error altogether).
        return AbstractFileSystem.exists(self, path, **kwargs)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = super()._open(path, mode, **kwargs)
        if "r" in mode and self.fail_reads_after is not None:
            return _FailingReader(f, self.fail_reads_after)
        return f


class _FailingReader:
    def __init__(self, f: Any, limit: int) -> None:
        self._f, self._left = f, limit

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            raise OSError(errno.EIO, SLOW_DOWN)
        data = self._f.read(size if 0 <= size <= self._left else self._left)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _FailingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# universal-pathlib's notice that it has no dedicated class for this test-only protocol.
pytestmark = pytest.mark.filterwarnings(f"ignore:UPath '{PROTOCOL}' filesystem not explicitly implemented:UserWarning")


@pytest.fixture
def flaky() -> Iterator[type[FlakyFileSystem]]:
    from airflow.sdk.io import attach

    fsspec.register_implementation(PROTOCOL, FlakyFileSystem, clobber=True)
    attach(PROTOCOL, fs=FlakyFileSystem())
    yield FlakyFileSystem
    FlakyFileSystem.info_error = None
    FlakyFileSystem.fail_reads_after = None
    FlakyFileSystem.store.clear()
    FlakyFileSystem.pseudo_dirs[:] = [""]


def put_video(content: bytes, name: str = "internal_clip.mp4") -> Any:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path = ObjectStoragePath(f"{PROTOCOL}://bucket-{uuid.uuid4().hex[:8]}/{name}")
    path.write_bytes(content)
    return path


@pytest.fixture
def hook(sim_conn: SimulatorServer) -> Iterator[SlipstreamHook]:
    hook = SlipstreamHook()
    yield hook
    hook.session.close()


def assert_retryable(exc: BaseException, *fragments: str) -> None:
    assert isinstance(exc, SlipstreamStorageError)
    # Airflow retries a task unless the error is an AirflowFailException.
    assert not isinstance(exc, AirflowFailException)
    for fragment in fragments:
        assert fragment in str(exc), f"{fragment!r} not in {exc}"


@pytest.mark.parametrize(
    "error",
    [OSError(errno.EIO, SLOW_DOWN), TimeoutError("read timed out"), PermissionError(errno.EACCES, "Access Denied")],
    ids=["throttled", "timeout", "access-denied"],
)
@pytest.mark.parametrize("method", ["direct", "presigned"])
def test_a_storage_error_while_checking_a_video_is_retryable(
    hook: SlipstreamHook, sim_conn: SimulatorServer, flaky: type[FlakyFileSystem], error: OSError, method: str
) -> None:
    path = put_video(b"\0" * 1000)
    flaky.info_error = error

    with pytest.raises(SlipstreamStorageError) as exc_info:
        hook.submit_video(path, method=method)  # type: ignore[arg-type]

    assert_retryable(exc_info.value, str(path), str(error))
    assert sim_conn.state.requests == []


@pytest.mark.parametrize("as_string", [False, True], ids=["ObjectStoragePath", "url-string"])
def test_a_missing_object_or_a_directory_stays_permanent(flaky: type[FlakyFileSystem], as_string: bool) -> None:
    video = put_video(b"\0" * 1000, "internal_dir.mp4/inner.mp4")
    missing, directory = video.parent / "missing.mp4", video.parent
    for path, phrase in ((missing, "does not exist"), (directory, "is a directory")):
        with pytest.raises(SlipstreamValidationError, match=phrase):
            open_video(str(path) if as_string else path)
    flaky.info_error = FileNotFoundError(errno.ENOENT, "No such key")
    with pytest.raises(SlipstreamValidationError, match="does not exist"):
        open_video(video)


@pytest.mark.parametrize("method", ["direct", "presigned"])
def test_a_storage_error_while_uploading_is_retryable_and_creates_no_job(
    hook: SlipstreamHook, sim_conn: SimulatorServer, flaky: type[FlakyFileSystem], method: str
) -> None:
    path = put_video(b"\0" * (2 * CHUNK_BYTES + 1000))
    flaky.fail_reads_after = CHUNK_BYTES  # the first MiB is sent, then the storage fails mid-body

    with pytest.raises(SlipstreamStorageError) as exc_info:
        hook.submit_video(path, method=method)  # type: ignore[arg-type]

    assert_retryable(exc_info.value, str(path), SLOW_DOWN)
    assert exc_info.value.__cause__ is not None
    assert sim_conn.state.jobs == {}
    # Not re-sent by the hook: the task's own retry starts over. (At most: the simulator may log
    # the aborted request after this line runs.)
    by_route = sim_conn.state.stats()["by_route"]
    assert by_route.get("POST /api/v4/video-recognition/", 0) <= (1 if method == "direct" else 0)
    assert by_route.get("PUT /sim-bucket/temp/{storage_key}", 0) <= (1 if method == "presigned" else 0)

    # That retry, with the storage healthy again, goes through on the same hook.
    flaky.fail_reads_after = None
    job = hook.submit_video(path, method=method)  # type: ignore[arg-type]
    assert list(sim_conn.state.jobs) == [job.job_id]
