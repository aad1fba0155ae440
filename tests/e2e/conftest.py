"""End-to-end fixtures: a converged test host (GPUHUB_E2E_HOST, set by Molecule verify)
and hub clients logged in as its users."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests
from hubclient import HubClient
from testhost import TestHost, UserFactory, new_password

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
def hub_url(host: TestHost) -> str:
    url = f"http://{host.address}:8000"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/hub/health", timeout=5).status_code == 200:
                return url
        except requests.RequestException:
            pass
        time.sleep(2)
    raise AssertionError(f"hub at {url} does not answer")


@pytest.fixture(scope="session")
def admin(hub_url: str) -> HubClient:
    """The first admin: signs up (admin names are approved on sign-up) and logs in."""
    client = HubClient(hub_url)
    password = new_password()
    client.signup("admin", password)
    assert client.login("admin", password), "admin cannot log in after signing up"
    client.create_token("e2e admin")
    return client


@pytest.fixture(scope="session")
def make_user(hub_url: str, admin: HubClient) -> UserFactory:
    """Sign up, approve and log in a user; returns their client with an API token."""

    def make(name: str) -> HubClient:
        client = HubClient(hub_url)
        password = new_password()
        client.signup(name, password)
        admin.approve(name)
        assert client.login(name, password), f"{name} cannot log in after approval"
        client.create_token()
        return client

    return make
