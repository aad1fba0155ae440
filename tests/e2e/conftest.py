"""End-to-end fixtures: a converged test host (GPUHUB_E2E_HOST, set by Molecule verify)
and hub clients logged in as its users."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import requests
from gpuhub_hub.client import execute_request
from hubclient import HubClient
from testhost import BUSY, IDLER, Idler, TestHost, UserFactory, new_password

HOST = os.environ.get("GPUHUB_E2E_HOST", "")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)
            if not HOST:
                item.add_marker(pytest.mark.skip(reason="no test host: run through Molecule"))


@pytest.fixture(scope="session")
def host() -> TestHost:
    return TestHost(HOST)


@pytest.fixture(scope="session")
def ca_file(host: TestHost, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The self-signed certificate Nginx serves: the only CA the tests trust."""
    path = tmp_path_factory.mktemp("tls") / "hub.crt"
    path.write_text(host.run("cat", "/etc/nginx/gpuhub-tls/selfsigned.crt"))
    return str(path)


@pytest.fixture(scope="session")
def hub_url(host: TestHost, ca_file: str) -> str:
    """The hub through Nginx over HTTPS, verified against the served certificate."""
    url = f"https://{host.address}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/hub/health", verify=ca_file, timeout=5).status_code == 200:
                return url
        except requests.RequestException:
            pass
        time.sleep(2)
    raise AssertionError(f"hub at {url} does not answer")


@pytest.fixture(scope="session")
def admin(host: TestHost, hub_url: str, ca_file: str) -> HubClient:
    """The first admin, with the password site.yml generated (the hub made the account
    before it first answered)."""
    client = HubClient(hub_url, verify=ca_file)
    assert client.login("admin", host.admin_password()), "admin cannot log in"
    client.create_token("e2e admin")
    return client


@pytest.fixture(scope="session")
def make_user(host: TestHost, hub_url: str, ca_file: str) -> UserFactory:
    """Add a user as an admin does (gpuhub-admin) and log them in; returns their client
    with an API token and the password in `client.password`."""

    def make(name: str) -> HubClient:
        client = HubClient(hub_url, verify=ca_file)
        client.password = new_password()
        host.add_user(name, client.password)
        assert client.login(name, client.password), f"{name} cannot log in"
        client.create_token()
        return client

    return make


IDLE_TEST = "test_zz_idle_server_is_culled"
# Their full restore stops every user server: the idler starts after them.
BEFORE_IDLER = "test_backup.py"


@pytest.fixture(scope="session")
def idler(request: pytest.FixtureRequest, host: TestHost, make_user: UserFactory) -> Idler | None:
    """A server started once and never used again, for the culler test (test_hub.py): it
    idles while the other tests run, rather than that test waiting out the idle timeout
    alone, while a thread looks at its user's home page as they would. None when that
    test is not run."""
    if not any(item.name == IDLE_TEST for item in request.session.items):
        return None
    client = make_user(IDLER)
    client.start_server(IDLER)
    assert client.server_state(IDLER)["ready"], "the idle server did not start"
    idle = Idler(time.monotonic())
    threading.Thread(target=idle.watch, args=(host, client), daemon=True).start()
    # Beside it, a server whose kernel runs one long cell that prints nothing, started with
    # no browser left watching: busy, so never idle (the images' gpuhub_busy extension).
    # The culler test checks that it outlives the idle one.
    busy = make_user(BUSY)
    busy.start_server(BUSY)
    with busy.channels(BUSY, busy.start_kernel(BUSY)) as ws:
        ws.send(json.dumps(execute_request("import time; time.sleep(100000)")))
    return idle


@pytest.fixture(scope="module", autouse=True)
def _idler_from_the_first_module_after_the_backups(request: pytest.FixtureRequest) -> None:
    if Path(str(request.path)).name != BEFORE_IDLER:
        request.getfixturevalue("idler")
