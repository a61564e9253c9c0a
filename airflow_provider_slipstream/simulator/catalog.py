"""The simulator's Slipstream catalog: what GET /api/v4/{language}/tracks/{id}/ returns.

Every field the public "Retrieve a track" page documents, with its example's shapes. The
"internal" AudioVerify scenario matches the first track, so a recognition leads to a real
catalog entry and a license for it. No `isrc`: this endpoint does not document one.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

GOLDEN_HOUR_ID = "11111111-1111-1111-1111-111111111111"
TONIGHT_WE_DANCE_ID = "e9463c97-8ca9-4eae-8b7f-e92e8d4ee08b"
CDN = "https://cdn.slipstreammusic.com/albums"


def _album(album_id: str, slug: str, name: str, blurhash: str) -> dict[str, Any]:
    sizes = {size: f"{CDN}/{slug}/{size}.jpg" for size in ("150x150", "300x300", "600x600", "1200x1200")}
    return {
        "id": album_id,
        "url": f"/albums/{slug}/",
        "name": name,
        "slug": slug,
        "all_image_sizes": sizes,
        "blurhash": blurhash,
    }


CATALOG: dict[str, dict[str, Any]] = {
    GOLDEN_HOUR_ID: {
        "id": GOLDEN_HOUR_ID,
        "name": "Golden Hour",
        "description": "Warm, sunlit guitars over a relaxed groove.",
        "length": 142,
        "tempo": 92,
        "key": "G major",
        "is_explicit": False,
        "is_free": False,
        "vocals": False,
        "audio_url": "/media/tracks/gldnhr/golden-hour.mp3",
        "short_id": "gldnhr",
        "short_url": "https://slipstreammusic.com/t/gldnhr",
        "genre_name": "Pop",
        "subgenre_name": "Indie Pop",
        "mood_name": "Happy",
        "secondary_mood_name": "Relaxed",
        "artist": {"name": "The Coast", "slug": "the-coast"},
        "album": _album(
            "2c9d4e1f-7a3b-4c5d-9e8f-1a2b3c4d5e6f", "sunset-drive", "Sunset Drive", "LKO2?U%2Tw=w]~RBVZRi};RPxuwH"
        ),
        "is_sfx": False,
        "has_stems": True,
        "cover": f"{CDN}/sunset-drive/600x600.jpg",
        "library_name": "Slipstream Originals",
        "lyrics": "",
        "jp_title": "ゴールデンアワー",
        "writers": [
            {"name": "Maya Lindqvist", "share": 50.0, "pro": "ASCAP", "ipi": "00052210040"},
            {"name": "Daniel Okafor", "share": 50.0, "pro": "BMI", "ipi": "00698745210"},
        ],
        "publishers": [{"name": "Slipstream Publishing", "share": 100.0, "pro": "ASCAP", "ipi": "00811234567"}],
    },
    TONIGHT_WE_DANCE_ID: {
        "id": TONIGHT_WE_DANCE_ID,
        "name": "Tonight We Dance",
        "description": "An upbeat dance-pop anthem with a big chorus.",
        "length": 87,
        "tempo": 106,
        "key": "C major",
        "is_explicit": False,
        "is_free": True,
        "vocals": True,
        "audio_url": "/media/tracks/tnwdnc/tonight-we-dance.mp3",
        "short_id": "tnwdnc",
        "short_url": "https://slipstreammusic.com/t/tnwdnc",
        "genre_name": "Electronic",
        "subgenre_name": "Dance Pop",
        "mood_name": "Energetic",
        "secondary_mood_name": None,
        "artist": {"name": "Neon Avenue", "slug": "neon-avenue"},
        "album": _album(
            "5b7e2d9a-3c1f-4e6b-8a0d-9f2e4c6b8a1d", "night-lights", "Night Lights", "L6PZfSi_.AyE_3t7t7R**0o#DgR4"
        ),
        "is_sfx": False,
        "has_stems": False,
        "cover": f"{CDN}/night-lights/600x600.jpg",
        "library_name": "Slipstream Originals",
        "lyrics": "Tonight we dance until the city lights go down",
        "jp_title": "",
        "writers": [{"name": "Lena Park", "share": 100.0, "pro": "BMI", "ipi": "00412398765"}],
        "publishers": [{"name": "Slipstream Publishing", "share": 100.0, "pro": "ASCAP", "ipi": "00811234567"}],
    },
}


def canonical_id(track_id: str) -> str | None:
    """The catalog key of a UUID in any form `uuid.UUID` reads, or None if it is not one."""
    try:
        return str(uuid.UUID(track_id))
    except ValueError:
        return None


def find_track(track_id: str) -> dict[str, Any] | None:
    """A copy of the catalog entry (callers may change it), or None for an unknown or non-UUID id."""
    track = CATALOG.get(canonical_id(track_id) or "")
    return copy.deepcopy(track) if track is not None else None
