"""The upgrade's smoke test: the hub used as a person uses it, through the front door.

    python -m gpuhub_hub.smoke --url https://hub.example.org --ca /ca.crt --user probe

A user (made beforehand, its password in $GPUHUB_SMOKE_PASSWORD) logs in with the login
form, gets an API token, starts a server (with --profile, that profile), runs code in a
kernel over the kernel's websocket, and stops the server. Each step is printed as it
passes; the first that fails ends the run with exit status 1 and the line
`smoke test failed at <step>: <why>`. playbooks/upgrade.yml runs it in a container of the
new hub image on the host's network."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from .client import HubClient, HubError, KernelResult, ReplyCollector, execute_request

PASSWORD_VARIABLE = "GPUHUB_SMOKE_PASSWORD"  # noqa: S105 (a variable's name)
# What the kernel runs, and what it must print back.
CODE = "print(sum(range(1, 101)))"
EXPECTED = "5050\n"

T = TypeVar("T")


class SmokeFailed(RuntimeError):
    def __init__(self, step: str, why: str) -> None:
        super().__init__(f"smoke test failed at {step}: {why}")


async def _execute(url: str, token: str, ca: str | None, code: str, timeout: float) -> KernelResult:
    """Run `code` in a kernel over its websocket (tornado's client: the hub image has it)."""
    context = ssl.create_default_context(cafile=ca) if url.startswith("wss:") else None
    request = HTTPRequest(
        url,
        headers={"Authorization": f"token {token}"},
        ssl_options=context,
        connect_timeout=timeout,
        request_timeout=timeout,
    )
    connection = await websocket_connect(request)
    try:
        message = execute_request(code)
        await connection.write_message(json.dumps(message))
        reply = ReplyCollector(message)
        while not reply.done:
            text = await asyncio.wait_for(connection.read_message(), timeout)
            if text is None:
                raise HubError("the kernel's websocket closed before the reply")
            reply.add(json.loads(text))
        return reply.result
    finally:
        connection.close()


def run(client: HubClient, user: str, password: str, profile: str, timeout: float) -> None:
    """Every step in order; raises SmokeFailed naming the first that fails."""

    def step(name: str, action: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            value = action()
        except Exception as error:  # any failure of a step is the smoke test's answer
            raise SmokeFailed(name, f"{type(error).__name__}: {error}") from error
        print(f"ok   {name} ({time.monotonic() - started:.1f} s)", flush=True)
        return value

    def login() -> None:
        if not client.login(user, password):
            raise HubError("the login form did not log the user in")

    def kernel(kernel_id: str) -> None:
        url = client.channels_url(user, kernel_id)
        ca = client.verify if isinstance(client.verify, str) else None
        result = asyncio.run(_execute(url, client.token or "", ca, CODE, timeout))
        if result.error or result.stdout != EXPECTED:
            raise HubError(f"expected {EXPECTED!r}, got {result.stdout!r} ({result.error})")

    step("login", login)
    step("token", lambda: client.create_token("gpuhub upgrade smoke test"))
    options = {"profile": profile} if profile else {}
    step("spawn", lambda: client.start_server(user, timeout=timeout, **options))
    try:
        kernel_id = step("kernel", lambda: client.start_kernel(user))
        step("run code", lambda: kernel(kernel_id))
    except SmokeFailed:
        with contextlib.suppress(SmokeFailed):  # the first failure is the answer
            step("stop", lambda: client.stop_server(user, timeout=timeout))
        raise
    step("stop", lambda: client.stop_server(user, timeout=timeout))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuhub_hub.smoke", description=__doc__)
    parser.add_argument("--url", required=True, help="the hub's address, base URL included")
    parser.add_argument("--ca", help="CA file the certificate is checked against")
    parser.add_argument("--user", required=True)
    parser.add_argument("--profile", default="", help="profile slug (default: the hub's)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per step")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_VARIABLE, "")
    if not password:
        print(f"smoke test failed at start: ${PASSWORD_VARIABLE} is empty", file=sys.stderr)
        return 2
    client = HubClient(args.url.rstrip("/"), verify=args.ca or True)
    try:
        run(client, args.user, password, args.profile, args.timeout)
    except SmokeFailed as failure:
        print(failure, flush=True)
        return 1
    print("smoke test passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
