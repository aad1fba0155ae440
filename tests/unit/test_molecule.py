"""The Molecule scenarios as `make test` runs them: the cluster scenario's three platforms
are the shared test host (.config/molecule), named per role (Molecule replaces a list of
platforms whole, so the cluster scenario restates it, and a test keeps the two from
drifting); and the Makefile's lanes hold every scenario once."""

from __future__ import annotations

import subprocess
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


def _make_variable(name: str) -> list[str]:
    printed = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", "print-%: ; @echo $($*)", f"print-{name}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return printed.stdout.split()


def test_make_test_runs_every_scenario_and_step_once() -> None:
    """`make test`'s two lanes hold every test scenario (not the demo's or the benchmarks'
    throwaway hosts), lint and pytest, each once; `make molecule` has the same scenarios."""
    scenarios = {p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml")}
    scenarios -= {"demo", "bench"}
    steps = _make_variable("LANE_1") + _make_variable("LANE_2")
    assert sorted(steps) == sorted([f"scenario-{s}" for s in scenarios] + ["lint", "pytest"])
    assert sorted(_make_variable("SCENARIOS")) == sorted(scenarios)
