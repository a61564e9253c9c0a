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
import ssl
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import aiohttp

#: Connections one event loop keeps open to Slipstream at most; further polls wait for a free one.
MAX_CONNECTIONS = 100
#: Idle connections are dropped before common 5 s server keep-alive timeouts close them: reusing one
#: the server is closing fails the poll and costs a retry with backoff.
KEEPALIVE_SECONDS = 4.0


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
        # Loading the CA bundle takes ~30 ms of CPU: once per process, and off the event loop.
        context = await asyncio.to_thread(_ssl_context)
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
        # Triggers of different connections share the session: no cookie may pass between them.
        cookie_jar=aiohttp.DummyCookieJar(),
        # trust_env would look up .netrc and the proxy in a thread on every request (and a .netrc
        # entry for the host would clash with the bearer header): proxy_for() does it once.
        trust_env=False,
    )


@functools.cache
def proxy_for(url: str) -> str | None:
    """The proxy that HTTPS_PROXY / HTTP_PROXY and NO_PROXY choose for ``url``, as the workers' requests does."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
