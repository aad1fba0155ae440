"""scripts/prereqs.sh on a bare Debian 12 system without root: it stops at once and names
every missing package (run in a container of the test hosts' Debian base image, which has
python3 and nothing else the suite needs)."""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts/prereqs.sh"
BASE = "gpuhub-test/base:bookworm"  # built by molecule/testhost/build.sh (make testhost)


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    try:
        engine = docker.from_env()
        engine.images.get(BASE)
    except docker.errors.DockerException as err:
        pytest.skip(f"needs a Docker engine and {BASE} (make testhost): {err}")
    return engine


def test_without_root_it_names_what_is_missing_and_stops(client: docker.DockerClient) -> None:
    started = time.monotonic()
    output = client.containers.run(
        BASE,
        ["sh", "-c", "/prereqs.sh; echo exit=$?"],
        user="65534:65534",
        volumes={str(SCRIPT): {"bind": "/prereqs.sh", "mode": "ro"}},
        network_mode="none",
        stderr=True,
        remove=True,
    ).decode()
    assert time.monotonic() - started < 30, "it should stop in seconds"
    assert "exit=1" in output, output
    (line,) = [line for line in output.splitlines() if line.startswith("prereqs: missing:")]
    wanted = [
        "make",
        "debootstrap",
        "testssl.sh",
        "slapd",
        "glewlwyd",
        "sqlite3",
        "chromium",
        "chromium-driver",
        "docker.io",
    ]
    assert line.split(": ", 2)[2].split() == wanted
    assert f"sudo apt-get install {' '.join(wanted)}" in output
