"""Unit tests of the shared retry policy in ``airflow_provider_slipstream.retry``."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from airflow_provider_slipstream.retry import (
    RETRYABLE_STATUS,
    SUBMIT_RETRYABLE_STATUS,
    RetryPolicy,
    parse_retry_after,
)

NOW_DT = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
NOW = NOW_DT.timestamp()


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


class TestParseRetryAfter:
    @pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 7 ", 7.0)])
    def test_seconds(self, value: str, expected: float) -> None:
        assert parse_retry_after(value, now=NOW) == expected

    def test_http_date_in_the_future(self) -> None:
        value = http_date(NOW_DT + timedelta(seconds=90))
        assert value == "Sun, 01 Jun 2025 12:01:30 GMT"
        assert parse_retry_after(value, now=NOW) == pytest.approx(90.0)

    def test_http_date_with_numeric_utc_offset(self) -> None:
        assert parse_retry_after("Sun, 01 Jun 2025 14:00:45 +0200", now=NOW) == pytest.approx(45.0)

    def test_http_date_in_the_past_is_zero(self) -> None:
        assert parse_retry_after(http_date(NOW_DT - timedelta(hours=1)), now=NOW) == 0.0
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=NOW) == 0.0

    def test_http_date_without_timezone_is_ignored(self) -> None:
        assert parse_retry_after("Sun, 01 Jun 2025 12:01:30 -0000", now=NOW) is None

    @pytest.mark.parametrize(
        "value",
        [
            "soon",
            "-5",
            "1.5",
            "10 seconds",
            "Sun, 32 Jun 2025 12:01:30 GMT",
            "Sun, 01 Jun 2025 25:61:30 GMT",
            "\u00b2",  # SUPERSCRIPT TWO (latin-1 byte 0xB2): str.isdigit() is True, float() refuses it
            "\u00b9\u00b2",
        ],
    )
    def test_garbage_is_none(self, value: str) -> None:
        assert parse_retry_after(value, now=NOW) is None

    @pytest.mark.parametrize("value", [None, "", "   "])
    def test_absent_is_none(self, value: str | None) -> None:
        assert parse_retry_after(value, now=NOW) is None


class TestRetryPolicyDelay:
    def test_defaults(self) -> None:
        policy = RetryPolicy()
        assert (policy.max_retries, policy.backoff_base, policy.backoff_max, policy.retry_after_max) == (
            5,
            1.0,
            30.0,
            300.0,
        )

    @pytest.mark.parametrize("attempt", [1, 3, 50])
    def test_retry_after_seconds_replace_the_backoff(self, attempt: int) -> None:
        assert RetryPolicy().delay(attempt, "7") == 7.0
        assert RetryPolicy().delay(attempt, "0") == 0.0

    def test_retry_after_is_capped(self) -> None:
        assert RetryPolicy().delay(1, "86400") == 300.0
        assert RetryPolicy(retry_after_max=10.0).delay(1, "60") == 10.0

    def test_retry_after_date_far_in_the_future_is_capped(self) -> None:
        assert RetryPolicy().delay(1, "Fri, 01 Jan 2100 00:00:00 GMT") == 300.0

    def test_retry_after_date_in_the_past_means_now(self) -> None:
        assert RetryPolicy().delay(4, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0

    @pytest.mark.parametrize("retry_after", [None, "", "garbage"])
    @pytest.mark.parametrize(
        ("base", "maximum"),
        [(1.0, 30.0), (0.5, 4.0), (2.0, 1000.0)],
    )
    def test_jittered_backoff_stays_within_bounds(self, base: float, maximum: float, retry_after: str | None) -> None:
        random.seed(12345)
        policy = RetryPolicy(backoff_base=base, backoff_max=maximum)
        for attempt in range(1, 13):
            ceiling = min(maximum, base * 2 ** (attempt - 1))
            samples = [policy.delay(attempt, retry_after) for _ in range(200)]
            assert all(ceiling / 2 <= s <= ceiling for s in samples), (attempt, min(samples), max(samples))
            # Jitter: the samples spread over most of the window instead of sitting on one value.
            assert max(samples) - min(samples) > 0.8 * (ceiling / 2)

    def test_first_attempts_double(self) -> None:
        random.seed(7)
        policy = RetryPolicy(backoff_base=1.0, backoff_max=30.0)
        assert 0.5 <= policy.delay(1) <= 1.0
        assert 1.0 <= policy.delay(2) <= 2.0
        assert 2.0 <= policy.delay(3) <= 4.0
        assert 15.0 <= policy.delay(6) <= 30.0

    @pytest.mark.parametrize("attempt", [20, 64, 200, 1_100, 10_000])
    def test_large_attempts_never_exceed_backoff_max(self, attempt: int) -> None:
        # max_retries comes from the connection extra with no upper bound.
        random.seed(99)
        policy = RetryPolicy(max_retries=attempt, backoff_base=1.0, backoff_max=30.0)
        samples = [policy.delay(attempt) for _ in range(50)]
        assert all(15.0 <= s <= 30.0 for s in samples)


class TestRetryableStatus:
    def test_sets(self) -> None:
        assert frozenset({429, 500, 502, 503, 504}) == RETRYABLE_STATUS
        assert frozenset({429, 503}) == SUBMIT_RETRYABLE_STATUS
        assert SUBMIT_RETRYABLE_STATUS <= RETRYABLE_STATUS
        assert not {400, 401, 403, 404} & RETRYABLE_STATUS
