"""A real JupyterHub process, started from the real jupyterhub_config.py, for tests of
the accounts API and gpuhub-admin. Only the proxy is a stand-in (it answers the routes
API); nothing is spawned."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import yaml
from gpuhub_hub.admin.cli import main
from hubsettings import CONFIG_PY, base_settings

HUB_SRC = CONFIG_PY.parent / "src"
# The first password of the admin in base_settings (Ansible generates it on a real host).
ADMIN_PASSWORD = "first-admin-password"  # noqa: S105
METRICS_TOKEN = "m" * 64  # the gpuhub-metrics service's token


class _Routes(BaseHTTPRequestHandler):
    """configurable-http-proxy's REST API, as far as the hub uses it."""

    routes: dict[str, dict] = {}  # noqa: RUF012

    def _reply(self, code: int, body: object = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply(200, self.routes)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.routes[self.path.removeprefix("/api/routes")] = json.loads(self.rfile.read(length))
        self._reply(201)

    def do_DELETE(self) -> None:
        self.routes.pop(self.path.removeprefix("/api/routes"), None)
        self._reply(204)

    def log_message(self, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveHub:
    url: str  # http://127.0.0.1:<port>, the hub's own port (no proxy in front)
    settings: Path
    root: Path
    log: Path

    process: subprocess.Popen | None = None

    def service_token(self, module: str) -> str:
        """The API token this hub handed to a managed service it started (found in the
        service process's environment): that service's real privileges."""
        assert self.process is not None
        parent = f"PPid:\t{self.process.pid}\n"
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                cmdline = (environ.parent / "cmdline").read_bytes().split(b"\0")
                if module.encode() not in cmdline:
                    continue
                if parent not in (environ.parent / "status").read_text():
                    continue  # another hub's service (another test, a test host)
                pairs = environ.read_bytes().split(b"\0")
            except OSError:
                continue
            for pair in pairs:
                if pair.startswith(b"JUPYTERHUB_API_TOKEN="):
                    return pair.split(b"=", 1)[1].decode()
        raise AssertionError(f"no running service process {module}")

    @property
    def home_root(self) -> Path:
        return self.root / "home"

    @property
    def archive_dir(self) -> Path:
        return self.root / "archive"


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_group(process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    """SIGTERM to the hub (it stops its services); past `seconds`, SIGKILL to its whole
    group, and a failure showing the end of its log."""
    process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(
            f"the hub did not stop in {seconds} s:\n{log.read_text()[-4000:]}"
        ) from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a service left behind


def wait_until_answering(
    url: str, headers: dict[str, str], process: subprocess.Popen, log: Path, seconds: float
) -> None:
    """Until `url` answers 2xx; fails with the end of `log` when `process` stops first or
    `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if requests.get(url, headers=headers, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


@contextmanager
def live_hub(root: Path, **sections: dict) -> Iterator[LiveHub]:
    """A hub whose state lives in `root/state`: a second hub on the same root starts on
    the first one's database (as a re-converge with other settings would)."""
    state = root / "state"
    passwords = state / "admin-passwords"
    passwords.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("proxy_auth_token", "p" * 64),
        ("crypt_key", "0f" * 32),
        ("gpuhub_admin_token", "t" * 64),
        ("metrics_token", METRICS_TOKEN),
        ("admin-passwords/admin", ADMIN_PASSWORD),
    ):
        if not (state / name).exists():
            (state / name).write_text(text)
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Routes)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    port = free_port()
    data = base_settings(state)
    data["hub"].update(
        hub_bind_url=f"http://127.0.0.1:{port}",
        hub_connect_url=f"http://127.0.0.1:{port}",
        proxy_api_url=f"http://127.0.0.1:{proxy.server_port}",
        admin_token_file=str(state / "gpuhub_admin_token"),
        groups=["students"],
    )
    data["culler"] = {"enabled": False}
    data["auth"] = {"initial_admin_password_dir": str(passwords)}
    data["spawner"].update(home_root=str(root / "home"), archive_dir=str(root / "archive"))
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    settings = root / "settings.yaml"
    settings.write_text(yaml.safe_dump(data))
    log = root / "hub.log"
    # The hub package first; a PYTHONPATH already set (another JupyterHub to try) after it.
    path = os.pathsep.join(filter(None, [str(HUB_SRC), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "GPUHUB_SETTINGS": str(settings), "PYTHONPATH": path}
    jupyterhub = Path(sys.executable).with_name("jupyterhub")
    with log.open("w") as out:
        # Its own process group: the services it starts go with it, whatever happens. SIGINT
        # as in production: a test run started in the background (CI's lanes) ignores it,
        # and the hub's services, stopped with SIGINT first, then took 10 s each to go.
        process = subprocess.Popen(
            [str(jupyterhub), "-f", str(CONFIG_PY)],
            cwd=state,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=default_sigint,
        )
    hub = LiveHub(f"http://127.0.0.1:{port}", settings, root, log, process)
    try:
        wait_until_answering(f"{hub.url}/hub/health", {}, process, log, 60)
        yield hub
    finally:
        proxy.shutdown()
        stop_group(process, log)


def gpuhub_admin(hub: LiveHub, *args: str, stdin: str = "", code: int = 0) -> dict[str, Any]:
    """Run gpuhub-admin --json against `hub`; its exit status must be `code`."""
    out = io.StringIO()
    status = main(["--json", "--settings", str(hub.settings), *args], io.StringIO(stdin), out)
    result = json.loads(out.getvalue())
    assert status == code, result
    return result
