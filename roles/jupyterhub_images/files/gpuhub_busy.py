"""gpuhub's Jupyter Server extension in the singleuser images: a busy kernel is activity,
and the cull warning JupyterLab shows (with the gpuhub-cull-warning lab extension).

A kernel running a long cell that prints nothing (a training loop, a `sleep`) sends no
message after its `busy` status, so Jupyter Server's last activity stays at the cell's
start, and the idle culler would stop the server under its user. Every
GPUHUB_BUSY_INTERVAL seconds (default 30) this extension looks at the kernels' execution
states (which Jupyter Server tracks from their status messages) and, while one is busy,
sets a `*_last_activity` setting, which Jupyter Server counts in its last activity (its
documented hook for extensions); jupyterhub-singleuser reports that to the hub.

`GET <server>/gpuhub/cull` answers what the hub says of this server's next cull (its
/hub/api/gpuhub/cull/<user>/<server>, asked with the server's own token): asking is not
activity. `POST` is: it is the warning's "Keep it running".

Imported before the jupyterhub extension asks the hub anything, it also makes that
extension's HTTP client (aiohttp) look the hub's name up afresh (in a server the hub
started; a plain `jupyter server` is left without aiohttp): through aiodns (c-ares),
aiohttp keeps each answer for its TTL, and Docker's DNS gives 600 s, so after the hub's
container was recreated (a new address on each user's network in cluster mode) a running
server asked the old address for up to ten minutes. The hub does the same for itself
(gpuhub_hub.configure.fresh_name_lookups).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.ioloop import PeriodicCallback


def fresh_name_lookups() -> None:
    """aiohttp's system resolver (getaddrinfo in a thread, which asks Docker's DNS each
    time) instead of aiodns; TCPConnector reads the default when it is made. Only in a
    server the hub started (JUPYTERHUB_API_URL), whose jupyterhub extension has imported
    aiohttp already: a plain `jupyter server` asks no hub, and importing aiohttp would
    add ~0.4 s to its start at a 0.5-CPU limit."""
    if not os.environ.get("JUPYTERHUB_API_URL"):
        return
    try:
        import aiohttp.connector
        import aiohttp.resolver
    except ImportError:
        return
    aiohttp.connector.DefaultResolver = aiohttp.resolver.ThreadedResolver  # type: ignore[misc]


fresh_name_lookups()

SETTING = "gpuhub_busy_last_activity"
KEEP_SETTING = "gpuhub_keep_last_activity"  # the warning's "Keep it running"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "gpuhub_busy"}]


def busy(kernel_manager: Any) -> bool:  # noqa: ANN401 (Jupyter Server's kernel manager)
    """Whether any kernel is running code now."""
    return any(
        getattr(kernel_manager.get_kernel(kernel_id), "execution_state", "") == "busy"
        for kernel_id in list(kernel_manager.list_kernel_ids())
    )


class CullHandler(APIHandler):
    """This server's cull warning, from the hub (GET), and a keep (POST)."""

    _track_activity = False  # looking at the warning does not keep the server

    @web.authenticated
    async def get(self) -> None:
        api = os.environ.get("JUPYTERHUB_API_URL", "")
        user = os.environ.get("JUPYTERHUB_USER", "")
        if not (api and user):
            self.finish({"warning": None, "error": "not a JupyterHub server"})
            return
        server = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
        url = f"{api}/gpuhub/cull/{quote(user)}/{quote(server)}"
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        try:
            reply = await AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"token {token}"}, request_timeout=20
            )
        except (HTTPClientError, OSError) as err:
            self.set_status(502)
            self.finish({"warning": None, "error": f"the hub did not answer: {err}"})
            return
        self.finish(json.loads(reply.body))

    @web.authenticated
    def post(self) -> None:
        self.settings[KEEP_SETTING] = datetime.now(UTC)
        self.finish({"kept": True})


def _load_jupyter_server_extension(serverapp: Any) -> None:  # noqa: ANN401
    route = url_path_join(serverapp.web_app.settings["base_url"], "gpuhub", "cull")
    serverapp.web_app.add_handlers(".*$", [(route, CullHandler)])
    serverapp.log.info("gpuhub_busy: a busy kernel is activity; cull warnings at %s", route)


async def _start_jupyter_server_extension(serverapp: Any) -> None:  # noqa: ANN401
    """Once the server's event loop runs: look at the kernels every interval."""
    settings = serverapp.web_app.settings
    kernels = serverapp.kernel_manager

    def check() -> None:
        if busy(kernels):
            settings[SETTING] = datetime.now(UTC)

    seconds = float(os.environ.get("GPUHUB_BUSY_INTERVAL") or 30)
    PeriodicCallback(check, seconds * 1000).start()
