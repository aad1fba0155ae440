"""What an operating-system update would do, from apt's own simulation.

- `stdout | host_update_plan(held)`: apt-get's simulated upgrade (`apt-get -s ...
  upgrade`, its `Inst` lines) split into what update.yml upgrades and what it holds back:
  {"upgrade": [names], "held": [names], "report": {"upgrade": text, "held": text}} (each
  text "name (old -> new), ..." or "nothing"). A package is held
  when its name matches one of the shell-style patterns in `held`; "upgrade" lists installed
  packages only (new ones an upgrade pulls in, such as a new kernel's image, come with
  their dependants, or stay out when those are held).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

# Inst <name> [<installed version>] (<candidate version> <release...> [<arch>])
INST = re.compile(r"^Inst (?P<name>\S+)(?: \[(?P<old>[^\]]+)\])? \((?P<new>\S+)")


def host_update_plan(stdout: str, held: list[str]) -> dict[str, Any]:
    upgrade: list[str] = []
    kept: list[str] = []
    versions: dict[str, str] = {}
    for line in stdout.splitlines():
        match = INST.match(line)
        if not match:
            continue
        name = match["name"]
        versions[name] = f"{match['old'] or 'new'} -> {match['new']}"
        if any(fnmatch.fnmatchcase(name.partition(":")[0], pattern) for pattern in held):
            kept.append(name)
        elif match["old"]:
            upgrade.append(name)
    return {
        "upgrade": upgrade,
        "held": kept,
        "report": {"upgrade": describe(upgrade, versions), "held": describe(kept, versions)},
    }


def describe(names: list[str], versions: dict[str, str]) -> str:
    return ", ".join(f"{name} ({versions[name]})" for name in names) or "nothing"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"host_update_plan": host_update_plan}
