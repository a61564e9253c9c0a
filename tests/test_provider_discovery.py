"""
Airflow finds the provider the way it finds any other: through the ``apache_airflow_provider``
entry point, with valid metadata, and shows our connection form (labels, hidden fields, extras).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import airflow
import jsonschema
import pytest
from airflow.providers.common.compat.sdk import Connection

import airflow_provider_slipstream
from airflow_provider_slipstream.get_provider_info import get_provider_info

AIRFLOW = Path(sys.executable).with_name("airflow")
PACKAGE = "airflow-provider-slipstream"
HOOK_CLASS = "airflow_provider_slipstream.hooks.slipstream.SlipstreamHook"
AIRFLOW_DIR = Path(airflow.__file__).parent
EXTRAS = {
    "timeout": ("Read timeout (seconds)", ["number", "null"]),
    "connect_timeout": ("Connect timeout (seconds)", ["number", "null"]),
    "max_retries": ("Retries per request (429, 5xx, network errors)", ["integer", "null"]),
    "retry_backoff": ("First retry delay (seconds, doubles each retry)", ["number", "null"]),
    "retry_backoff_max": ("Longest retry delay (seconds)", ["number", "null"]),
    "competitor_labels": ("Competitor labels (comma-separated; empty = the built-in list)", ["string", "null"]),
    "allow_insecure_http": (
        "Allow plain http to a non-loopback host (sends the key unencrypted)",
        ["boolean", "null"],
    ),
}


def airflow_cli(tmp_path: Path, *args: str) -> Any:
    """Run the real `airflow` CLI with a fresh AIRFLOW_HOME and return its JSON output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow_home")
    # Airflow 3.0 logs INFO lines (plugin set-up) to stdout, ahead of the JSON.
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    result = subprocess.run(
        [str(AIRFLOW), *args, "--output", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_cli_providers_list_shows_the_provider(tmp_path: Path) -> None:
    providers = airflow_cli(tmp_path, "providers", "list")

    ours = [p for p in providers if p["package_name"] == PACKAGE]
    assert len(ours) == 1, [p["package_name"] for p in providers]
    assert ours[0]["version"] == airflow_provider_slipstream.__version__
    assert "Slipstream AudioVerify" in ours[0]["description"]


def test_cli_providers_hooks_shows_the_connection_type(tmp_path: Path) -> None:
    hooks = airflow_cli(tmp_path, "providers", "hooks")

    ours = [h for h in hooks if h["connection_type"] == "slipstream"]
    assert ours == [
        {
            "connection_type": "slipstream",
            "class": HOOK_CLASS,
            "conn_id_attribute_name": "slipstream_conn_id",
            "package_name": PACKAGE,
            "hook_name": "Slipstream AudioVerify",
        }
    ]


def test_entry_point_resolves_to_get_provider_info() -> None:
    (ep,) = [ep for ep in entry_points(group="apache_airflow_provider") if ep.dist and ep.dist.name == PACKAGE]
    assert ep.value == "airflow_provider_slipstream.get_provider_info:get_provider_info"
    assert ep.load()() == get_provider_info()


def test_provider_info_validates_against_airflows_schemas() -> None:
    info = get_provider_info()
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    # provider_info.schema.json leaves connection-type entries open; the provider.yaml schema
    # shipped beside it describes ui-field-behaviour and conn-fields strictly.
    yaml_schema = json.loads((AIRFLOW_DIR / "provider.yaml.schema.json").read_text())
    jsonschema.validate(info["connection-types"], yaml_schema["properties"]["connection-types"])
    assert info["package-name"] == PACKAGE
    assert info["versions"][0] == airflow_provider_slipstream.__version__
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == "slipstream"
    assert conn_type["hook-class-name"] == HOOK_CLASS
    assert set(conn_type["conn-fields"]) == set(EXTRAS)


def test_hook_ui_field_behaviour_validates_and_matches_the_metadata() -> None:
    from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook

    schema = json.loads((AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text())
    behaviour = SlipstreamHook.get_ui_field_behaviour()
    jsonschema.validate(behaviour, schema)
    declared = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert behaviour == {
        "hidden_fields": declared["hidden-fields"],
        "relabeling": declared["relabeling"],
        "placeholders": declared["placeholders"],
    }


@pytest.fixture(scope="module")
def providers_manager() -> Any:
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_providers_manager_knows_the_hook(providers_manager: Any) -> None:
    assert PACKAGE in providers_manager.providers
    assert providers_manager.providers[PACKAGE].version == airflow_provider_slipstream.__version__
    # Airflow 3.2+ serves hook lookups (BaseHook.get_hook) from the task-sdk's runtime manager;
    # 3.0 and 3.1 from the core ProvidersManager.
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    except ImportError:
        hooks = providers_manager.hooks
    else:
        hooks = ProvidersManagerTaskRuntime().hooks
    hook = hooks["slipstream"]
    assert hook.hook_class_name == HOOK_CLASS
    assert hook.connection_id_attribute_name == "slipstream_conn_id"
    assert hook.hook_name == "Slipstream AudioVerify"
    assert hook.package_name == PACKAGE
    assert hook.connection_testable is True


@pytest.fixture(scope="module")
def form_metadata(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the UI's connection form endpoint answers for `slipstream` (Airflow 3's HookMetaService).

    3.2+ builds it from get_provider_info's ``ui-field-behaviour`` and ``conn-fields``; 3.0 and 3.1
    from the hook's ``get_ui_field_behaviour`` and ``get_connection_form_widgets``. In a fresh
    process, as in the API server: the service must be the first to load the providers.
    """
    script = (
        "from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService\n"
        "(meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == 'slipstream']\n"
        "print('FORM=' + meta.model_dump_json())"
    )
    home = tmp_path_factory.mktemp("form")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")} | {"AIRFLOW_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("FORM=")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("FORM="))


def test_connection_form_standard_fields(form_metadata: dict[str, Any]) -> None:
    assert form_metadata["hook_class_name"] == HOOK_CLASS
    assert form_metadata["hook_name"] == "Slipstream AudioVerify"
    fields = form_metadata["standard_fields"]
    assert fields["password"]["title"] == "Partner API key"
    assert fields["password"]["hidden"] is False
    assert fields["password"]["placeholder"] == "Your Slipstream partner API key"
    assert fields["host"]["title"] == "Base URL"
    assert fields["host"]["hidden"] is False
    assert fields["host"]["placeholder"].startswith("https://api.slipstreammusic.com")
    for hidden in ("login", "port", "url_schema"):
        assert fields[hidden]["hidden"] is True, hidden


def test_connection_form_extra_fields(form_metadata: dict[str, Any]) -> None:
    extras = form_metadata["extra_fields"]
    assert set(extras) == set(EXTRAS)
    for name, (label, types) in EXTRAS.items():
        assert extras[name]["schema"]["title"] == label
        assert extras[name]["schema"]["type"] == _form_type(types)
    assert extras["timeout"]["value"] == _form_value(30)
    assert extras["max_retries"]["value"] == 5
    assert extras["allow_insecure_http"]["value"] is False


def test_connection_form_values_are_read_back(form_metadata: dict[str, Any]) -> None:
    """Whatever type the form stores a field's value in, the connection reads it."""
    from airflow_provider_slipstream.connection import ClientConfig

    extra = {name: field["value"] for name, field in form_metadata["extra_fields"].items()}
    config = ClientConfig.from_connection(
        Connection(conn_id="form", conn_type="slipstream", password="k", extra=json.dumps(extra))
    )
    assert (config.read_timeout, config.connect_timeout, config.retry.max_retries) == (30, 10, 5)
    assert config.competitor_labels is None


#: Airflow 3.2 reads conn-fields' JSON schema types; the widgets of 3.0 and 3.1 have no number field,
#: so numbers are strings there (the connection parses them).
DECLARATIVE_FORM = tuple(int(p) for p in airflow.__version__.split(".")[:2]) >= (3, 2)


def _form_type(types: list[str]) -> list[str]:
    return types if DECLARATIVE_FORM or types[0] != "number" else ["string", "null"]


def _form_value(number: float) -> Any:
    return number if DECLARATIVE_FORM else str(number)


def test_providers_manager_registers_the_extra_links(providers_manager: Any) -> None:
    from airflow_provider_slipstream.links.slipstream import SlipstreamLicenseLink, SlipstreamTrackLink

    names = set(providers_manager.extra_links_class_names)
    for link in (SlipstreamTrackLink, SlipstreamLicenseLink):
        assert f"{link.__module__}.{link.__name__}" in names
    assert {SlipstreamTrackLink().name, SlipstreamLicenseLink().name} == {"Slipstream track", "Slipstream license"}
