"""A client for a gpuhub hub, as a browser and the REST API use it: the login form, an API
token, spawn and stop, a kernel. The upgrade's smoke test (smoke.py) uses it inside the hub
image; the end-to-end tests extend it (sign-up, single sign-on, approval, the kernel's
websocket through websocket-client)."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')


class HubError(RuntimeError):
    """The hub answered something the caller did not expect."""


@dataclass
class KernelResult:
    stdout: str = ""
    error: str | None = None
    status: str = ""


@dataclass
class HubClient:
    """One browser-like session against the hub at `url` (its base URL, no trailing slash).
    `verify`: True (the system's CAs), False, or a CA file."""

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

    def login(self, username: str, password: str) -> bool:
        """Log in through the form; True when the hub set a login cookie and redirected."""
        response = self._form("/hub/login", {"username": username, "password": password})
        ok = response.status_code == 302 and any(
            c.name.startswith("jupyterhub-hub-login") for c in self.session.cookies
        )
        if ok:
            self.username = username
        return ok

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
        # No options: the default profile. (An empty body would mean the server's previous
        # options on JupyterHub 6; an explicit null profile asks for the default on 5 and 6.)
        response = self.api("POST", path, json=options or {"profile": None})
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

    def channels_url(self, user: str, kernel_id: str, name: str = "") -> str:
        """The kernel's websocket (shell, iopub... multiplexed)."""
        base = self.url.replace("http", "ws", 1)
        return f"{base}/user/{user}/{name + '/' if name else ''}api/kernels/{kernel_id}/channels"


def execute_request(code: str) -> dict[str, Any]:
    """A Jupyter execute_request for the kernel's websocket (its msg_id in the header)."""
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "username": "gpuhub",
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


class ReplyCollector:
    """Folds the kernel's messages about one execute_request into a KernelResult."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.msg_id = request["header"]["msg_id"]
        self.result = KernelResult()
        self.replied = self.idle = False

    @property
    def done(self) -> bool:
        return (self.replied and self.idle) or self.result.status in ("restarting", "dead")

    def add(self, message: dict[str, Any]) -> None:
        kind, content = message["msg_type"], message["content"]
        if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
            # The kernel died (its memory limit, say): no reply will come.
            self.result.error, self.result.status = "kernel died", content["execution_state"]
            return
        if message.get("parent_header", {}).get("msg_id") != self.msg_id:
            return
        if kind == "stream" and content.get("name") == "stdout":
            self.result.stdout += content["text"]
        elif kind == "error":
            self.result.error = f"{content['ename']}: {content['evalue']}"
        elif kind == "execute_reply":
            self.replied, self.result.status = True, content["status"]
        elif kind == "status" and content.get("execution_state") == "idle":
            self.idle = True
