"""Which profiles a user may choose, and the limits their server gets."""

from __future__ import annotations

from collections.abc import Iterable

from .settings import Limits, Profile, Spawner


def allowed_profiles(spawner: Spawner, groups: Iterable[str]) -> list[Profile]:
    """Profiles open to everyone, plus those restricted to one of the user's groups."""
    member_of = set(groups)
    return [p for p in spawner.profiles if not p.groups or member_of.intersection(p.groups)]


def choose_profile(spawner: Spawner, groups: Iterable[str], slug: str | None) -> Profile:
    """The profile `slug` if the user may use it; the first allowed one when None."""
    allowed = allowed_profiles(spawner, groups)
    if slug is None:
        return allowed[0]
    for profile in allowed:
        if profile.slug == slug:
            return profile
    names = ", ".join(p.slug for p in allowed)
    raise PermissionError(f"profile {slug!r} is not available to you; choose one of: {names}")


def _bytes(size: str) -> float:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    if size[-1] in units:
        return float(size[:-1]) * units[size[-1]]
    return float(size)


def effective_limits(spawner: Spawner, groups: Iterable[str], profile: Profile) -> Limits:
    """Default limits, raised by the most generous group the user is in, then the
    profile's own limits, which win (a profile is the most specific choice)."""
    mem, cpu = spawner.default_limits.mem_limit, spawner.default_limits.cpu_limit
    for group in sorted(set(groups)):
        override = spawner.group_limits.get(group)
        if override is None:
            continue
        if override.mem_limit and (mem is None or _bytes(override.mem_limit) > _bytes(mem)):
            mem = override.mem_limit
        if override.cpu_limit and (cpu is None or override.cpu_limit > cpu):
            cpu = override.cpu_limit
    return Limits(
        mem_limit=profile.limits.mem_limit or mem,
        cpu_limit=profile.limits.cpu_limit or cpu,
    )
