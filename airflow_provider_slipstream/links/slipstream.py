"""Operator extra links: the public pages of a matched catalog track and of a generated license."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class _StoredLink(BaseOperatorLink):
    """
    A URL the task stores in its own XCom while it runs.

    XComs belong to one try (a new try starts without them), so the link shows the URL of the try
    that produced it; a retry that reuses a license or a job stores it again.
    """

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""

    def persist(self, context: Context, url: str | None) -> None:
        if url:
            context["ti"].xcom_push(key=self.xcom_key, value=url)


class SlipstreamTrackLink(_StoredLink):
    """The catalog track's public page (``short_url``), for an internal match with ``enrich_catalog=True``."""

    name = "Slipstream track"

    @property
    def xcom_key(self) -> str:
        return "slipstream_track_url"


class SlipstreamLicenseLink(_StoredLink):
    """The license's public proof page, the URL that resolves a Content ID claim."""

    name = "Slipstream license"

    @property
    def xcom_key(self) -> str:
        return "slipstream_license_url"
