"""The cull warning inside JupyterLab: the images' gpuhub_busy server extension and the
gpuhub-cull-warning lab extension (roles/jupyterhub_images/files/) in a real JupyterLab
(the images' version) and a real headless Chromium. The hub is a stand-in that answers
its /hub/api/gpuhub/cull route as cullwarning.py does (hub/tests/test_culling.py tests
the hub's side; the default scenario's culler test the whole chain)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from browser import Browser
from livehub import free_port, stop_group, wait_until_answering
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from standin import json_server

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "roles/jupyterhub_images/files"
TOKEN = "lab-token"  # noqa: S105 (JupyterLab's own, this test's)
SERVER_TOKEN = "server-token-of-ada"  # noqa: S105 (what the hub gives the server)
WARNING = (
    "This server will be stopped at 12:34 UTC (in about 9 min) because it is idle: "
    "run a cell or edit a file to keep it running."
)


@dataclass
class StandInHub:
    answer: dict[str, Any] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization)


def stand_in(hub: StandInHub) -> ThreadingHTTPServer:
    def answer(request: BaseHTTPRequestHandler) -> object:
        hub.asked.append((request.path, request.headers.get("Authorization", "")))
        return hub.answer

    return json_server(answer)


@dataclass
class Lab:
    url: str
    hub: StandInHub

    def api(self, method: str, path: str) -> requests.Response:
        headers = {"Authorization": f"token {TOKEN}"}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30)

    def last_activity(self) -> str:
        return str(self.api("GET", "/api/status").json()["last_activity"])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    share = root / "share"
    shutil.copytree(FILES / "gpuhub-cull-warning", share / "labextensions/gpuhub-cull-warning")
    config = root / "config"
    config.mkdir()
    extensions = {"ServerApp": {"jpserver_extensions": {"gpuhub_busy": True}}}
    (config / "jupyter_server_config.json").write_text(json.dumps(extensions))
    # The news prompt answered, as the images' settings overrides do.
    notification = root / "settings/@jupyterlab/apputils-extension"
    notification.mkdir(parents=True)
    quiet = {"fetchNews": "false", "checkForUpdates": False}
    (notification / "notification.jupyterlab-settings").write_text(json.dumps(quiet))
    (root / "work").mkdir()
    hub = StandInHub(
        {"warning": WARNING, "deadline": "2026-12-04T12:34:00+00:00", "keepable": True}
    )
    stand = stand_in(hub)
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(root),
        "JUPYTER_PATH": str(share),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(FILES), os.environ.get("PYTHONPATH")])),
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{stand.server_port}/hub/api",
        "JUPYTERHUB_API_TOKEN": SERVER_TOKEN,
        "JUPYTERHUB_USER": "ada",
    }
    log = (root / "lab.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("jupyter-lab")),
            "--no-browser",
            "--allow-root",  # CI runs as root
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root / 'work'}",
        ],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    started = Lab(f"http://127.0.0.1:{port}", hub)
    try:
        status, token = f"{started.url}/api/status", {"Authorization": f"token {TOKEN}"}
        wait_until_answering(status, token, process, root / "lab.log", 90)
        yield started
    finally:
        stand.shutdown()
        try:
            stop_group(process, root / "lab.log")
        finally:
            log.close()


def test_asking_is_not_activity_and_keeping_is(lab: Lab) -> None:
    before = lab.last_activity()
    answer = lab.api("GET", "/gpuhub/cull")
    assert answer.json() == lab.hub.answer
    # The server asked the hub about itself, with its own token.
    assert lab.hub.asked[-1] == ("/hub/api/gpuhub/cull/ada/", f"token {SERVER_TOKEN}")
    assert lab.last_activity() == before
    time.sleep(0.05)
    assert lab.api("POST", "/gpuhub/cull").json() == {"kept": True}
    assert lab.last_activity() > before


def test_jupyterlab_shows_the_warning_with_a_way_to_keep_the_server(lab: Lab) -> None:
    browser = Browser(prefix="lab-")
    try:
        browser.driver.get(f"{lab.url}/lab?token={TOKEN}")
        # Until Selenium reads the whole warning from it: a toast still sliding in, visible
        # or not, read as '' (seen twice in CI with both cores busy).
        locator = (
            By.XPATH,
            f"//*[contains(@class, 'Toastify__toast') and contains(., '{WARNING[:40]}')]",
        )
        browser.wait(seen.text_to_be_present_in_element(locator, WARNING), 120)
        toast = browser.driver.find_element(*locator)
        assert WARNING in toast.text
        assert (
            browser.driver.execute_script("return document.body.dataset.gpuhubCullWarning")
            == WARNING
        )
        time.sleep(1)  # the toast slides in
        browser.shot("cull-warning")
        before = lab.last_activity()
        time.sleep(0.05)
        toast.find_element(By.XPATH, ".//button[contains(., 'Keep it running')]").click()
        deadline = time.monotonic() + 20
        while lab.last_activity() == before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert lab.last_activity() > before, "Keep it running did not reach the server"
    finally:
        browser.driver.quit()
