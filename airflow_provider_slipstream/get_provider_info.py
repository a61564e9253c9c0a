"""Provider metadata: the single source Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_slipstream import __version__

_INTEGRATION = "Slipstream AudioVerify"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-slipstream",
        "name": "Slipstream",
        "description": "Submit videos to `Slipstream AudioVerify <https://api.slipstreammusic.com>`__, "
        "wait for music recognition without holding workers, and branch on the match.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://api.slipstreammusic.com",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_slipstream.hooks.slipstream"]}
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_slipstream.operators.slipstream"],
            }
        ],
        "sensors": [
            {"integration-name": _INTEGRATION, "python-modules": ["airflow_provider_slipstream.sensors.slipstream"]}
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_slipstream.triggers.slipstream"],
            }
        ],
        "extra-links": [
            "airflow_provider_slipstream.links.slipstream.SlipstreamTrackLink",
            "airflow_provider_slipstream.links.slipstream.SlipstreamLicenseLink",
        ],
        "connection-types": [
            {
                "connection-type": "slipstream",
                "hook-class-name": "airflow_provider_slipstream.hooks.slipstream.SlipstreamHook",
                "hook-name": "Slipstream AudioVerify",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "Base URL", "password": "Partner API key"},
                    "placeholders": {
                        "host": "https://api.slipstreammusic.com (leave empty for the default)",
                        "password": "Your Slipstream partner API key",
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Read timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                    "max_retries": {
                        "label": "Retries per request (429, 5xx, network errors)",
                        "schema": {"type": ["integer", "null"], "default": 5},
                    },
                    "retry_backoff": {
                        "label": "First retry delay (seconds, doubles each retry)",
                        "schema": {"type": ["number", "null"], "default": 1.0},
                    },
                    "retry_backoff_max": {
                        "label": "Longest retry delay (seconds)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "competitor_labels": {
                        "label": "Competitor labels (comma-separated; empty = the built-in list)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "allow_insecure_http": {
                        "label": "Allow plain http to a non-loopback host (sends the key unencrypted)",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                },
            }
        ],
    }


def connection_type_info() -> dict[str, Any]:
    """The ``slipstream`` connection type's entry: the connection form's one source."""
    info: dict[str, Any] = get_provider_info()["connection-types"][0]
    return info
