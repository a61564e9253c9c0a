"""Stand-ins shared by the tests that call operator, sensor and hook methods directly."""

from __future__ import annotations

from typing import Any


class LogRecorder:
    """Stands in for ``self.log`` (Airflow's structlog logger, which pytest's caplog does not see)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def _record(self, level: str, msg: str, *args: Any) -> None:
        self.records.append((level, msg % args if args else msg))

    def debug(self, msg: str, *args: Any, **_kwargs: Any) -> None:
        self._record("debug", msg, *args)

    def info(self, msg: str, *args: Any, **_kwargs: Any) -> None:
        self._record("info", msg, *args)

    def warning(self, msg: str, *args: Any, **_kwargs: Any) -> None:
        self._record("warning", msg, *args)

    def error(self, msg: str, *args: Any, **_kwargs: Any) -> None:
        self._record("error", msg, *args)

    def exception(self, msg: str, *args: Any, **_kwargs: Any) -> None:
        self._record("exception", msg, *args)

    def warnings(self, phrase: str) -> list[str]:
        return [msg for level, msg in self.records if level == "warning" and phrase in msg]
