"""
``[core] hostname_callable`` for the Celery e2e test's workers.

Both workers run on this one machine, so the default (the machine's FQDN) would give every
task instance the same ``hostname``. Each worker's environment names it instead, and the task
instances it runs record that name, which is how the test sees that both workers took tasks.
"""

from __future__ import annotations

import os

ENV = "SLIPSTREAM_E2E_WORKER_NAME"


def hostname() -> str:
    return os.environ[ENV]
