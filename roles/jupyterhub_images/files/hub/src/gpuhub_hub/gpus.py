"""GPU allocation: which GPUs (or MIG slices) a new server gets.

Holders are read from Docker itself: every user container that got GPUs exclusively
carries the label `gpuhub.gpus` listing their UUIDs, so there is no second record to
drift. Spawns that need GPUs take one lock from reading the holders until their
container exists, so two concurrent spawns never get the same GPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from docker.types import DeviceRequest

LABEL = "gpuhub.gpus"  # devices held exclusively
SHARED_LABEL = "gpuhub.gpus.shared"  # devices visible to a `shared` server (held by no one)
GONE = ("exited", "dead", "removing")
Lister = Callable[[], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class MigDevice:
    uuid: str
    profile: str  # e.g. 1g.10gb
    index: int = 0


@dataclass(frozen=True)
class Gpu:
    uuid: str
    index: int = 0
    name: str = ""
    memory_mib: int = 0
    mig_devices: tuple[MigDevice, ...] = ()
    # Reported by the gpu_facts role; informational.
    mig_mode: str = ""
    driver_version: str = ""


@dataclass(frozen=True)
class GpuPolicy:
    """none: no GPU; shared: every GPU visible, held by no one; exclusive: `count` whole
    GPUs of one's own; mig: `count` MIG slices of `mig_profile`."""

    mode: Literal["none", "shared", "exclusive", "mig"] = "none"
    count: int = 1
    mig_profile: str = ""


class NoGpuFree(RuntimeError):
    """Not enough free GPUs; the message is meant for the user."""


@dataclass(frozen=True)
class Allocation:
    device_ids: tuple[str, ...]
    exclusive: bool

    def device_requests(self) -> list[DeviceRequest]:
        if not self.device_ids:
            return []
        return [
            DeviceRequest(driver="nvidia", device_ids=list(self.device_ids), capabilities=[["gpu"]])
        ]

    def labels(self) -> dict[str, str]:
        if not self.device_ids:
            return {}
        return {(LABEL if self.exclusive else SHARED_LABEL): ",".join(self.device_ids)}


def held_devices(containers: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Device UUID -> holder, from `docker ps -a` records (the low-level API's dicts)."""
    held: dict[str, str] = {}
    for container in containers:
        labels = container.get("Labels") or {}
        if LABEL not in labels or container.get("State") in GONE:
            continue
        holder = labels.get("gpuhub.user") or (container.get("Names") or ["?"])[0].lstrip("/")
        for device in filter(None, labels[LABEL].split(",")):
            held[device] = holder
    return held


def _devices(policy: GpuPolicy, gpus: Sequence[Gpu]) -> list[str]:
    if policy.mode == "mig":
        return [m.uuid for g in gpus for m in g.mig_devices if m.profile == policy.mig_profile]
    return [g.uuid for g in gpus]


def choose(
    policy: GpuPolicy, gpus: Sequence[Gpu], held: dict[str, str], fallback: str = ""
) -> Allocation:
    """The devices a new server gets under `policy`, given what is held."""
    if policy.mode == "none":
        return Allocation((), exclusive=False)
    devices = _devices(policy, gpus)
    if policy.mode == "shared":
        return Allocation(tuple(devices), exclusive=False)
    free = [d for d in devices if d not in held]
    if len(free) >= policy.count:
        return Allocation(tuple(free[: policy.count]), exclusive=True)
    what = f"MIG {policy.mig_profile} slices" if policy.mode == "mig" else "GPUs"
    instead = f" Start the '{fallback}' profile instead, or try again later." if fallback else ""
    raise NoGpuFree(
        f"No {what} free: {len(devices) - len(free)} of {len(devices)} are in use and this "
        f"profile needs {policy.count}.{instead}"
    )


class GpuAllocator:
    """Reserve devices for one spawn at a time: hold the lock until the container exists."""

    def __init__(self, gpus: Sequence[Gpu]) -> None:
        self.gpus = tuple(gpus)
        self.lock = asyncio.Lock()

    @asynccontextmanager
    async def reserve(
        self, policy: GpuPolicy, list_containers: Lister, fallback: str = ""
    ) -> AsyncIterator[Allocation]:
        """`list_containers()` returns Docker's container records. Create the container
        inside the `async with` block, so the next spawn sees its label."""
        async with self.lock:
            yield choose(policy, self.gpus, held_devices(await list_containers()), fallback)
