"""The response check a user would write for ``HttpEventTrigger`` (``response_check_path``) to wait for a job."""

from __future__ import annotations

from typing import Any


async def response_is_completed(response: Any) -> bool:
    """Passes once the Slipstream job reports ``completed``."""
    return response.json()["status"] == "completed"
