"""The collections bundled by the pinned `ansible` package satisfy requirements.yml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

BIN = Path(sys.executable).parent


def installed_collections() -> dict[str, Version]:
    """Highest installed version of each collection, as ansible-galaxy sees them."""
    out = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, Version] = {}
    for collections in json.loads(out).values():
        for name, info in collections.items():
            version = Version(info["version"])
            if name not in found or version > found[name]:
                found[name] = version
    return found


def unmet_requirements(requirements: dict, installed: dict[str, Version]) -> list[str]:
    problems = []
    for entry in requirements["collections"]:
        name, spec = entry["name"], SpecifierSet(entry.get("version", ""))
        if name not in installed:
            problems.append(f"{name}: not installed (wants {spec})")
        elif installed[name] not in spec:
            problems.append(f"{name}: {installed[name]} does not satisfy {spec}")
    return problems


def test_installed_collections_satisfy_requirements(repo: Path) -> None:
    requirements = yaml.safe_load((repo / "requirements.yml").read_text())
    assert requirements["collections"], "requirements.yml lists no collections"
    assert unmet_requirements(requirements, installed_collections()) == []


def test_checker_reports_a_version_outside_the_bounds() -> None:
    requirements = {"collections": [{"name": "community.docker", "version": ">=5.0.0,<6.0.0"}]}
    problems = unmet_requirements(requirements, {"community.docker": Version("4.8.5")})
    assert problems == ["community.docker: 4.8.5 does not satisfy <6.0.0,>=5.0.0"]
    assert unmet_requirements(requirements, {}) == [
        "community.docker: not installed (wants <6.0.0,>=5.0.0)"
    ]
