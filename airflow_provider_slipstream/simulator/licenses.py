"""License quota and records of POST /api/v1/licenses/generate.

The docs give the success body only; the refusal (429, `quota_exceeded`, `Retry-After` to the
window's reset) and the UTC day/month windows are the simulator's chosen reading. Not
thread-safe by itself: SimulatorState calls it under its lock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any


def iso_z(moment: dt.datetime, timespec: str = "auto") -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


def next_day(now: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


def next_month(now: dt.datetime) -> dt.datetime:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)


class QuotaExceeded(Exception):
    """A refused call: the 429 body and the whole seconds until the window resets."""

    def __init__(self, body: dict[str, Any], retry_after: int) -> None:
        super().__init__(body["error"]["message"])
        self.body, self.retry_after = body, retry_after


@dataclasses.dataclass
class License:
    license_id: str
    track_id: str
    track_name: str
    artist_name: str
    user_id: str
    project_name: str | None
    created_at: dt.datetime

    def body(self) -> dict[str, Any]:
        return {
            "license_id": self.license_id,
            # Documented as holding only the id today (the full URL is promised for later).
            "license_url": self.license_id,
            "track_id": self.track_id,
            "track_name": self.track_name,
            "artist_name": self.artist_name,
            "user_id": self.user_id,
            "created_at": iso_z(self.created_at, "milliseconds"),
            "expires_at": None,
        }


@dataclasses.dataclass
class Quota:
    """Per-partner counters and caps; the counters restart with each UTC day and month."""

    daily_limit: int = 1000
    monthly_limit: int = 30000
    daily_used: int = 0
    monthly_used: int = 0
    day: dt.date = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).date())

    def usage(self) -> dict[str, int]:
        return {
            "daily_used": self.daily_used,
            "monthly_used": self.monthly_used,
            "daily_limit": self.daily_limit,
            "monthly_limit": self.monthly_limit,
        }

    def clear(self, now: dt.datetime) -> None:
        self.daily_used = self.monthly_used = 0
        self.day = now.date()

    def roll(self, now: dt.datetime) -> None:
        """Restart the counters whose window ended before `now`."""
        today = now.date()
        if today != self.day:
            if (today.year, today.month) != (self.day.year, self.day.month):
                self.monthly_used = 0
            self.daily_used, self.day = 0, today

    def spend(self, now: dt.datetime) -> dict[str, int]:
        """Count one license and return the usage, or raise QuotaExceeded (then nothing is spent)."""
        self.roll(now)
        # The monthly cap first: while it holds, the daily reset would not unblock anything.
        if self.monthly_used >= self.monthly_limit:
            self._refuse(now, "Monthly", self.monthly_limit, next_month(now))
        if self.daily_used >= self.daily_limit:
            self._refuse(now, "Daily", self.daily_limit, next_day(now))
        self.daily_used += 1
        self.monthly_used += 1
        return self.usage()

    def _refuse(self, now: dt.datetime, window: str, limit: int, resets_at: dt.datetime) -> None:
        body = {
            "success": False,
            "error": {
                "code": "quota_exceeded",
                "message": f"{window} license limit of {limit} reached.",
                "resets_at": iso_z(resets_at),
            },
            "usage": self.usage(),
        }
        raise QuotaExceeded(body, max(1, math.ceil((resets_at - now).total_seconds())))
