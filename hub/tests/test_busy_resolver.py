"""The images' gpuhub_busy server extension and aiohttp's resolver. In a server the hub
started, imported after `jupyterhub-singleuser`'s own modules as that command does, it
makes the HTTP client the jupyterhub extension asks the hub with look names up afresh (the
cluster scenario's test_running_servers_reach_a_recreated_hub tests what that is for). In
a plain `jupyter server` (bench/spawn.py's floor) it does not import aiohttp at all: that
cost ~0.4 s of each start at a 0.5-CPU limit, and made the floor slower than it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FILES = Path(__file__).resolve().parents[2] / "roles/jupyterhub_images/files"

PROBE = """
import asyncio, json, sys
{first}
import gpuhub_busy

async def resolver():
    import aiohttp
    connector = aiohttp.TCPConnector()  # as jupyterhub.httpclient makes its own
    try:
        return type(connector._resolver).__name__
    finally:
        await connector.close()

loaded = "aiohttp" in sys.modules
print(json.dumps({{"aiohttp loaded": loaded, "resolver": asyncio.run(resolver())}}))
"""


def probe(first: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)],
        env={**clean, "PYTHONPATH": str(FILES), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return dict(json.loads(out.splitlines()[-1]))


def test_a_server_the_hub_started_looks_the_hub_up_afresh() -> None:
    seen = probe("import jupyterhub.singleuser", JUPYTERHUB_API_URL="http://hub:8081/hub/api")
    assert seen == {"aiohttp loaded": True, "resolver": "ThreadedResolver"}


def test_a_plain_jupyter_server_does_not_import_aiohttp() -> None:
    seen = probe("import jupyter_server.serverapp")
    assert seen["aiohttp loaded"] is False
    # aiohttp's own default where nothing switched it (aiodns installed: AsyncResolver)
    assert seen["resolver"] != "ThreadedResolver"
