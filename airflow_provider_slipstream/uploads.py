"""Videos to upload: local or object-storage paths, read in chunks and never whole into memory."""

from __future__ import annotations

import mimetypes
import os
import stat
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_slipstream.exceptions import SlipstreamStorageError, SlipstreamValidationError
from airflow_provider_slipstream.validation import validate_filename, validate_size

if TYPE_CHECKING:
    from collections.abc import Iterator

CHUNK_BYTES = 1024 * 1024

#: Anything `open_video` accepts: a local path, or an ``airflow.sdk.ObjectStoragePath``
#: (or its URL string, e.g. ``s3://conn_id@bucket/clip.mp4``).
VideoPath = str | os.PathLike[str] | Any


@dataclass(frozen=True)
class VideoFile:
    """A validated video: its name, size, and a way to read it in chunks."""

    path: Any
    name: str
    size: int
    #: When the storage last changed it, as the storage reports it ("" if it does not): with ``size``,
    #: what tells a batch that a path now holds another video.
    modified: str = ""

    def chunks(self) -> Iterator[bytes]:
        # Raised from inside the request body, a storage error must not be an OSError: requests
        # would report it as a dropped connection. The request stays incomplete (Content-Length
        # is not reached), so the server cannot act on it and a retry of the task is safe.
        try:
            with self.path.open("rb") as f:
                while chunk := f.read(CHUNK_BYTES):
                    yield chunk
        except OSError as exc:
            raise _storage_error(str(self.path), exc, "while uploading it") from exc


def open_video(path: VideoPath, *, max_bytes: int | None = None) -> VideoFile:
    """Check that ``path`` is a non-empty video file with an allowed extension, without reading it."""
    if isinstance(path, str) and "://" in path:
        # Imported here: object storage pulls in fsspec, which plain local uploads never need.
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        path = ObjectStoragePath(path)
    elif isinstance(path, str) or (isinstance(path, os.PathLike) and not hasattr(path, "stat")):
        # A path object with its own stat() is kept as it is: on universal-pathlib 0.2 (Airflow
        # 3.0) ObjectStoragePath is a pathlib.Path, and Path() of memory://b/x.mp4 is the local /b/x.mp4.
        path = Path(path)
    shown = str(path)
    # stat() rather than exists(): fsspec's exists() reports any storage error as "missing",
    # which would fail the task for good on a throttled request.
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise SlipstreamValidationError(
            f"Video {shown!r} does not exist. Check the path (and its connection)."
        ) from exc
    except IsADirectoryError as exc:
        raise _directory(shown) from exc
    except OSError as exc:
        raise _storage_error(shown, exc, "to check it") from exc
    except ValueError as exc:
        raise SlipstreamValidationError(f"Cannot read video {shown!r}: {exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise _directory(shown)
    name = validate_filename(path.name)
    validate_size(shown, int(info.st_size), limit=max_bytes)
    return VideoFile(path=path, name=name, size=int(info.st_size), modified=_modified(info))


def _modified(info: Any) -> str:
    # Object stores report it in their own keys: S3 LastModified (to the second) and ETag (the content's
    # hash for a simple upload), fsspec's local files mtime. "created" only where there is nothing else
    # (the memory filesystem): for local files it is st_ctime, which a chmod changes.
    if isinstance(info, Mapping):
        found = [str(info[key]) for key in ("LastModified", "ETag", "mtime") if info.get(key)]
        if found or info.get("created"):
            return "|".join(found) or str(info["created"])
    mtime = getattr(info, "st_mtime", None)
    return "" if not mtime else repr(mtime)


def _directory(shown: str) -> SlipstreamValidationError:
    return SlipstreamValidationError(f"Video {shown!r} is a directory; pass the path of one video file.")


def _storage_error(shown: str, exc: OSError, when: str) -> SlipstreamStorageError:
    return SlipstreamStorageError(
        f"Could not read video {shown!r} {when}: {type(exc).__name__}: {exc}. Storage errors are usually "
        "temporary (throttling, an outage), so the task's retries will read it again; if this persists, "
        "check the storage connection's permissions."
    )


def content_type_for(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


class StreamingBody:
    """
    A request body of known length assembled from bytes and files.

    ``requests`` sends an iterable with ``__len__`` with a Content-Length header, one chunk at a
    time: S3 refuses chunked uploads, and memory stays flat whatever the file size.
    """

    def __init__(self, *parts: bytes | VideoFile) -> None:
        self._parts = parts

    def __len__(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.size for p in self._parts)

    def __iter__(self) -> Iterator[bytes]:
        for part in self._parts:
            if isinstance(part, bytes):
                yield part
            else:
                yield from part.chunks()


def multipart_body(video: VideoFile, field: str = "file") -> tuple[StreamingBody, str]:
    """A streamed ``multipart/form-data`` body with one file field, and its Content-Type."""
    boundary = uuid.uuid4().hex
    safe_name = video.name.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{safe_name}"\r\n'
        f"Content-Type: {content_type_for(video.name)}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return StreamingBody(head, video, tail), f"multipart/form-data; boundary={boundary}"
