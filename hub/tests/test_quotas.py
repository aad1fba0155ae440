"""Group GPU quotas against a real Docker engine (no GPU needed): labelled containers
stand for the servers holding GPUs, with their users' groups, as the hub labels them."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import docker
import pytest
from engine import Holders
from gpuhub_hub.gpus import Allocation, Gpu, GpuAllocator, GpuPolicy
from gpuhub_hub.quotas import Charge, GpuQuota, QuotaExceeded, load
from gpuhub_hub.settings import SettingsError

GPUS = tuple(Gpu(uuid=f"GPU-{i}", index=i, name="NVIDIA H100 80GB HBM3") for i in range(6))


def spawn(
    allocator: GpuAllocator,
    holders: Holders,
    user: str,
    groups: tuple[str, ...],
    quotas: dict[str, GpuQuota],
    count: int = 1,
) -> Allocation:
    async def reserve() -> Allocation:
        charge = Charge(user, groups, quotas)
        policy = GpuPolicy("exclusive", count)
        async with allocator.reserve(policy, holders.list, "", charge) as got:
            return got

    return asyncio.run(reserve())


def test_a_group_at_its_max_gpus_is_refused_naming_who_holds_them(
    engine: tuple[docker.APIClient, str], holders: Holders
) -> None:
    quotas = {"students": GpuQuota(max_gpus=2)}
    allocator = GpuAllocator(GPUS)
    holders.hold("alice", ("GPU-0",), groups="students")
    bob = holders.hold("bob", ("GPU-1",), groups="students,physics")
    with pytest.raises(QuotaExceeded) as refused:
        spawn(allocator, holders, "carol", ("students",), quotas)
    assert str(refused.value) == (
        "GPU quota reached: group students may hold 2 GPUs at once (max_gpus) and its "
        "members hold 2 (alice 1, bob 1); this profile needs 1. Try again when one of them "
        "stops a GPU server."
    )
    # Another group is not held back, and free GPUs were there all along.
    assert spawn(allocator, holders, "dave", ("staff",), quotas).device_ids == ("GPU-2",)
    engine[0].stop(bob, timeout=1)  # bob's server stops: the group has room again
    assert spawn(allocator, holders, "carol", ("students",), quotas).device_ids == ("GPU-1",)


def test_max_gpus_per_user_counts_every_server_of_the_user(holders: Holders) -> None:
    quotas = {"students": GpuQuota(max_gpus_per_user=2)}
    allocator = GpuAllocator(GPUS)
    holders.hold("alice", ("GPU-0",), groups="students")
    with pytest.raises(QuotaExceeded) as refused:
        spawn(allocator, holders, "alice", ("students",), quotas, count=2)
    assert str(refused.value) == (
        "GPU quota reached: group students allows 2 GPUs per user at once "
        "(max_gpus_per_user), you hold 1 and this profile needs 2. Stop one of your GPU "
        "servers first."
    )
    assert spawn(allocator, holders, "alice", ("students",), quotas).device_ids == ("GPU-1",)
    holders.hold("alice", ("GPU-1",), groups="students")
    with pytest.raises(QuotaExceeded):
        spawn(allocator, holders, "alice", ("students",), quotas)
    # Each user has their own allowance; a user in no quota's group has none.
    assert spawn(allocator, holders, "bob", ("students",), quotas, count=2).device_ids == (
        "GPU-2",
        "GPU-3",
    )
    assert spawn(allocator, holders, "alice", (), quotas).device_ids == ("GPU-2",)


def test_every_quota_of_every_group_of_the_user_applies(holders: Holders) -> None:
    quotas = {"students": GpuQuota(max_gpus=4), "course-x": GpuQuota(max_gpus=1)}
    allocator = GpuAllocator(GPUS)
    holders.hold("alice", ("GPU-0",), groups="course-x,students")
    with pytest.raises(QuotaExceeded, match="group course-x may hold 1 GPU at once"):
        spawn(allocator, holders, "bob", ("course-x", "students"), quotas)
    assert spawn(allocator, holders, "carol", ("students",), quotas).device_ids == ("GPU-1",)


def test_quotas_are_read_from_their_file_as_it_is_now(tmp_path: Path) -> None:
    path = tmp_path / "gpu-quotas.yaml"
    assert load(path) == {}
    assert load("") == {}
    path.write_text("students: {max_gpus: 2, max_gpus_per_user: 1}\n")
    assert load(path) == {"students": GpuQuota(max_gpus=2, max_gpus_per_user=1)}
    path.write_text("students: {max_gpus: 3}\n")  # the admin changed it: read again
    assert load(path) == {"students": GpuQuota(max_gpus=3)}
    for text, problem in (
        ("students: {max_gpus: -1}", "students.max_gpus: -1 must be 0 or more"),
        ("students: {max_gpu: 1}", "students: unknown key(s) max_gpu"),
        ("students: {max_gpus: two}", "students.max_gpus: expected int, got 'two'"),
    ):
        path.write_text(text)
        with pytest.raises(SettingsError, match=re.escape(f"{path}.{problem}")):
            load(path)
