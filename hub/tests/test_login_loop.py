"""Logins, rosters and commits do not stall the hub: while users log in or accounts arrive,
the hub keeps answering (a live hub, real NativeAuthenticator accounts, real bcrypt
hashes), and its database commits to a write-ahead log."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import bcrypt
import pytest
import requests
from e2e.hubclient import HubClient
from gpuhub_hub import database
from gpuhub_hub.admin.hubapi import HubAPI
from livehub import METRICS_TOKEN, LiveHub, live_hub
from sqlalchemy import create_engine

USERS = [f"loop{i}" for i in range(8)]
PASSWORD = "a-long-enough-password"  # noqa: S105
CHECKS = re.compile(r"^gpuhub_password_check_seconds_(sum|count) ([0-9.e+-]+)$", re.M)


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


def slowest_health_check(hub: LiveHub, action: Callable[[str], object], names: list[str]) -> float:
    """Run action for every name side by side while polling /hub/health: the slowest answer."""
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
        with ThreadPoolExecutor(len(names)) as pool:
            results = list(pool.map(action, names))
    finally:
        done.set()
        poller.join()
    assert all(results)
    return max(delays)


# On the event loop, a health check that arrives during a hash waits for the whole hash,
# and eight requests queue eight hashes (measured: a check waited 5.6 to 9.3 hashes); off
# the loop it waits for none. Two hashes' worth of margin: on a loaded machine (make test
# runs two lanes side by side) a check may be held up by the scheduler alone.


def test_the_hub_answers_while_users_log_in(hub: LiveHub) -> None:
    slowest = slowest_health_check(hub, lambda n: HubClient(hub.url).login(n, PASSWORD), USERS)
    hash_time = one_hash_seconds()
    assert slowest < 2 * hash_time, (slowest, hash_time)
    assert not HubClient(hub.url).login(USERS[0], "wrong-" + PASSWORD)  # control: it checks


def password_checks(hub: LiveHub) -> dict[str, float]:
    """The sum and count of gpuhub_password_check_seconds on the hub's /hub/metrics."""
    text = requests.get(
        f"{hub.url}/hub/metrics", headers={"Authorization": f"token {METRICS_TOKEN}"}, timeout=30
    ).text
    return {kind: float(value) for kind, value in CHECKS.findall(text)}


def test_the_hub_reports_how_long_password_checks_take(hub: LiveHub) -> None:
    """Each login's check is counted and timed (bench/load.py splits a login's time by it):
    a check cannot take less than the hash it waits for."""
    before = password_checks(hub)
    assert HubClient(hub.url).login(USERS[1], PASSWORD)
    assert not HubClient(hub.url).login(USERS[1], "wrong-" + PASSWORD)
    after = password_checks(hub)
    assert after["count"] - before["count"] == 2
    assert after["sum"] - before["sum"] >= 2 * 0.5 * one_hash_seconds(), (before, after)


def test_the_hub_answers_while_a_roster_arrives(hub: LiveHub) -> None:
    """gpuhub-admin sync and users.yml add accounts through the accounts API: each new
    password is hashed, each unchanged one checked."""
    api = HubAPI(f"{hub.url}/hub/api", "t" * 64)
    names = [f"roster{i}" for i in range(8)]
    slowest = slowest_health_check(hub, lambda n: api.put_account(n, PASSWORD, True), names)
    assert slowest < 2 * one_hash_seconds(), slowest
    again = slowest_health_check(hub, lambda n: api.put_account(n, PASSWORD, True), names)
    assert again < 2 * one_hash_seconds(), again
    api.create_user(names[0], admin=False)
    assert HubClient(hub.url).login(names[0], PASSWORD)  # the accounts were really made


def test_the_hub_commits_to_a_write_ahead_log(hub: LiveHub) -> None:
    """Commits append to a log instead of waiting for fsync of the database (database.py)."""
    path = hub.root / "state" / "jupyterhub.sqlite"
    assert Path(f"{path}-wal").exists()  # the hub holds it open
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_each_hub_connection_syncs_only_at_checkpoints(tmp_path: Path) -> None:
    database.use_write_ahead_log()
    database.use_write_ahead_log()  # once is enough: a second call adds nothing
    engine = create_engine(f"sqlite:///{tmp_path}/hub.sqlite")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with closing(sqlite3.connect(tmp_path / "plain.sqlite")) as plain:  # control: the default
        assert plain.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
