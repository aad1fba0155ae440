"""The GPU allocator against a real Docker engine (no GPU needed): labelled containers
stand for the servers holding GPUs, exactly as the hub's own user containers do."""

from __future__ import annotations

import asyncio
import time

import docker
import pytest
from engine import Holders
from gpuhub_hub.gpus import (
    LABEL,
    SHARED_LABEL,
    Allocation,
    Gpu,
    GpuAllocator,
    GpuPolicy,
    MigDevice,
    NoGpuFree,
    choose,
    describe,
)
from gpuhub_hub.spawner import device_requests

GPUS = tuple(Gpu(uuid=f"GPU-{i}", index=i, name="NVIDIA H100 80GB HBM3") for i in range(4))
A100 = Gpu(
    uuid="GPU-a100",
    mig_devices=(MigDevice("MIG-a", "1g.5gb", 0), MigDevice("MIG-b", "1g.5gb", 1)),
)


def test_device_requests_name_the_chosen_gpus() -> None:
    allocation = choose(GpuPolicy("exclusive", 2), GPUS, {})
    assert allocation.device_ids == ("GPU-0", "GPU-1")
    assert allocation.labels() == {LABEL: "GPU-0,GPU-1"}
    config = docker.APIClient().create_host_config(device_requests=device_requests(allocation))
    assert config["DeviceRequests"] == [
        {
            "Driver": "nvidia",
            "Count": 0,
            "DeviceIDs": ["GPU-0", "GPU-1"],
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]
    shared = choose(GpuPolicy("shared"), GPUS, {})
    assert shared.device_ids == tuple(g.uuid for g in GPUS)
    assert shared.labels() == {SHARED_LABEL: "GPU-0,GPU-1,GPU-2,GPU-3"}
    assert device_requests(choose(GpuPolicy("none"), GPUS, {})) == []


def test_holders_exhaustion_and_release(
    engine: tuple[docker.APIClient, str], holders: Holders
) -> None:
    allocator = GpuAllocator(GPUS)

    async def allocate() -> Allocation:
        async with allocator.reserve(GpuPolicy("exclusive"), holders.list, "CPU only") as got:
            return got

    for i, user in enumerate(("alice", "bob", "carol")):
        holders.hold(user, (f"GPU-{i}",))
    assert asyncio.run(allocate()).device_ids == ("GPU-3",)
    dave = holders.hold("dave", ("GPU-3",))
    with pytest.raises(NoGpuFree) as refused:
        asyncio.run(allocate())
    assert str(refused.value) == (
        "No GPUs free: 4 of 4 are in use and this profile needs 1. "
        "Start the 'CPU only' profile instead, or try again later."
    )
    engine[0].stop(dave, timeout=1)  # dave's server stops: GPU-3 is free again
    assert asyncio.run(allocate()).device_ids == ("GPU-3",)


def test_concurrent_spawns_never_share_a_gpu(holders: Holders) -> None:
    allocator = GpuAllocator(GPUS[:3])

    async def spawn(user: str) -> tuple[str, ...] | str:
        try:
            async with allocator.reserve(GpuPolicy("exclusive"), holders.list) as got:
                await asyncio.sleep(0.05)  # the container is created while others wait
                await asyncio.to_thread(holders.hold, user, got.device_ids)
                return got.device_ids
        except NoGpuFree:
            return "refused"

    async def main() -> list[tuple[str, ...] | str]:
        return await asyncio.gather(*(spawn(f"user{i}") for i in range(5)))

    results = asyncio.run(main())
    granted = [r for r in results if r != "refused"]
    assert sorted(granted) == [("GPU-0",), ("GPU-1",), ("GPU-2",)]
    assert results.count("refused") == 2


def test_mig_slices_are_allocated_one_by_one(holders: Holders) -> None:
    allocator = GpuAllocator((A100,))
    policy = GpuPolicy("mig", 1, "1g.5gb")

    async def allocate() -> Allocation:
        async with allocator.reserve(policy, holders.list) as got:
            return got

    first = asyncio.run(allocate())
    assert first.device_ids == ("MIG-a",)
    holders.hold("erin", first.device_ids)
    assert asyncio.run(allocate()).device_ids == ("MIG-b",)
    holders.hold("frank", ("MIG-b",))
    with pytest.raises(NoGpuFree, match=r"No MIG 1g\.5gb slices free: 2 of 2 are in use"):
        asyncio.run(allocate())


# A host with two whole GPUs and one in MIG mode (two 1g.5gb slices).
MIXED = (*GPUS[:2], A100)


def allocate(allocator: GpuAllocator, policy: GpuPolicy, holders: Holders) -> Allocation:
    async def run() -> Allocation:
        async with allocator.reserve(policy, holders.list) as got:
            return got

    return asyncio.run(run())


def test_one_ledger_across_whole_mig_and_shared_pools(holders: Holders) -> None:
    allocator = GpuAllocator(MIXED)
    exclusive, mig, shared = (
        GpuPolicy("exclusive"),
        GpuPolicy("mig", 1, "1g.5gb"),
        GpuPolicy("shared"),
    )
    # A GPU in MIG mode is never handed out whole, held or not.
    holders.hold("alice", ("GPU-0",))
    holders.hold("bob", ("GPU-1",))
    with pytest.raises(NoGpuFree, match="No GPUs free: 2 of 2 are in use"):
        allocate(allocator, exclusive, holders)
    # Shared servers see only GPUs no one holds: none now.
    with pytest.raises(NoGpuFree, match="No GPUs free"):
        allocate(allocator, shared, holders)
    # A whole-GPU hold (a container from before MIG was enabled) blocks its slices.
    holders.hold("carol", ("GPU-a100",))
    with pytest.raises(NoGpuFree, match=r"No MIG 1g\.5gb slices free: 2 of 2 are in use"):
        allocate(allocator, mig, holders)


def test_a_held_slice_blocks_its_gpu_and_shared_sees_only_free_gpus(holders: Holders) -> None:
    gpu_with_slices = Gpu(uuid="GPU-x", mig_devices=(MigDevice("MIG-x", "1g.5gb"),))
    held = {"MIG-x": "dave"}
    assert choose(GpuPolicy("shared"), (*GPUS[:2], gpu_with_slices), held).device_ids == (
        "GPU-0",
        "GPU-1",
    )
    holders.hold("erin", ("GPU-0",))
    allocator = GpuAllocator((*GPUS[:2], gpu_with_slices))
    assert allocate(allocator, GpuPolicy("shared"), holders).device_ids == ("GPU-1",)
    assert allocate(allocator, GpuPolicy("exclusive"), holders).device_ids == ("GPU-1",)


def test_a_container_stuck_in_created_stops_holding_after_the_start_timeout(
    holders: Holders,
) -> None:
    holders.hold("frank", ("GPU-0",), start=False)  # the hub died before starting it
    allocator = GpuAllocator(GPUS[:1], stale_after=2)
    with pytest.raises(NoGpuFree):  # within the start timeout it may still start
        allocate(allocator, GpuPolicy("exclusive"), holders)
    time.sleep(3)
    assert allocate(allocator, GpuPolicy("exclusive"), holders).device_ids == ("GPU-0",)
    # Control: a started container keeps holding however old it is.
    holders.hold("gina", ("GPU-0",))
    with pytest.raises(NoGpuFree):
        allocate(allocator, GpuPolicy("exclusive"), holders)


def test_a_server_is_told_the_model_and_uuid_or_mig_slice_it_holds() -> None:
    held = describe(("GPU-1", "MIG-b", "GPU-unknown"), (*GPUS, A100))
    assert held == ("NVIDIA H100 80GB HBM3 GPU-1; GPU MIG 1g.5gb MIG-b; GPU-unknown")


def test_a_profile_for_one_model_gets_only_gpus_of_that_model() -> None:
    l4 = Gpu(uuid="GPU-l4", index=4, name="NVIDIA L4")
    gpus = (*GPUS, l4)
    assert choose(GpuPolicy("exclusive", model="NVIDIA L4"), gpus, {}).device_ids == ("GPU-l4",)
    with pytest.raises(NoGpuFree, match="No GPUs of model NVIDIA L4 free: 1 of 1 are in use"):
        choose(GpuPolicy("exclusive", model="NVIDIA L4"), gpus, {"GPU-l4": "alice"})
    # Any model: the H100s first, the L4 when they are held.
    held = {g.uuid: "bob" for g in GPUS}
    assert choose(GpuPolicy("exclusive"), gpus, held).device_ids == ("GPU-l4",)
