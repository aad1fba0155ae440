"""The hub client of the end-to-end tests (and the load benchmark): gpuhub's own client
(gpuhub_hub.client, which the upgrade's smoke test uses) plus what only tests do: sign up,
single sign-on, approve, and the kernel's websocket through websocket-client, kept open
for a block (a browser tab's)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import websocket
from gpuhub_hub.client import HubClient as BaseClient
from gpuhub_hub.client import HubError, KernelResult, ReplyCollector, execute_request

__all__ = ["HubClient", "HubError", "KernelResult", "idle", "run_code"]


@dataclass
class HubClient(BaseClient):
    """One browser-like session against the hub at `url` (ending without a slash)."""

    def signup(self, username: str, password: str) -> str:
        """Sign up; returns the page text (NativeAuthenticator's message)."""
        response = self._form(
            "/hub/signup",
            {
                "username": username,
                "signup_password": password,
                "signup_password_confirmation": password,
                "email": "",
            },
        )
        return response.text

    def sso_start(self) -> str:
        """Single sign-on, as a browser starts it: the hub keeps its state in a cookie of
        this session and sends the browser to the provider; returns that address."""
        reply = self.session.get(
            f"{self.url}/hub/oauth_login", verify=self.verify, timeout=30, allow_redirects=False
        )
        if reply.status_code != 302:
            raise HubError(f"oauth_login: {reply.status_code} {reply.text[:300]}")
        return reply.headers["Location"]

    def sso_finish(self, callback: str, username: str) -> int:
        """Back from the provider: follow its redirect to the hub's callback; returns the
        hub's answer (302 when `username` is logged in)."""
        reply = self.session.get(callback, verify=self.verify, timeout=60, allow_redirects=False)
        if reply.status_code == 302:
            self.username = username
        return reply.status_code

    def approve(self, username: str) -> None:
        """As an admin: authorize a signed-up user (NativeAuthenticator's toggle)."""
        if self.is_approved(username):
            return
        self.session.get(
            f"{self.url}/hub/authorize/{username}", verify=self.verify, timeout=30
        ).raise_for_status()
        if not self.is_approved(username):
            raise HubError(f"{username} is still not approved")

    def is_approved(self, username: str) -> bool:
        page = self.session.get(f"{self.url}/hub/authorize", verify=self.verify, timeout=30)
        page.raise_for_status()
        row = re.search(rf"<tr[^>]*>\s*<td>{re.escape(username)}</td>.*?</tr>", page.text, re.S)
        if not row:
            raise HubError(f"{username} is not on the authorization page")
        return ">Unauthorize<" in row.group(0)

    @contextmanager
    def channels(
        self, user: str, kernel_id: str, name: str = "", timeout: float = 120
    ) -> Iterator[websocket.WebSocket]:
        """The kernel's websocket (shell, iopub... multiplexed), open for the block."""
        url = self.channels_url(user, kernel_id, name)
        sslopt = {"ca_certs": self.verify} if isinstance(self.verify, str) else {}
        ws = websocket.create_connection(
            url, header=[f"Authorization: token {self.token}"], timeout=timeout, sslopt=sslopt
        )
        try:
            yield ws
        finally:
            ws.close()

    def execute(
        self, user: str, kernel_id: str, code: str, name: str = "", timeout: float = 120
    ) -> KernelResult:
        """Run `code` in a kernel over a new websocket and collect stdout."""
        with self.channels(user, kernel_id, name, timeout) as ws:
            return run_code(ws, code, timeout)


def run_code(ws: websocket.WebSocket, code: str, timeout: float = 120) -> KernelResult:
    """Send one execute_request on an open kernel websocket; wait for its reply."""
    request = execute_request(code)
    ws.send(json.dumps(request))
    reply = ReplyCollector(request)
    deadline = time.monotonic() + timeout
    previous = ws.gettimeout()
    # Short reads, so the deadline holds even while the server's pings keep the socket busy.
    ws.settimeout(5)
    try:
        while not reply.done:
            if time.monotonic() > deadline:
                raise HubError(f"no reply to execute_request within {timeout} s")
            try:
                reply.add(json.loads(ws.recv()))
            except websocket.WebSocketTimeoutException:
                continue
    finally:
        ws.settimeout(previous)
    return reply.result


def idle(ws: websocket.WebSocket, seconds: float) -> None:
    """Keep a kernel websocket open without running anything, the way a browser tab does:
    nothing is sent, but the server's pings are answered (websocket-client answers them
    while reading). Messages that arrive meanwhile are dropped."""
    deadline = time.monotonic() + seconds
    previous = ws.gettimeout()
    ws.settimeout(5)
    try:
        while time.monotonic() < deadline:
            try:
                ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
    finally:
        ws.settimeout(previous)
