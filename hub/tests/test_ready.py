"""The spawner sees a new server answer within one short step of its first answer
(ready.py), against real tornado servers that come up late or answer errors first."""

from __future__ import annotations

import asyncio
import socket
import time

from gpuhub_hub.ready import wait_answering
from tornado import httpserver, web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Api(web.RequestHandler):
    def initialize(self, codes: list[int]) -> None:
        self.codes = codes

    def get(self) -> None:
        self.set_status(self.codes.pop(0) if len(self.codes) > 1 else self.codes[0])
        self.write("{}")


async def serve_after(delay: float, port: int, codes: list[int]) -> httpserver.HTTPServer:
    await asyncio.sleep(delay)
    server = httpserver.HTTPServer(web.Application([(r"/user/a/api", Api, {"codes": codes})]))
    server.listen(port, "127.0.0.1")
    return server


def test_a_server_that_comes_up_late_is_seen_within_a_step() -> None:
    async def scenario() -> tuple[float | None, float]:
        port = free_port()
        late = asyncio.create_task(serve_after(2.0, port, [200]))
        start = time.monotonic()
        took = await wait_answering(f"http://127.0.0.1:{port}/user/a/api", timeout=10)
        (await late).stop()
        return took, time.monotonic() - start

    took, waited = asyncio.run(scenario())
    # JupyterHub's own backoff (0.2 s doubling) would probe next at ~3.2 s, or later. The
    # bound is a literal (a step of 5 % of the 2 s waited, plus 0.15 s for a busy machine's
    # scheduling): one read from ready.py would move with what it tests.
    assert took is not None
    assert 2.0 <= took <= 2.0 + 0.1 + 0.15, took
    assert waited <= 2.0 + 0.1 + 0.15


def test_a_bound_port_is_not_an_answer_but_its_answer_is_seen_at_once() -> None:
    """jupyter_server binds its port before its event loop runs: a probe that finds the
    port accepting waits for the answer instead of reporting the server up."""

    async def scenario() -> float | None:
        port = free_port()
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
        sock.setblocking(False)
        server = httpserver.HTTPServer(web.Application([(r"/user/a/api", Api, {"codes": [200]})]))

        async def serve_later() -> None:
            await asyncio.sleep(1.0)
            server.add_sockets([sock])

        later = asyncio.create_task(serve_later())
        try:
            return await wait_answering(f"http://127.0.0.1:{port}/user/a/api", timeout=10)
        finally:
            await later
            server.stop()

    took = asyncio.run(scenario())
    assert took is not None
    assert 1.0 <= took <= 1.0 + 0.25, took  # not the accepted connection, at ~0 s


def test_server_errors_are_not_an_answer() -> None:
    async def scenario() -> float | None:
        port = free_port()
        server = await serve_after(0, port, [503, 503, 503, 200])
        try:
            return await wait_answering(f"http://127.0.0.1:{port}/user/a/api", timeout=10)
        finally:
            server.stop()

    took = asyncio.run(scenario())
    assert took is not None
    assert took >= 3 * 0.05 - 0.01  # three waits first


def test_nothing_listening_gives_up_after_the_timeout() -> None:
    async def scenario() -> tuple[float | None, float]:
        start = time.monotonic()
        took = await wait_answering(f"http://127.0.0.1:{free_port()}/user/a/api", timeout=1.5)
        return took, time.monotonic() - start

    took, waited = asyncio.run(scenario())
    assert took is None
    assert 1.5 <= waited <= 2.0
