"""Logins do not stall the hub: while users log in, the hub keeps answering (a live hub,
real NativeAuthenticator accounts, real bcrypt hashes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import pytest
import requests
from e2e.hubclient import HubClient
from gpuhub_hub.admin.hubapi import HubAPI
from livehub import LiveHub, live_hub

USERS = [f"loop{i}" for i in range(8)]
PASSWORD = "a-long-enough-password"  # noqa: S105


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    with live_hub(tmp_path_factory.mktemp("hub")) as running:
        api = HubAPI(f"{running.url}/hub/api", "t" * 64)
        for name in USERS:
            api.put_account(name, PASSWORD, True)
            api.create_user(name, admin=False)
        yield running


def one_hash_seconds() -> float:
    stored = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt())
    started = time.perf_counter()
    bcrypt.checkpw(PASSWORD.encode(), stored)
    return time.perf_counter() - started


def test_the_hub_answers_while_users_log_in(hub: LiveHub) -> None:
    delays: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            started = time.perf_counter()
            requests.get(f"{hub.url}/hub/health", timeout=30).raise_for_status()
            delays.append(time.perf_counter() - started)
            time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        with ThreadPoolExecutor(len(USERS)) as pool:
            logged_in = list(pool.map(lambda n: HubClient(hub.url).login(n, PASSWORD), USERS))
    finally:
        done.set()
        poller.join()
    assert all(logged_in)
    hash_time = one_hash_seconds()
    # On the event loop, a health check that arrives during a login waits for the whole
    # hash, and eight logins queue eight hashes (measured: a check waited 5.6 to 9.3 hashes); off
    # the loop it waits for none. Two hashes' worth of margin: on a loaded machine (make
    # test runs two lanes side by side) a check may be held up by the scheduler alone.
    assert max(delays) < 2 * hash_time, (max(delays), hash_time, len(delays))
    assert not HubClient(hub.url).login(USERS[0], "wrong-" + PASSWORD)  # control: it checks
