"""The sample clips bundled for the demo and for users' own tests against the simulator."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_SAMPLES = {
    "internal": "internal_golden_hour.mp4",
    "competitor": "competitor_stock_track.mov",
    "external": "external_indie_track.mp4",
    "no_match": "no_music_interview.avi",
}


def sample_videos() -> dict[str, Path]:
    """One tiny clip per match kind; the simulator picks the outcome from the file name."""
    folder = Path(str(files("airflow_provider_slipstream") / "sample_videos"))
    return {kind: folder / name for kind, name in _SAMPLES.items()}
