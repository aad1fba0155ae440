"""update.yml's plan (the host_update role's filter) from apt's own simulated upgrade:
what is upgraded and what is held. The lines are apt-get's, as Debian 12 prints them."""

from __future__ import annotations

from types import ModuleType

from shared_facts import filters

SIMULATION = """\
Reading package lists...
Building dependency tree...
Calculating upgrade...
The following NEW packages will be installed:
  linux-image-6.1.0-41-amd64
The following packages will be upgraded:
  base-files libc6 libnvidia-ml1 linux-image-amd64
Inst base-files [12.4+deb12u11] (12.4+deb12u15 Debian:12.15/oldstable [amd64])
Inst libc6:amd64 [2.36-9+deb12u10] (2.36-9+deb12u13 Debian:12.15/oldstable [amd64])
Inst linux-image-6.1.0-41-amd64 (6.1.192-3 Debian-Security:12/oldstable-security [amd64])
Inst linux-image-amd64 [6.1.187-1] (6.1.192-3 Debian-Security:12/oldstable-security [amd64])
Inst libnvidia-ml1 [535.247.01-1~deb12u1] (535.261.03-1~deb12u1 Debian:12.15/oldstable [amd64])
Conf base-files (12.4+deb12u15 Debian:12.15/oldstable [amd64])
"""


def plugin() -> ModuleType:
    return filters("host_update")


def test_held_patterns_keep_the_kernel_and_driver_back() -> None:
    plan = plugin().host_update_plan(SIMULATION, ["linux-image-*", "libnvidia-*"])
    assert plan["upgrade"] == ["base-files", "libc6:amd64"]
    assert plan["held"] == [
        "linux-image-6.1.0-41-amd64",
        "linux-image-amd64",
        "libnvidia-ml1",
    ]
    assert plan["report"]["upgrade"] == (
        "base-files (12.4+deb12u11 -> 12.4+deb12u15),"
        " libc6:amd64 (2.36-9+deb12u10 -> 2.36-9+deb12u13)"
    )
    assert plan["report"]["held"].startswith("linux-image-6.1.0-41-amd64 (new -> 6.1.192-3)")


def test_without_holds_installed_packages_are_upgraded_and_new_ones_follow() -> None:
    plan = plugin().host_update_plan(SIMULATION, [])
    # The new kernel image is not named: it comes with linux-image-amd64.
    assert plan["upgrade"] == [
        "base-files",
        "libc6:amd64",
        "linux-image-amd64",
        "libnvidia-ml1",
    ]
    assert plan["held"] == []


def test_nothing_to_do() -> None:
    plan = plugin().host_update_plan(
        "Reading package lists...\n0 upgraded, 0 newly installed.\n", []
    )
    assert plan == {"upgrade": [], "held": [], "report": {"upgrade": "nothing", "held": "nothing"}}
