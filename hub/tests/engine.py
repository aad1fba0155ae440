"""Containers on the local Docker engine that stand for user servers (labelled as the
hub labels them): GPU holders for the allocator, running servers for the home checks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
from gpuhub_hub.gpus import GROUPS_LABEL, LABEL, Allocation

IMAGES = ("gpuhub-testhost:latest", "gpuhub-test/base:bookworm")
TEST_LABEL = "gpuhub.test"


def engine_or_skip() -> Iterator[tuple[docker.APIClient, str]]:
    """The local engine and an image to run (skipped without them: a failure in CI)."""
    try:
        client = docker.APIClient(timeout=60)
        client.ping()
    except docker.errors.DockerException as err:
        pytest.skip(f"no Docker engine: {err}")
    image = next((i for i in IMAGES if client.images(name=i)), None)
    if image is None:
        pytest.skip("no local image to run holder containers (run `make testhost`)")
    yield client, image
    for container in client.containers(all=True, filters={"label": TEST_LABEL}):
        client.remove_container(container["Id"], force=True)


class Holders:
    """Containers labelled like user servers holding GPUs."""

    def __init__(self, engine: tuple[docker.APIClient, str]) -> None:
        self.client, self.image = engine
        self.run = uuid.uuid4().hex[:8]

    def hold(
        self, user: str, devices: tuple[str, ...], start: bool = True, groups: str = ""
    ) -> str:
        """A container labelled with `devices` (and the user's `groups`, comma-separated):
        started, or (start=False) left `created` as after a hub crash between create and
        start."""
        labels = {
            TEST_LABEL: self.run,
            "gpuhub.user": user,
            GROUPS_LABEL: groups,
            **Allocation(devices, True).labels(),
        }
        # No network: an address on Docker's default bridge is one a Molecule test host
        # restarting meanwhile (drill 9, in the other lane of make test) could come back
        # without.
        container = self.client.create_container(
            self.image,
            ["sleep", "600"],
            labels=labels,
            name=f"gpuhub-test-{self.run}-{user}-{uuid.uuid4().hex[:6]}",
            host_config=self.client.create_host_config(network_mode="none"),
        )
        if start:
            self.client.start(container["Id"])
        return container["Id"]

    async def list(self) -> list[dict[str, Any]]:
        filters = {"label": [LABEL, f"{TEST_LABEL}={self.run}"]}
        return await asyncio.to_thread(self.client.containers, all=True, filters=filters)
