"""GPU allocation: which GPUs (or MIG slices) a new server gets.

Holders are read from Docker itself: every user container that got GPUs exclusively
carries the label `gpuhub.gpus` listing their UUIDs, so there is no second record to
drift. Spawns that need GPUs take one lock from reading the holders until their
container exists, so two concurrent spawns never get the same GPU.

One ledger covers every pool: a whole GPU held blocks its MIG slices and a held slice
blocks its GPU; a GPU in MIG mode is never handed out whole; `shared` servers see only
GPUs no one holds. A container stuck in `created` (the hub died between create and
start, or a start was cancelled) stops holding its GPUs once it is older than the
spawn timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .quotas import Charge

USER_LABEL = "gpuhub.user"  # whose server a container is
SERVER_LABEL = "gpuhub.server"  # which of their servers ("": the default one)
LABEL = "gpuhub.gpus"  # devices held exclusively
SHARED_LABEL = "gpuhub.gpus.shared"  # devices visible to a `shared` server (held by no one)
DESCRIPTION_LABEL = "gpuhub.gpus.description"  # what a server holds, in words (status.yml)
GROUPS_LABEL = "gpuhub.groups"  # the user's groups when the server started (quotas.py)
GONE = ("exited", "dead", "removing")
CREATED = "created"  # made but never started: holds its GPUs only while it may still start
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
    # Cluster mode: the Swarm node (its hostname) the GPU is on; '' on one host.
    node: str = ""


@dataclass(frozen=True)
class GpuPolicy:
    """none: no GPU; shared: every whole GPU that no one holds, visible and held by no
    one; exclusive: `count` whole GPUs of one's own; mig: `count` MIG slices of
    `mig_profile`. `model` (a GPU's name, as nvidia-smi gives it): only GPUs of that
    model ('' any)."""

    mode: Literal["none", "shared", "exclusive", "mig"] = "none"
    count: int = 1
    mig_profile: str = ""
    model: str = ""


@dataclass(frozen=True)
class Holding:
    """One server's devices, held exclusively, with its user and their groups."""

    user: str
    groups: frozenset[str]
    devices: tuple[str, ...]


class NoGpuFree(RuntimeError):
    """Not enough free GPUs; the message is meant for the user."""


@dataclass(frozen=True)
class Allocation:
    device_ids: tuple[str, ...]
    exclusive: bool

    def labels(self) -> dict[str, str]:
        if not self.device_ids:
            return {}
        return {(LABEL if self.exclusive else SHARED_LABEL): ",".join(self.device_ids)}


def describe(device_ids: Sequence[str], gpus: Sequence[Gpu]) -> str:
    """What a server holds, for its user: "NVIDIA H100 80GB HBM3 GPU-1234; NVIDIA A100
    MIG 1g.5gb MIG-abcd" (device UUIDs as the allocator handed them out)."""
    names: dict[str, str] = {}
    for gpu in gpus:
        names[gpu.uuid] = f"{gpu.name or 'GPU'} {gpu.uuid}"
        for mig in gpu.mig_devices:
            names[mig.uuid] = f"{gpu.name or 'GPU'} MIG {mig.profile} {mig.uuid}"
    return "; ".join(names.get(device, device) for device in device_ids)


def _live(
    containers: Sequence[dict[str, Any]], stale_after: float, now: float | None
) -> Iterator[tuple[dict[str, str], str, tuple[str, ...]]]:
    """(labels, holder, devices) of every container that holds devices exclusively."""
    now = time.time() if now is None else now
    for container in containers:
        labels = container.get("Labels") or {}
        state = container.get("State")
        if LABEL not in labels or state in GONE:
            continue
        if state == CREATED and stale_after and now - container.get("Created", now) > stale_after:
            continue
        holder = labels.get(USER_LABEL) or (container.get("Names") or ["?"])[0].lstrip("/")
        yield labels, holder, devices_held(labels)


def devices_held(labels: dict[str, str]) -> tuple[str, ...]:
    """The devices a container's labels say it holds exclusively."""
    return tuple(filter(None, labels.get(LABEL, "").split(",")))


def held_devices(
    containers: Sequence[dict[str, Any]], stale_after: float = 0, now: float | None = None
) -> dict[str, str]:
    """Device UUID -> holder, from `docker ps -a` records (the low-level API's dicts).

    A container in state `created` older than `stale_after` seconds holds nothing: it
    was never started and never will be (0: such containers always hold).
    """
    return {
        device: holder
        for _, holder, devices in _live(containers, stale_after, now)
        for device in devices
    }


def holdings(
    containers: Sequence[dict[str, Any]], stale_after: float = 0, now: float | None = None
) -> list[Holding]:
    """Each holding server's user, groups (at its start) and devices, for the quotas."""
    return [
        Holding(holder, frozenset(filter(None, labels.get(GROUPS_LABEL, "").split(","))), devices)
        for labels, holder, devices in _live(containers, stale_after, now)
    ]


def in_mig_mode(gpu: Gpu) -> bool:
    """Such a GPU is handed out only as slices, so a held slice always blocks it whole."""
    return bool(gpu.mig_devices) or gpu.mig_mode.lower() == "enabled"


def pool(policy: GpuPolicy, gpus: Sequence[Gpu], held: dict[str, str]) -> tuple[int, list[str]]:
    """(how many devices the policy's pool has, the free ones in order)."""
    gpus = [g for g in gpus if not policy.model or g.name == policy.model]
    if policy.mode == "mig":
        pool = [(g, m.uuid) for g in gpus for m in g.mig_devices if m.profile == policy.mig_profile]
        free = [uuid for g, uuid in pool if uuid not in held and g.uuid not in held]
        return len(pool), free
    whole = [g for g in gpus if not in_mig_mode(g)]
    return len(whole), [g.uuid for g in whole if g.uuid not in held]


def choose(
    policy: GpuPolicy, gpus: Sequence[Gpu], held: dict[str, str], fallback: str = ""
) -> Allocation:
    """The devices a new server gets under `policy`, given what is held."""
    if policy.mode == "none":
        return Allocation((), exclusive=False)
    total, free = pool(policy, gpus, held)
    shared = policy.mode == "shared"
    if len(free) >= needed_devices(policy):
        return Allocation(tuple(free if shared else free[: policy.count]), exclusive=not shared)
    raise NoGpuFree(shortage(policy, total, len(free), fallback))


def needed_devices(policy: GpuPolicy) -> int:
    return 1 if policy.mode == "shared" else policy.count


def shortage(
    policy: GpuPolicy, total: int, free: int, fallback: str, where: str = "", more: str = ""
) -> str:
    """What a user is told when `policy` finds too few of `total` devices free (`where`:
    " in the cluster"...; `more`: a sentence to add before the way out)."""
    what = f"MIG {policy.mig_profile} slices" if policy.mode == "mig" else "GPUs"
    what += f" of model {policy.model}" if policy.model else ""
    instead = f" Start the '{fallback}' profile instead, or try again later." if fallback else ""
    return (
        f"No {what} free: {total - free} of {total}{where} are in use and this "
        f"profile needs {needed_devices(policy)}.{more}{instead}"
    )


class GpuAllocator:
    """Reserve devices for one spawn at a time: hold the lock until the container exists."""

    def __init__(self, gpus: Sequence[Gpu], stale_after: float = 0) -> None:
        self.gpus = tuple(gpus)
        # Seconds after which a never-started (`created`) container holds nothing.
        self.stale_after = stale_after
        self.lock = asyncio.Lock()

    @asynccontextmanager
    async def reserve(
        self,
        policy: GpuPolicy,
        list_containers: Lister,
        fallback: str = "",
        charge: Charge | None = None,
    ) -> AsyncIterator[Allocation]:
        """`list_containers()` returns Docker's container records. Create the container
        inside the `async with` block, so the next spawn sees its label. With `charge`,
        a spawn that would pass a group's GPU quota is refused first (QuotaExceeded)."""
        async with self.lock:
            containers = await list_containers()
            if charge is not None and policy.mode in ("exclusive", "mig"):
                charge.check(needed_devices(policy), holdings(containers, self.stale_after))
            held = held_devices(containers, self.stale_after)
            yield choose(policy, self.gpus, held, fallback)
