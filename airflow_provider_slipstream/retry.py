"""
The retry policy shared by the sync hook and the async trigger.

429 and 5xx answers, timeouts and dropped connections are retried with bounded exponential
backoff and full jitter; a ``Retry-After`` header (seconds or an HTTP date) replaces the
backoff. 400/401/403/404 are never retried: no second try can change them.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
#: A submit POST has no idempotency key: only answers that say "not processed" allow a re-send.
SUBMIT_RETRYABLE_STATUS = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to retry one request."""

    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    #: Upper bound on a server-requested wait, so a wild Retry-After cannot park a task for hours.
    retry_after_max: float = 300.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        requested = parse_retry_after(retry_after)
        if requested is not None:
            return min(requested, self.retry_after_max)
        # The exponent is capped: 2**1024 overflows a float long before max_retries could matter.
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** min(max(attempt - 1, 0), 64))
        # Full jitter spreads the retries of many tasks hit by the same outage.
        return random.uniform(ceiling / 2, ceiling)


#: One attempt, no retry: for callers that are a retry loop themselves (a sensor's pokes).
NO_RETRY = RetryPolicy(max_retries=0)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked for by a Retry-After header, or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit alone accepts "²", which float() refuses
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
