"""Recognition outcomes of the simulator, chosen deterministically by the video."""

from __future__ import annotations

from typing import Any

# The four documented outcomes, keyed by scenario name. The tracks mirror the examples of
# the public API reference so that the simulator answers exactly what the docs show.
SCENARIOS: dict[str, dict[str, Any] | None] = {
    "internal": {
        "id": "11111111-1111-1111-1111-111111111111",
        "title": "Golden Hour",
        "artist": "The Coast",
        "internal": True,
        "isrc": "USRC12345678",
        "score": 96.5,
        "external_label": None,
    },
    "competitor": {
        "id": None,
        "title": "Some Stock Track",
        "artist": "A Stock Artist",
        "internal": False,
        "isrc": "SE5Q52400123",
        "score": 100.0,
        "external_label": "Epidemic Sound",
    },
    "external": {
        "id": None,
        "title": "Open Road",
        "artist": "Indie Artist",
        "internal": False,
        "isrc": None,
        "score": 87.25,
        "external_label": "Independent Records",
    },
    "no_music": None,
}

# Behaviours rather than outcomes: they change how a job progresses, so they win over the
# outcome keywords when a name carries both.
STALL = "stall"
ODD_STATUS = "odd_status"

_KEYWORD_ORDER = (STALL, ODD_STATUS, "internal", "competitor", "external", "no_music")
_HASH_ORDER = ("internal", "competitor", "external", "no_music")


def choose_scenario(filename: str, sha256_hex: str) -> str:
    """Name the scenario for a video: a keyword in its file name, else its content hash."""
    lowered = filename.lower()
    for keyword in _KEYWORD_ORDER:
        if keyword in lowered:
            return keyword
    return _HASH_ORDER[int(sha256_hex, 16) % len(_HASH_ORDER)]


def track_for(scenario: str) -> dict[str, Any] | None:
    """A fresh copy of the track a completed job of this scenario reports."""
    # odd_status and stall complete (if ever) as a catalog match.
    track = SCENARIOS.get(scenario, SCENARIOS["internal"])
    return dict(track) if track is not None else None
