"""
The ``slipstream`` connection, read from ``AIRFLOW_CONN_SLIPSTREAM_DEFAULT`` in JSON and URI form
into a validated ``ClientConfig``; a configuration that works really reaches the simulator, and
every bad one is refused before any request.

One simulator serves the whole module (its state is reset before each test): these tests count
requests, they do not depend on a job's history.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from airflow.providers.common.compat.sdk import Connection, redact

from airflow_provider_slipstream.connection import ClientConfig
from airflow_provider_slipstream.exceptions import SlipstreamJobNotFoundError, SlipstreamValidationError
from airflow_provider_slipstream.hooks.slipstream import SlipstreamHook
from airflow_provider_slipstream.samples import sample_videos
from airflow_provider_slipstream.simulator import Fault, SimulatorServer, SimulatorState

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "conn-test-partner-key"
UNKNOWN_JOB = "7b2c1e8a-0f4d-4a2b-9c11-7f5a2d9e3c10"
DEFAULT_BASE_URL = "https://api.slipstreammusic.com"
FAST = {"retry_backoff": 0.01, "retry_backoff_max": 0.02}


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(SimulatorState(api_key=KEY, queued_seconds=0, processing_seconds=0)) as sim:
        yield sim


@pytest.fixture
def sim(server: SimulatorServer) -> SimulatorServer:
    server.state.reset()
    server.state.set_api_key(KEY)
    return server


@pytest.fixture
def port(sim: SimulatorServer) -> int:
    return int(sim.url.rsplit(":", 1)[1])


def use_conn(monkeypatch: pytest.MonkeyPatch, conn: str | dict[str, Any]) -> SlipstreamHook:
    value = conn if isinstance(conn, str) else json.dumps({"conn_type": "slipstream", **conn})
    monkeypatch.setenv("AIRFLOW_CONN_SLIPSTREAM_DEFAULT", value)
    return SlipstreamHook()


def assert_key_accepted(hook: SlipstreamHook, sim: SimulatorServer) -> None:
    """One authenticated read of an unknown job: 404 (not 401/403) proves URL and key are right."""
    with pytest.raises(SlipstreamJobNotFoundError):
        hook.get_job(UNKNOWN_JOB)
    (request,) = sim.state.requests
    assert (request.method, request.path, request.status) == ("GET", f"/api/v4/video-recognition/{UNKNOWN_JOB}/", 404)
    assert request.headers["authorization"] == "Bearer [redacted]"


def assert_refused_before_any_request(hook: SlipstreamHook, sim: SimulatorServer, *fragments: str) -> str:
    with pytest.raises(SlipstreamValidationError) as exc_info:
        hook.get_job(UNKNOWN_JOB)
    message = str(exc_info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert KEY not in message
    assert sim.state.count() == 0
    return message


# -- forms that work, and reach the simulator --------------------------------------------


def test_json_form(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use_conn(monkeypatch, {"host": sim.url, "password": KEY})

    assert hook.config.base_url == sim.url
    assert hook.config.api_key == KEY
    assert_key_accepted(hook, sim)


def test_json_form_with_the_port_field(sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use_conn(monkeypatch, {"host": "http://127.0.0.1", "port": port, "password": KEY})

    assert hook.config.base_url == f"http://127.0.0.1:{port}"
    assert_key_accepted(hook, sim)


def test_uri_form_with_an_http_base_url(sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use_conn(monkeypatch, f"slipstream://http://:{KEY}@127.0.0.1:{port}")

    assert hook.config.base_url == sim.url
    assert hook.config.api_key == KEY
    assert_key_accepted(hook, sim)


def test_uri_form_with_a_percent_encoded_key(sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "p@ss/w:rd+1=%?#"
    sim.state.set_api_key(key)
    hook = use_conn(monkeypatch, f"slipstream://http://:{quote(key, safe='')}@127.0.0.1:{port}")

    assert hook.config.api_key == key
    assert_key_accepted(hook, sim)


@pytest.mark.parametrize(
    ("uri", "base_url"),
    [
        (f"slipstream://:{KEY}@api.example.com", "https://api.example.com"),
        (f"slipstream://:{KEY}@api.example.com:8443", "https://api.example.com:8443"),
    ],
)
def test_uri_form_without_a_scheme_means_https(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, uri: str, base_url: str
) -> None:
    hook = use_conn(monkeypatch, uri)

    assert hook.config.base_url == base_url
    assert hook.config.api_key == KEY


def test_another_conn_id(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLIPSTREAM_STAGING", json.dumps({"conn_type": "slipstream", "host": sim.url, "password": KEY})
    )
    monkeypatch.delenv("AIRFLOW_CONN_SLIPSTREAM_DEFAULT", raising=False)
    hook = SlipstreamHook(slipstream_conn_id="slipstream_staging")

    assert hook.config.base_url == sim.url
    assert_key_accepted(hook, sim)


@pytest.mark.parametrize(
    "conn",
    [
        {"password": KEY},
        {"host": "", "password": KEY},
        {"host": "   ", "password": KEY},
        f"slipstream://:{KEY}@",
    ],
    ids=["json-no-host", "json-empty-host", "json-blank-host", "uri-no-host"],
)
def test_empty_host_means_the_slipstream_api(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, conn: str | dict[str, Any]
) -> None:
    hook = use_conn(monkeypatch, conn)

    assert hook.config.base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("host", "port", "base_url"),
    [
        ("api.example.com", None, "https://api.example.com"),
        ("api.example.com/", None, "https://api.example.com"),
        ("https://api.example.com/", None, "https://api.example.com"),
        ("https://api.example.com/slipstream/", None, "https://api.example.com/slipstream"),
        ("api.example.com", 8443, "https://api.example.com:8443"),
        ("https://api.example.com", 8443, "https://api.example.com:8443"),
        ("api.example.com:8443", None, "https://api.example.com:8443"),
    ],
)
def test_host_normalisation(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, host: str, port: int | None, base_url: str
) -> None:
    hook = use_conn(monkeypatch, {"host": host, "port": port, "password": KEY})

    assert hook.config.base_url == base_url


@pytest.mark.parametrize(
    ("conn", "base_url"),
    [
        (f"slipstream://:{KEY}@gateway.example.com/slipstream", "https://gateway.example.com/slipstream"),
        (f"slipstream://:{KEY}@gateway.example.com/slip/stream/?timeout=3", "https://gateway.example.com/slip/stream"),
        (f"slipstream://https://:{KEY}@gateway.example.com/slipstream", "https://gateway.example.com/slipstream"),
        (f"slipstream://:{KEY}@gateway.example.com/a%20b", "https://gateway.example.com/a%20b"),
        (f"slipstream://:{KEY}@gateway.example.com/", "https://gateway.example.com"),
        (
            {"host": "https://gateway.example.com/slipstream/", "password": KEY},
            "https://gateway.example.com/slipstream",
        ),
        (
            {"host": "gateway.example.com", "schema": "slipstream", "password": KEY},
            "https://gateway.example.com/slipstream",
        ),
        (
            {"host": "https://gateway.example.com:8443", "schema": "/slipstream/", "password": KEY},
            "https://gateway.example.com:8443/slipstream",
        ),
    ],
    ids=[
        "uri",
        "uri-nested-with-extra",
        "uri-with-scheme",
        "uri-percent-encoded",
        "uri-bare-slash",
        "host-field",
        "json-schema",
        "json-schema-with-slashes",
    ],
)
def test_every_form_keeps_the_base_urls_path(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, conn: str | dict[str, Any], base_url: str
) -> None:
    # Airflow puts a URI's path into `schema`: it is the base URL's path, not something to drop.
    hook = use_conn(monkeypatch, conn)

    assert hook.config.base_url == base_url


def test_a_uri_path_is_used_by_real_requests(sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use_conn(monkeypatch, f"slipstream://http://:{KEY}@127.0.0.1:{port}/slipstream?max_retries=0")

    with pytest.raises(SlipstreamJobNotFoundError):
        hook.get_job(UNKNOWN_JOB)  # the simulator serves no /slipstream prefix: its routing 404

    (request,) = sim.state.requests
    assert request.path == f"/slipstream/api/v4/video-recognition/{UNKNOWN_JOB}/"


@pytest.mark.parametrize(
    "conn",
    [
        {"host": "https://gateway.example.com/slipstream", "schema": "v2", "password": KEY},
        {"host": "https://gateway.example.com/slipstream", "schema": "slipstream", "password": KEY},
        f"slipstream://https://:{KEY}@gateway.example.com%2Fslipstream/v2",
    ],
    ids=["json-different", "json-same", "uri"],
)
def test_a_path_in_both_host_and_schema_is_refused(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, conn: str | dict[str, Any]
) -> None:
    hook = use_conn(monkeypatch, conn)

    assert_refused_before_any_request(hook, sim, "'slipstream_default'", "path", "schema", "Base URL")


def test_a_path_without_a_host_is_refused(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = use_conn(monkeypatch, f"slipstream://:{KEY}@/slipstream")

    assert_refused_before_any_request(hook, sim, "'slipstream_default'", "'slipstream'", "no host", "Base URL")


@pytest.mark.parametrize("host", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_plain_http_to_loopback_is_allowed(
    sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    hook = use_conn(monkeypatch, {"host": host.format(port=port), "password": KEY})

    assert hook.config.base_url == host.format(port=port)
    assert_key_accepted(hook, sim)


@pytest.mark.parametrize("host", ["http://[::1]:8080", "http://127.0.0.2:8080", "http://LOCALHOST"])
def test_plain_http_to_other_loopback_forms_is_allowed(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    hook = use_conn(monkeypatch, {"host": host, "password": KEY})

    assert hook.config.base_url == host


@pytest.mark.parametrize(
    "host",
    ["http://api.example.com", "http://10.1.2.3:8080", "http://0.0.0.0:{port}"],
    ids=["name", "private-ip", "0.0.0.0-reaches-the-simulator"],
)
def test_plain_http_to_a_non_loopback_host_is_refused(
    sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    # 0.0.0.0 is not a loopback address, yet on Linux connecting to it reaches 127.0.0.1:
    # the zero request count below is meaningful for it.
    hook = use_conn(monkeypatch, {"host": host.format(port=port), "password": KEY})

    assert_refused_before_any_request(hook, sim, "allow_insecure_http", "unencrypted")


@pytest.mark.parametrize(
    "conn",
    [
        {"host": "http://0.0.0.0:{port}", "password": KEY, "extra": {"allow_insecure_http": True}},
        {"host": "http://0.0.0.0:{port}", "password": KEY, "extra": {"allow_insecure_http": "true"}},
        f"slipstream://http://:{KEY}@0.0.0.0:{{port}}/?allow_insecure_http=true",
    ],
    ids=["json-bool", "json-string", "uri"],
)
def test_allow_insecure_http_opts_in(
    sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch, conn: str | dict[str, Any]
) -> None:
    conn = conn.format(port=port) if isinstance(conn, str) else {**conn, "host": conn["host"].format(port=port)}
    hook = use_conn(monkeypatch, conn)

    assert hook.config.base_url == f"http://0.0.0.0:{port}"
    assert_key_accepted(hook, sim)


def test_allow_insecure_http_false_string_still_refuses(
    sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = use_conn(monkeypatch, f"slipstream://http://:{KEY}@0.0.0.0:{port}/?allow_insecure_http=false")

    assert_refused_before_any_request(hook, sim, "allow_insecure_http")


# -- refused before any request ----------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "ht!tp://x",
        "https://",
        "http://host:notaport",
        "https://api.example.com/?region=eu",
        "api.example.com?region=eu",
        "https://api.example.com/#top",
        "ftp://api.example.com",
        "https://api example.com",
    ],
)
def test_malformed_host_is_refused(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    # Fast retries: should a malformed host slip through, the test fails quickly instead of
    # waiting out the default backoff.
    hook = use_conn(monkeypatch, {"host": host, "password": KEY, "extra": FAST})

    assert_refused_before_any_request(hook, sim, "malformed host", repr(host))


@pytest.mark.parametrize(
    "conn",
    [
        {"host": "{url}"},
        {"host": "{url}", "password": ""},
        {"host": "{url}", "password": "   "},
        "slipstream://http://127.0.0.1:{port}",
    ],
    ids=["json-no-password", "json-empty", "json-blank", "uri-no-password"],
)
def test_missing_key_is_refused(
    sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch, conn: str | dict[str, Any]
) -> None:
    conn = conn.format(port=port) if isinstance(conn, str) else {**conn, "host": sim.url}
    hook = use_conn(monkeypatch, conn)

    assert_refused_before_any_request(hook, sim, "'slipstream_default'", "no partner API key", "password field")
    ok, message = hook.test_connection()
    assert ok is False
    assert "password field" in message
    assert sim.state.count() == 0


@pytest.mark.parametrize(
    "key",
    ["sk-live-AB\nCD-split", "sk-live with-space", "sk-live-caf\u00e9", "sk-live-\x00nul"],
    ids=["newline", "space", "non-ascii", "nul"],
)
def test_a_key_no_header_can_carry_is_refused_without_showing_it(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """Worker and trigger alike: refused before any request, never quoted (the masker would miss it)."""
    hook = use_conn(monkeypatch, {"host": sim.url, "password": key})

    with pytest.raises(SlipstreamValidationError, match="Paste the key again") as refused:
        hook.get_job(UNKNOWN_JOB)
    assert key not in str(refused.value)
    assert repr(key)[1:-1] not in str(refused.value)
    with pytest.raises(SlipstreamValidationError, match="Paste the key again"):
        asyncio.run(SlipstreamHook().aget_config())
    assert sim.state.count() == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", "abc"),
        ("timeout", -1),
        ("timeout", True),
        ("timeout", 0),
        ("connect_timeout", "fast"),
        ("connect_timeout", False),
        ("max_retries", -1),
        ("max_retries", "many"),
        ("max_retries", True),
        ("retry_backoff", -0.5),
        ("retry_backoff_max", "nan"),
        ("retry_backoff_max", "inf"),
        ("timeout", "1e999"),
        ("max_retries", 2.7),
        ("max_retries", "2.7"),
        ("allow_insecure_http", "yes"),
        ("allow_insecure_http", 1),
        ("competitor_labels", 5),
        ("competitor_labels", ["Epidemic Sound", 3]),
        ("competitor_labels", {"label": "Epidemic Sound"}),
    ],
)
def test_bad_extra_is_refused(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, name: str, value: Any) -> None:
    hook = use_conn(monkeypatch, {"host": sim.url, "password": KEY, "extra": {name: value}})

    assert_refused_before_any_request(hook, sim, "'slipstream_default'", f"'{name}'", repr(value))


@pytest.mark.parametrize("value", [2.7, "2.7", 0.5])
def test_a_fractional_max_retries_is_refused_not_truncated(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, value: Any
) -> None:
    hook = use_conn(monkeypatch, {"host": sim.url, "password": KEY, "extra": {"max_retries": value}})

    # Named as the connection form labels it, so the user finds the field.
    assert_refused_before_any_request(hook, sim, "'max_retries'", "Retries per request", "whole number", repr(value))


# -- extras that work --------------------------------------------------------------------


@pytest.mark.parametrize("value", [3, "3", " 3 ", 3.0, "3.0"])
def test_max_retries_accepts_a_whole_number_in_any_spelling(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, value: Any
) -> None:
    hook = use_conn(monkeypatch, {"host": sim.url, "password": KEY, "extra": {"max_retries": value}})

    assert hook.config.retry.max_retries == 3
    assert isinstance(hook.config.retry.max_retries, int)


def test_json_extras_are_applied(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"timeout": 12.5, "connect_timeout": "3", "max_retries": 1, **FAST}
    hook = use_conn(monkeypatch, {"host": sim.url, "password": KEY, "extra": extra})

    config = hook.config
    assert (config.read_timeout, config.connect_timeout) == (12.5, 3.0)
    assert (config.retry.max_retries, config.retry.backoff_base, config.retry.backoff_max) == (1, 0.01, 0.02)
    assert config.competitor_labels is None
    sim.state.add_fault(Fault("status", method="GET", status=503))
    with pytest.raises(Exception, match="503"):
        hook.get_job(UNKNOWN_JOB)
    assert sim.state.count("GET") == 2  # max_retries 1: one try plus one retry


def test_uri_extras_are_applied(sim: SimulatorServer, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # In URI form every extra is a string.
    hook = use_conn(
        monkeypatch,
        f"slipstream://http://:{KEY}@127.0.0.1:{port}/?timeout=7&max_retries=2&retry_backoff=0.01"
        "&retry_backoff_max=0.02&competitor_labels=Epidemic+Sound%2C+Artlist",
    )

    config = hook.config
    assert config.read_timeout == 7.0
    assert config.retry.max_retries == 2
    assert config.competitor_labels == ("Epidemic Sound", "Artlist")
    sim.state.add_fault(Fault("status", method="GET", status=503))
    with pytest.raises(Exception, match="503"):
        hook.get_job(UNKNOWN_JOB)
    assert sim.state.count("GET") == 3


@pytest.mark.parametrize(
    ("value", "labels"),
    [
        ([" Independent Records ", "Artlist"], ("Independent Records", "Artlist")),
        ("Independent Records, Artlist,,", ("Independent Records", "Artlist")),
        ("Independent Records", ("Independent Records",)),
        ("", None),
        (None, None),
    ],
    ids=["list", "comma-string", "one", "empty-string", "null"],
)
def test_competitor_labels_extra(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch, value: Any, labels: tuple[str, ...] | None
) -> None:
    hook = use_conn(monkeypatch, {"host": sim.url, "password": KEY, "extra": {"competitor_labels": value}})

    assert hook.config.competitor_labels == labels
    assert hook.config.competitor_labels_for(["Override"]) == ("Override",)
    # The labels decide the match of the simulator's outside track labelled "Independent Records".
    job = hook.submit_file(sample_videos()["external"])
    done = hook.wait_for_job(job.job_id, poll_interval=0.02, timeout=10)
    expected = "competitor" if labels else "external"
    assert done.to_result(hook.config.competitor_labels_for(None))["match"] == expected


# -- the key stays secret ----------------------------------------------------------------


def test_key_is_masked_and_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"sk-live-{uuid.uuid4().hex}"
    text = f"calling Slipstream with {key} now"
    assert key in redact(text)  # not registered yet: nothing masks it

    config = ClientConfig.from_connection(
        Connection(conn_id="slipstream_default", conn_type="slipstream", password=key)
    )

    assert config.api_key == key
    assert key not in redact(text)
    assert "***" in redact(text)
    assert key not in repr(config)
    assert key not in str(config)


def test_key_from_env_is_masked_and_never_in_repr(sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"sk-live-{uuid.uuid4().hex}"
    hook = use_conn(monkeypatch, {"host": sim.url, "password": key})

    config = hook.config

    assert config.api_key == key
    assert key not in redact(f"Authorization: Bearer {key}")
    assert key not in repr(config)
    assert key not in repr(hook.session.__dict__)
