"""How often the hub polls what a spawn waits on (polling.py), and the Swarm task wait that
follows it (cluster.wait_task), through the real docker client against a stand-in for the
Engine API's task list whose task starts running late. Swarm itself runs in the Molecule
scenario `cluster`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import docker
import pytest
from gpuhub_hub.cluster import wait_task
from gpuhub_hub.polling import next_step
from standin import json_server

SERVICE = "svc1"
CREATED = "2026-12-05T09:06:24.101198179Z"


def test_waits_stay_a_small_share_of_the_time_waited() -> None:
    # Literals: 0.05 s at first, 5 % of the time waited, never more than 0.5 s.
    assert next_step(0.0) == 0.05
    assert next_step(1.0) == 0.05
    assert next_step(4.0) == pytest.approx(0.2)
    assert next_step(600.0) == 0.5


@pytest.fixture
def late_task() -> Iterator[docker.APIClient]:
    """The real docker client, against an Engine API whose task list (GET /v1.41/tasks)
    has one task of SERVICE, `starting` until 1 s after the first question, then `running`."""
    asked_first: list[float] = []  # when the first question came

    def tasks(_request: BaseHTTPRequestHandler) -> object:
        if not asked_first:
            asked_first.append(time.monotonic())
        late = time.monotonic() - asked_first[0] >= 1.0
        status = {"State": "running" if late else "starting"}
        return [{"ID": "t1", "ServiceID": SERVICE, "CreatedAt": CREATED, "Status": status}]

    server = json_server(tasks)
    client = docker.APIClient(base_url=f"http://127.0.0.1:{server.server_port}", version="1.41")
    yield client
    client.close()
    server.shutdown()


def test_a_task_that_runs_late_is_seen_within_a_step(late_task: docker.APIClient) -> None:
    start = time.monotonic()
    state, error = wait_task(late_task, SERVICE, {"running"}, timeout=10)
    took = time.monotonic() - start
    assert (state, error) == ("running", "")
    # Running from 1.0 s on: seen within one step (0.05 s here) and the questions' time;
    # steps of 0.2 s growing by half saw it at 1.625 s.
    assert 1.0 <= took <= 1.0 + 0.25, took
