"""Group GPU quotas: how many GPUs (whole GPUs or MIG slices held exclusively) a group's
members may hold at once together (`max_gpus`) and each of them alone
(`max_gpus_per_user`).

The quotas live in a file of their own (the jupyterhub role renders it from
jupyterhub_group_limits), read at each GPU spawn: a change applies to the next spawn, with
no hub restart. What is held is read from Docker as the allocator reads it (gpus.py): each
server's container carries its user and that user's groups at spawn (GROUPS_LABEL), so a
group's count is the devices its members' servers hold. Every quota of every group the user
is in applies; `shared` servers hold nothing and count for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from .gpus import Holding
from .settings import SettingsError, build


@dataclass(frozen=True)
class GpuQuota:
    max_gpus: int | None = None
    max_gpus_per_user: int | None = None

    def __post_init__(self) -> None:
        for name in QUOTA_KEYS:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise SettingsError(f"{name}: {value} must be 0 or more")


QUOTA_KEYS = ("max_gpus", "max_gpus_per_user")  # GpuQuota's fields


def parse(data: object, where: str = "gpu quotas") -> dict[str, GpuQuota]:
    """{group: {max_gpus, max_gpus_per_user}}; SettingsError names the bad key."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: expected a mapping of group names, got {data!r}")
    return {str(group): build(GpuQuota, value, f"{where}.{group}") for group, value in data.items()}


def load(path: str | Path) -> dict[str, GpuQuota]:
    """The quotas file; none ('' or no file): no quota."""
    if not path or not Path(path).exists():
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SettingsError(f"cannot read the GPU quotas in {path}: {err}") from None
    return parse(data, str(path))


class QuotaExceeded(RuntimeError):
    """A GPU quota would be passed; the message is meant for the user."""


def _plural(count: int) -> str:
    return f"{count} GPU" if count == 1 else f"{count} GPUs"


def quota_problem(
    user: str,
    groups: Iterable[str],
    needed: int,
    holdings: Sequence[Holding],
    quotas: dict[str, GpuQuota],
) -> str | None:
    """Why `user` (in `groups`) may not take `needed` more devices, or None."""
    mine = sum(len(h.devices) for h in holdings if h.user == user)
    for group in sorted(set(groups)):
        quota = quotas.get(group)
        if quota is None:
            continue
        if quota.max_gpus_per_user is not None and mine + needed > quota.max_gpus_per_user:
            return (
                f"GPU quota reached: group {group} allows {_plural(quota.max_gpus_per_user)} "
                f"per user at once (max_gpus_per_user), you hold {mine} and this profile "
                f"needs {needed}. Stop one of your GPU servers first."
            )
        if quota.max_gpus is not None:
            members = [h for h in holdings if group in h.groups]
            held = sum(len(h.devices) for h in members)
            if held + needed > quota.max_gpus:
                by_user: dict[str, int] = {}
                for h in members:
                    by_user[h.user] = by_user.get(h.user, 0) + len(h.devices)
                who = ", ".join(f"{name} {count}" for name, count in sorted(by_user.items()))
                return (
                    f"GPU quota reached: group {group} may hold {_plural(quota.max_gpus)} at "
                    f"once (max_gpus) and its members hold {held} ({who or 'none'}); this "
                    f"profile needs {needed}. Try again when one of them stops a GPU server."
                )
    return None


@dataclass(frozen=True)
class Charge:
    """Who a spawn's devices are charged to, and the quotas in force."""

    user: str
    groups: tuple[str, ...]
    quotas: dict[str, GpuQuota]

    def check(self, needed: int, holdings: Sequence[Holding]) -> None:
        problem = quota_problem(self.user, self.groups, needed, holdings, self.quotas)
        if problem:
            raise QuotaExceeded(problem)
