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


#: The catalog track of the internal sample clip's match.
CATALOG_TRACK_ID = "11111111-1111-1111-1111-111111111111"


def expected_catalog() -> dict[str, Any]:
    """The ``catalog`` entry an enriched internal match gains, from the simulator's catalog."""
    from airflow_provider_slipstream.simulator.catalog import CATALOG

    track = CATALOG[CATALOG_TRACK_ID]
    return {
        "id": CATALOG_TRACK_ID,
        "name": "Golden Hour",
        "artist": "The Coast",
        "short_url": track["short_url"],
        "library_name": "Slipstream Originals",
        "isrc": None,  # the Tracks API documents none
        "writers": [{**w, "share": float(w["share"])} for w in track["writers"]],
        "publishers": [{**p, "share": float(p["share"])} for p in track["publishers"]],
    }


def expected_license(created: Any, user_id: str, *, daily_used: int, monthly_used: int) -> dict[str, Any]:
    """The license dict of design.md for a license the simulator created (``created``: its record)."""
    return {
        "license_id": created.license_id,
        "license_url": f"https://license.slipstreammusic.com/v/{created.license_id}",
        "track_id": CATALOG_TRACK_ID,
        "track_name": "Golden Hour",
        "artist_name": "The Coast",
        "user_id": user_id,
        "created_at": created.body()["created_at"],
        "expires_at": None,
        "usage": {"daily_used": daily_used, "monthly_used": monthly_used, "daily_limit": 1000, "monthly_limit": 30000},
    }
