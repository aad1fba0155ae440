"""The one package probe (site.yml's preflight play) and the apt tasks it spares: this
machine's own dpkg answers the preflight's query, as it would on a host; an installed
package is not handed to apt again, a missing one is, and so is every package where
there is no answer (a role applied alone) or the name pins a version."""

from __future__ import annotations

import subprocess
from functools import cache
from typing import Any

import yaml
from shared_facts import REPO, filters

NOT_A_PACKAGE = "gpuhub-no-such-package"


@cache
def dpkg_status() -> dict[str, Any]:
    """The preflight task's own command, run here, as the task registers it."""
    play = yaml.safe_load((REPO / "playbooks/preflight.yml").read_text())[0]
    (task,) = (t for t in play["tasks"] if t.get("register") == "gpuhub_dpkg_status")
    argv = task["ansible.builtin.command"]["argv"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return {"stdout_lines": out.splitlines()}


def missing(wanted: list[str] | str, status: dict[str, Any] | None) -> list[str]:
    return filters().gpuhub_packages_missing(wanted, status)


def test_installed_packages_are_not_handed_to_apt() -> None:
    # dpkg and coreutils are installed wherever dpkg-query runs.
    assert missing(["dpkg", "coreutils"], dpkg_status()) == []
    assert missing("dpkg", dpkg_status()) == []


def test_missing_packages_are() -> None:
    assert missing(["dpkg", NOT_A_PACKAGE], dpkg_status()) == [NOT_A_PACKAGE]


def test_a_role_applied_alone_hands_apt_everything() -> None:
    assert missing(["dpkg", NOT_A_PACKAGE], None) == ["dpkg", NOT_A_PACKAGE]
    assert missing(["dpkg"], {"skipped": True}) == ["dpkg"]


def test_a_pinned_version_is_left_to_apt() -> None:
    assert missing(["dpkg=0.0.1", "dpkg>=1"], dpkg_status()) == ["dpkg=0.0.1", "dpkg>=1"]


def test_removed_but_configured_packages_count_as_missing() -> None:
    # `rc`: removed, its configuration files left; apt must install it again.
    lines = [*dpkg_status()["stdout_lines"], f"rc  {NOT_A_PACKAGE}"]
    assert missing([NOT_A_PACKAGE], {"stdout_lines": lines}) == [NOT_A_PACKAGE]
