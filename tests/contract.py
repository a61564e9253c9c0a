"""The result contract of design.md, written out literally: what every waiting path must return."""

from __future__ import annotations

from typing import Any

#: The track of each sample clip's scenario, as the API docs show it (``None``: no music).
EXPECTED_TRACKS: dict[str, dict[str, Any] | None] = {
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
    "no_match": None,
}


def expected_result(job_id: str, match: str) -> dict[str, Any]:
    """The XCom result dict of a completed job."""
    return {"job_id": job_id, "status": "completed", "match": match, "track": EXPECTED_TRACKS[match]}
