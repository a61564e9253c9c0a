"""
Shared fixtures. The ``slipstream_simulator`` fixture comes from the provider's own pytest
plugin (registered through the ``pytest11`` entry point when the package is installed).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook

# A batch's trigger polls first twice this after its deferral (the executor's report delay): 2 s, not
# 10 s with the default 5, for the tests that run triggers in line (no executor there to race).
os.environ.setdefault("AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL", "1")

# The DAG-run helpers live with the demo, so tests and demo drive Airflow the same way.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

#: Fast retries keep fault tests short; the policy itself is the production one.
FAST_RETRY_EXTRA = {
    "retry_backoff": 0.05,
    "retry_backoff_max": 0.2,
    "max_retries": 3,
    "timeout": 5,
    "connect_timeout": 2,
}


@pytest.fixture
def sim_conn(slipstream_simulator, monkeypatch):
    """The simulator, with ``slipstream_default`` pointing at it (JSON env-var form)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLIPSTREAM_DEFAULT",
        json.dumps(
            {
                "conn_type": "slipstream",
                "host": slipstream_simulator.url,
                "password": slipstream_simulator.state.api_key,
                "extra": FAST_RETRY_EXTRA,
            }
        ),
    )
    return slipstream_simulator


@pytest.fixture
def hook(sim_conn) -> SlipstreamHook:
    return SlipstreamHook()


@pytest.fixture
def closed_port() -> int:
    """A loopback port where nothing listens (bound once to get a free number, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
