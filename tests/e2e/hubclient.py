"""A small client for a gpuhub hub, as a browser and the REST API use it.

Used by the end-to-end tests (and the load benchmark): sign up, log in, approve, spawn,
and run code in a kernel over its websocket.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
import websocket

XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')


class HubError(RuntimeError):
    """The hub answered something a test did not expect."""


@dataclass
class KernelResult:
    stdout: str = ""
    error: str | None = None
    status: str = ""


@dataclass
class HubClient:
    """One browser-like session against the hub at `url` (ending without a slash)."""

    url: str
    verify: bool | str = True
    session: requests.Session = field(default_factory=requests.Session)
    token: str | None = None
    username: str | None = None
    password: str | None = None

    # --- forms --------------------------------------------------------------------
    def _form(self, path: str, data: dict[str, str]) -> requests.Response:
        page = self.session.get(f"{self.url}{path}", verify=self.verify, timeout=30)
        page.raise_for_status()
        match = XSRF_FIELD.search(page.text)
        if match:
            data = {**data, "_xsrf": match.group(1)}
        return self.session.post(
            f"{self.url}{path}", data=data, verify=self.verify, timeout=30, allow_redirects=False
        )

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

    def login(self, username: str, password: str) -> bool:
        """Log in through the form; True when the hub set a login cookie and redirected."""
        response = self._form("/hub/login", {"username": username, "password": password})
        ok = response.status_code == 302 and any(
            c.name.startswith("jupyterhub-hub-login") for c in self.session.cookies
        )
        if ok:
            self.username = username
        return ok

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

    # --- REST API -----------------------------------------------------------------
    def create_token(self, note: str = "e2e") -> str:
        """A token for the logged-in user, made through the API with the session cookie."""
        xsrf = self.session.cookies.get("_xsrf", path="/hub/") or self.session.cookies.get("_xsrf")
        response = self.session.post(
            f"{self.url}/hub/api/users/{self.username}/tokens",
            json={"note": note, "expires_in": 3600},
            headers={"X-XSRFToken": xsrf or ""},
            verify=self.verify,
            timeout=30,
        )
        if response.status_code != 201:
            raise HubError(f"token: {response.status_code} {response.text[:300]}")
        self.token = response.json()["token"]
        return self.token

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:  # noqa: ANN401
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        return requests.request(
            method,
            f"{self.url}{path}",
            headers=headers,
            verify=self.verify,
            timeout=kwargs.pop("timeout", 60),
            **kwargs,
        )

    def server_state(self, user: str, name: str = "") -> dict[str, Any] | None:
        response = self.api("GET", f"/hub/api/users/{user}")
        response.raise_for_status()
        return response.json().get("servers", {}).get(name)

    def start_server(self, user: str, name: str = "", timeout: float = 300, **options: str) -> None:
        path = f"/hub/api/users/{user}/servers/{name}" if name else f"/hub/api/users/{user}/server"
        response = self.api("POST", path, json=options)
        if response.status_code not in (201, 202, 400):
            raise HubError(f"spawn: {response.status_code} {response.text[:300]}")
        if response.status_code == 400 and "already running" not in response.text:
            raise HubError(f"spawn: {response.status_code} {response.text[:300]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.server_state(user, name)
            if state and state.get("ready"):
                return
            if state is None and response.status_code == 202:
                raise HubError("spawn failed: the server disappeared while starting")
            time.sleep(1)
        raise HubError(f"server of {user} not ready after {timeout} s")

    def stop_server(self, user: str, name: str = "", timeout: float = 120) -> None:
        path = f"/hub/api/users/{user}/servers/{name}" if name else f"/hub/api/users/{user}/server"
        response = self.api("DELETE", path)
        if response.status_code not in (202, 204, 400):
            raise HubError(f"stop: {response.status_code} {response.text[:300]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_state(user, name) is None:
                return
            time.sleep(1)
        raise HubError(f"server of {user} still running after {timeout} s")

    # --- the user's server ----------------------------------------------------------
    def server_url(self, user: str, name: str = "") -> str:
        return f"{self.url}/user/{user}/{name + '/' if name else ''}"

    def start_kernel(self, user: str, name: str = "") -> str:
        response = self.api(
            "POST", f"/user/{user}/{name + '/' if name else ''}api/kernels", json={}
        )
        if response.status_code != 201:
            raise HubError(f"kernel: {response.status_code} {response.text[:300]}")
        return response.json()["id"]

    @contextmanager
    def channels(
        self, user: str, kernel_id: str, name: str = "", timeout: float = 120
    ) -> Iterator[websocket.WebSocket]:
        """The kernel's websocket (shell, iopub... multiplexed), open for the block."""
        base = self.url.replace("http", "ws", 1)
        url = f"{base}/user/{user}/{name + '/' if name else ''}api/kernels/{kernel_id}/channels"
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


def _message(code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "username": "e2e",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "channel": "shell",
        "buffers": [],
    }


def run_code(ws: websocket.WebSocket, code: str, timeout: float = 120) -> KernelResult:
    """Send one execute_request on an open kernel websocket; wait for its reply."""
    request = _message(code)
    msg_id = request["header"]["msg_id"]
    ws.send(json.dumps(request))
    result = KernelResult()
    replied = idle = False
    deadline = time.monotonic() + timeout
    previous = ws.gettimeout()
    # Short reads, so the deadline holds even while the server's pings keep the socket busy.
    ws.settimeout(5)
    try:
        while not (replied and idle):
            if time.monotonic() > deadline:
                raise HubError(f"no reply to execute_request within {timeout} s")
            try:
                message = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
                # The kernel died (its memory limit, say): no reply will come.
                result.error, result.status = "kernel died", content["execution_state"]
                return result
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            replied, idle = _collect(result, kind, content, replied, idle)
    finally:
        ws.settimeout(previous)
    return result


def _collect(
    result: KernelResult, kind: str, content: dict[str, Any], replied: bool, idle: bool
) -> tuple[bool, bool]:
    """Fold one message of the request into `result`; returns (replied, idle)."""
    if kind == "stream" and content.get("name") == "stdout":
        result.stdout += content["text"]
    elif kind == "error":
        result.error = f"{content['ename']}: {content['evalue']}"
    elif kind == "execute_reply":
        replied, result.status = True, content["status"]
    elif kind == "status" and content.get("execution_state") == "idle":
        idle = True
    return replied, idle


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
