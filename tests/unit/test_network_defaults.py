"""The firewall role and the jupyterhub role describe the same users network: the
firewall's fallbacks equal the jupyterhub role's defaults, and the hub package's
settings default to the same network name."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from gpuhub_hub.settings import Spawner

REPO = Path(__file__).resolve().parents[2]


def defaults(role: str) -> dict:
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())


def fallback(expression: str) -> str:
    """The literal in `{{ other_var | default('literal') }}`."""
    match = re.search(r"default\('([^']+)'\)", expression)
    assert match, expression
    return match.group(1)


def test_firewall_fallbacks_equal_the_jupyterhub_defaults() -> None:
    hub, firewall = defaults("jupyterhub"), defaults("firewall")
    assert "jupyterhub_users_bridge" in firewall["firewall_users_bridge"]
    assert fallback(firewall["firewall_users_bridge"]) == hub["jupyterhub_users_bridge"]
    assert "jupyterhub_users_subnet" in firewall["firewall_users_subnet"]
    assert fallback(firewall["firewall_users_subnet"]) == hub["jupyterhub_users_subnet"]


def test_the_hub_package_default_network_is_the_users_network() -> None:
    assert (
        Spawner.__dataclass_fields__["network"].default
        == defaults("jupyterhub")["jupyterhub_users_network"]
    )
