"""
A batch's checkpoint: a folder of JSON Lines parts that are only ever added (object stores cannot append).

Parts are named by a stamp that only grows (the clock, but never below the newest part seen, so a
worker whose clock runs behind another's still writes after it), so the sorted names are the order
of the records. A local part is written under a temporary name and renamed, so a kill never leaves
half a part; a last line that does not parse anyway (another writer's torn file) is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

log = logging.getLogger(__name__)

#: Loading a ledger of more parts than this first merges them into one.
COMPACT_PARTS = 64
_PREFIX = "part-"


class Ledger:
    """
    The records of one batch folder: :meth:`add` (buffered), :meth:`commit` (durable before it
    returns; concurrent commits share one write), :meth:`records` (all, in order).

    Every record has an ordinal, its position in :meth:`records`: :meth:`add` returns the ordinal
    relative to the records that were there when this process first read them (:attr:`loaded`).
    """

    def __init__(self, folder: Any, *, local: bool) -> None:
        self.folder, self.local = folder, local
        self.loaded = 0
        self._pending: list[dict[str, Any]] = []
        self._added = self._flushed = 0
        self._stamp = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # The parts this process wrote since the last consolidate(), and their records.
        self._mine: list[Any] = []
        self._mine_records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> int:
        with self._lock:
            self._pending.append(record)
            self._added += 1
            return self.loaded + self._added - 1

    def commit(self, record: dict[str, Any]) -> int:
        ordinal = self.add(record)
        self.flush(upto=ordinal - self.loaded + 1)
        return ordinal

    def flush(self, upto: int | None = None) -> None:
        with self._flush_lock:
            if upto is not None and self._flushed >= upto:
                return  # another thread's write carried it
            with self._lock:
                batch, self._pending, added = self._pending, [], self._added
            if batch:
                try:
                    self._mine.append(self._write(batch))
                except BaseException:
                    with self._lock:
                        self._pending[:0] = batch
                    raise
                self._mine_records.extend(batch)
            self._flushed = added

    def consolidate(self) -> None:
        """
        Merge the parts this process wrote (a submit phase writes one per group commit) into one.

        On object storage every part costs a request now and one at every resume. The merged part
        comes last, where its parts were, so every record keeps its ordinal.
        """
        self.flush()
        with self._flush_lock:
            if len(self._mine) > 1:
                self._write(self._mine_records)
                for part in self._mine:
                    part.unlink()
            self._mine, self._mine_records = [], []

    def load(self) -> Iterator[dict[str, Any]]:
        """:meth:`records`, counting them as :attr:`loaded` (first merging many parts into one)."""
        parts = self._parts()
        if len(parts) > COMPACT_PARTS:
            # One new part with every record in order, then the old ones: a kill in between leaves
            # both, which replay to the same state.
            self._write(self.records(parts))
            for part in parts:
                part.unlink()
            parts = self._parts()
        self.loaded = 0
        for record in self.records(parts):
            self.loaded += 1
            yield record

    def records(self, parts: list[Any] | None = None) -> Iterator[dict[str, Any]]:
        for part in self._parts() if parts is None else parts:
            yield from _read(part)

    def _parts(self) -> list[Any]:
        try:
            parts = sorted((p for p in self.folder.iterdir() if p.name.startswith(_PREFIX)), key=lambda p: p.name)
        except (FileNotFoundError, NotADirectoryError):  # no ledger yet (S3 answers the latter for a missing prefix)
            return []
        if parts:
            self._stamp = max(self._stamp, int(parts[-1].name[len(_PREFIX) :].split("-", 1)[0]))
        return parts

    def _write(self, records: Iterable[dict[str, Any]]) -> Any:
        self._stamp = max(time.time_ns(), self._stamp + 1)
        name = f"{_PREFIX}{self._stamp:020d}-{uuid.uuid4().hex[:8]}.jsonl"
        part = self.folder / name
        if not self.local:  # an object-store PUT is atomic; object stores have no folders to make
            with part.open("w") as out:
                _dump(out, records)
            return part
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{name}.tmp"
        with temporary.open("w") as out:
            _dump(out, records)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, part)
        return part


def _dump(out: Any, records: Iterable[dict[str, Any]]) -> None:
    for record in records:
        out.write(json.dumps(record, separators=(",", ":")) + "\n")


def _read(part: Any) -> Iterator[dict[str, Any]]:
    torn: str | None = None
    with part.open("r") as lines:
        # readline(), not iteration: Airflow 3.0's object-storage file wrapper is not iterable.
        for line in iter(lines.readline, ""):
            if not line.strip():
                continue
            if torn is not None:
                raise ValueError(f"Ledger part {part} is corrupt (an unreadable line before its last): {torn[:80]!r}")
            try:
                record = json.loads(line)
            except ValueError:
                torn = line
                continue
            yield record
    if torn is not None:
        log.warning("Skipping the torn last line of ledger part %s (a write that never completed)", part)
