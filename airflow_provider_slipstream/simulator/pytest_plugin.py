"""pytest fixtures for the simulator.

Installing the provider registers this module as a pytest plugin (``pytest11`` entry point),
so the fixtures are simply there. Where that entry point is not installed, enable it with
``pytest_plugins = ["airflow_provider_slipstream.simulator.pytest_plugin"]`` in the
top-level conftest.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_slipstream.simulator.server import SimulatorServer
from airflow_provider_slipstream.simulator.state import SimulatorState

if TYPE_CHECKING:
    from collections.abc import Iterator

FAST_QUEUED_SECONDS = 0.2
FAST_PROCESSING_SECONDS = 0.5


@pytest.fixture
def slipstream_simulator() -> Iterator[SimulatorServer]:
    """A fresh simulator per test, with fast job timings (0.2 s queued, 0.5 s processing)."""
    state = SimulatorState(queued_seconds=FAST_QUEUED_SECONDS, processing_seconds=FAST_PROCESSING_SECONDS)
    with SimulatorServer(state) as server:
        yield server
