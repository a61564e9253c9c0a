"""
One pace for a whole batch: bounded concurrency per kind of request, slowed down together by 429/503.

A batch sends many requests at once (uploads in parallel, polls of many jobs). When Slipstream
answers 429 or 503 to any of them, every request of the batch waits out the ``Retry-After`` (or
the backoff) and the lane that was refused halves its concurrency; each run of successes then
adds one slot back, up to the configured maximum (additive increase, multiplicative decrease, as
TCP does). Thread-safe (the worker's upload threads) and usable from an event loop (polls). With a
deadline, no request starts after it, and no wait for a retry lasts past it.
"""

from __future__ import annotations

import asyncio
import threading
import time

from airflow_provider_slipstream.exceptions import SlipstreamJobTimeoutError

#: Waiting for a slot from an event loop: how often to look again (a slot frees within one request).
_ASYNC_LOOK_SECONDS = 0.02


class Lane:
    """The concurrency of one kind of request (uploads, polls): at most ``limit`` at once."""

    def __init__(self, pace: Pace, maximum: int) -> None:
        self.pace, self.maximum = pace, maximum
        self.limit = maximum
        self.in_flight = 0
        self._successes = 0

    def _try_take(self) -> float:
        """Take a slot (0.0) or say how long to wait before looking again; past the deadline, raise."""
        with self.pace.lock:
            now = time.monotonic()
            if self.pace.deadline is not None and max(now, self.pace.resume_at) >= self.pace.deadline:
                raise SlipstreamJobTimeoutError(
                    "Not sent: the batch's timeout came first (Slipstream had asked it to slow down, or the "
                    "time was up). A retry of the task sends it."
                )
            pause = self.pace.resume_at - now
            if pause > 0:
                return pause
            if self.in_flight < self.limit:
                self.in_flight += 1
                return 0.0
            return _ASYNC_LOOK_SECONDS

    def acquire(self) -> None:
        while (pause := self._try_take()) > 0:
            time.sleep(pause)

    async def aacquire(self) -> None:
        while (pause := self._try_take()) > 0:
            await asyncio.sleep(pause)

    def release(self, *, throttled_for: float | None = None) -> None:
        """Give the slot back; ``throttled_for`` (seconds) when the answer was 429/503."""
        with self.pace.lock:
            self.in_flight -= 1
            if throttled_for is None:
                self._successes += 1
                # One more slot per `limit` successes in a row: back to the maximum within a few rounds.
                if self.limit < self.maximum and self._successes >= self.limit:
                    self.limit += 1
                    self._successes = 0
                return
            self._successes = 0
            now = time.monotonic()
            # Halve once per refusal window, not once per refused request of the same burst.
            if now >= self.pace.resume_at:
                self.limit = max(1, self.limit // 2)
                self.pace.throttles += 1
            self.pace.resume_at = max(self.pace.resume_at, now + throttled_for)


class Pace:
    """The shared throttle of one batch and its lanes."""

    def __init__(self, *, uploads: int, polls: int, deadline: float | None = None) -> None:
        """:param deadline: ``time.monotonic()`` value after which no request of the batch starts."""
        self.deadline = deadline
        self.lock = threading.Lock()
        self.resume_at = 0.0
        #: How many times Slipstream's refusals slowed the batch down (for the progress log).
        self.throttles = 0
        self.uploads = Lane(self, uploads)
        self.polls = Lane(self, polls)

    def cap(self, delay: float) -> float:
        """A wait before a retry, cut at the deadline (where the next attempt's slot then ends the request)."""
        return delay if self.deadline is None else max(0.0, min(delay, self.deadline - time.monotonic()))
