"""Seeing a new server answer as soon as it does.

After a spawner's start returns, JupyterHub waits for the server's /api with an exponential
backoff (first wait up to 0.2 s, doubling to 5 s): a server that answers 3.3 s after its
container started is typically seen at 5-6 s, which made a spawn through the hub twice the
bare `docker run` floor (bench/spawn.py). The spawner polls the same URL first, at short
steps; when its start returns, the hub's first probe finds the server answering.
"""

from __future__ import annotations

import asyncio
import time

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

FIRST_STEP = 0.05  # seconds between the first probes
LONGEST_STEP = 0.5  # a server slow to start is not probed more often than this
GROWTH = 1.5
PROBE_TIMEOUT = 10.0  # a bound socket answers once its server's loop runs


async def wait_answering(
    url: str, timeout: float, first: float = FIRST_STEP, longest: float = LONGEST_STEP
) -> float | None:
    """Poll url until it answers with anything but a 5xx (what the hub's own wait accepts):
    the seconds that took, or None after timeout (the hub's own wait then decides)."""
    client = AsyncHTTPClient()
    start = time.monotonic()
    step = first
    while True:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            return None
        try:
            response = await client.fetch(
                url,
                raise_error=False,
                follow_redirects=False,
                connect_timeout=min(PROBE_TIMEOUT, left),
                request_timeout=min(PROBE_TIMEOUT, left),
            )
        except (OSError, HTTPClientError):
            pass  # not listening yet, reset, or timed out
        else:
            if response.code < 500:
                return time.monotonic() - start
        await asyncio.sleep(min(step, max(timeout - (time.monotonic() - start), 0)))
        step = min(step * GROWTH, longest)
