"""
One pooled aiohttp session per event loop, shared by every Slipstream trigger running in it.

A triggerer runs all its triggers in one loop. A client per trigger costs each of them its own
pool, TLS context and connections; one shared session keeps a bounded set of connections alive
and costs a poll about a sixth of the CPU (``../benchmarks``, section 1). The session is created by
its first user, closed when its last user leaves, and holds no per-request state: the partner key
and timeouts travel with each request, cookies are never kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from airflow_provider_slipstream.exceptions import SlipstreamApiError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiohttp

#: Connections one event loop keeps open to Slipstream at most; further polls wait for a free one.
MAX_CONNECTIONS = 100
#: Idle connections are dropped before common 5 s server keep-alive timeouts close them: reusing one
#: the server is closing fails the poll and costs a retry with backoff.
KEEPALIVE_SECONDS = 4.0
#: The longest status line and header accepted, as http.client (the workers' requests) accepts them;
#: aiohttp's own default (8 KiB) would turn a gateway's long header into an outage on the triggerer only.
MAX_HEADER_BYTES = 65536


@dataclass
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


_SESSIONS: dict[asyncio.AbstractEventLoop, _Shared] = {}


@contextlib.asynccontextmanager
async def shared_session(user_agent: str) -> AsyncIterator[aiohttp.ClientSession]:
    """The running loop's session, for as long as the ``async with`` block lasts."""
    loop = asyncio.get_running_loop()
    shared = _SESSIONS.get(loop)
    if shared is None:
        # Importing aiohttp (~170 ms) and loading the CA bundle (~30 ms): once per process, off the loop.
        context = await asyncio.to_thread(_prepare)
        shared = _SESSIONS.get(loop)  # another trigger may have created it while this one waited
        if shared is None:
            shared = _SESSIONS[loop] = _Shared(_new_session(context, user_agent))
    shared.users += 1
    try:
        yield shared.session
    finally:
        shared.users -= 1
        if shared.users == 0:
            # Unregistered first: a trigger starting while this one closes gets a new session.
            del _SESSIONS[loop]
            await shared.session.close()


def open_sessions() -> int:
    """How many shared sessions are open in this process (one per loop with a user)."""
    return len(_SESSIONS)


def _new_session(context: ssl.SSLContext, user_agent: str) -> aiohttp.ClientSession:
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS, ssl=context),
        headers={"User-Agent": user_agent},
        max_line_size=MAX_HEADER_BYTES,
        max_field_size=MAX_HEADER_BYTES,
        # Triggers of different connections share the session: no cookie may pass between them.
        cookie_jar=aiohttp.DummyCookieJar(),
        # trust_env would look up .netrc and the proxy in a thread on every request (and a .netrc
        # entry for the host would clash with the bearer header): proxy_for() does it once.
        trust_env=False,
    )


@functools.cache
def proxy_for(base_url: str) -> str | None:
    """
    The proxy for requests to ``base_url``, chosen as the workers' requests chooses it.

    HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, and NO_PROXY (names, suffixes, CIDR ranges), read once per
    base URL. A proxy aiohttp cannot speak (SOCKS) is refused, as requests refuses it without PySocks.
    """
    from requests.utils import get_environ_proxies, select_proxy

    proxy = select_proxy(base_url, get_environ_proxies(base_url))
    if proxy and urlsplit(proxy).scheme not in ("http", "https"):
        raise SlipstreamApiError(
            f"The proxy set for {urlsplit(base_url).hostname} in the environment uses "
            f"{urlsplit(proxy).scheme!r}; only http:// and https:// proxies are supported. Set HTTPS_PROXY to an "
            "HTTP proxy, or exempt the host with NO_PROXY."
        )
    return proxy


def _prepare() -> ssl.SSLContext:
    import aiohttp  # noqa: F401  (imported here, in a thread, for the first session's sake)

    return _ssl_context()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # The CA bundle requests would use: REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE, then certifi's.
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    if not bundle:
        import certifi

        bundle = certifi.where()
    return ssl.create_default_context(cafile=bundle)
