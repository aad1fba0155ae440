"""The cluster scenario's three platforms are the shared test host (.config/molecule),
named per role: Molecule replaces a list of platforms whole, so the cluster scenario
restates it, and this test keeps the two from drifting."""

from __future__ import annotations

from typing import Any

import yaml
from shared_facts import REPO

PER_HOST = {"name", "hostname", "groups"}


def _platforms(path: str) -> list[dict[str, Any]]:
    return yaml.safe_load((REPO / path).read_text())["platforms"]


def test_cluster_hosts_are_the_shared_test_host() -> None:
    (shared,) = _platforms(".config/molecule/config.yml")
    cluster = _platforms("molecule/cluster/molecule.yml")
    assert [p["groups"] for p in cluster] == [
        ["jupyterhub", "gpuhub_test"],
        ["jupyterhub_nodes", "gpuhub_test"],
        ["jupyterhub_nodes", "gpuhub_test"],
    ]
    for platform in cluster:
        same = {k: v for k, v in platform.items() if k not in PER_HOST}
        assert same == {k: v for k, v in shared.items() if k not in PER_HOST}, platform["name"]
        assert "gpuhub_test" in shared["groups"]
