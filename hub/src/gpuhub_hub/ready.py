"""Seeing a new server answer as soon as it does.

After a spawner's start returns, JupyterHub waits for the server's /api with an exponential
backoff (first wait up to 0.2 s, doubling to 5 s): a server that answers 3.3 s after its
container started is typically seen at 5-6 s, which made a spawn through the hub twice the
bare `docker run` floor (bench/spawn.py). The spawner polls the same URL first, as often as
polling.py says (seen at most 5 %, never more than 0.5 s, after it first answers); when its
start returns, the hub's first probe finds the server answering. A probe first connects (a
refused connection costs ~0.1 ms of the hub's CPU, an HTTP attempt ~0.5 ms); only once the
port accepts does it ask /api, and then waits for the answer: a server that has bound its
port answers as soon as its event loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from .polling import next_step

CONNECT_TIMEOUT = 1.0  # a connection not refused nor accepted by then is tried again
PROBE_TIMEOUT = 10.0  # a bound socket answers once its server's loop runs


async def accepts(host: str, port: int, timeout: float) -> bool:
    """Whether host:port accepts a connection (closed again at once)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except OSError:  # refused, unreachable, or timed out (TimeoutError is an OSError)
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_answering(url: str, timeout: float) -> float | None:
    """Poll url until it answers with anything but a 5xx (what the hub's own wait accepts):
    the seconds that took, or None after timeout (the hub's own wait then decides)."""
    client = AsyncHTTPClient()
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    start = time.monotonic()
    while True:
        waited = time.monotonic() - start
        left = timeout - waited
        if left <= 0:
            return None
        if await accepts(host, port, min(CONNECT_TIMEOUT, left)):
            try:
                response = await client.fetch(
                    url,
                    raise_error=False,
                    follow_redirects=False,
                    connect_timeout=min(PROBE_TIMEOUT, left),
                    request_timeout=min(PROBE_TIMEOUT, left),
                )
            except (OSError, HTTPClientError):
                pass  # reset, or timed out
            else:
                if response.code < 500:
                    return time.monotonic() - start
        waited = time.monotonic() - start
        await asyncio.sleep(min(next_step(waited), max(timeout - waited, 0)))
