"""`settings | gpuhub_settings_problem`: the hub's own settings loader (hub/src/gpuhub_hub),
run on the control node at preflight, so a setting the hub would refuse at start stops
the run before anything changes. Returns '' or the loader's message, led by the Ansible
variable the failing setting is rendered from (read from this role's vars/main.yml)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROLE = Path(__file__).resolve().parents[1]
HUB_SRC = ROLE.parents[1] / "hub" / "src"
SEGMENT = re.compile(r"([A-Za-z_]+)(?:\[\d+\])?")
VARIABLE = re.compile(r"\bjupyterhub_[a-z0-9_]+")


def _loader() -> tuple[Any, Any, type[Exception]]:
    if str(HUB_SRC) not in sys.path:
        sys.path.insert(0, str(HUB_SRC))
    from gpuhub_hub.settings import Settings, SettingsError, build

    return Settings, build, SettingsError


def _variable(path: str) -> str | None:
    """The jupyterhub_* variable that the settings key `path` (e.g.
    spawner.profiles[0].slug) is rendered from, per __jupyterhub_settings."""
    node: Any = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__jupyterhub_settings"]
    for segment in path.split(" ")[0].split("."):
        match = SEGMENT.fullmatch(segment)
        if not isinstance(node, dict) or not match or match.group(1) not in node:
            break
        node = node[match.group(1)]
        if isinstance(node, str):
            break
    found = VARIABLE.findall(node) if isinstance(node, str) else []
    return found[0] if found else None


def gpuhub_settings_problem(settings: dict[str, Any]) -> str:
    settings_cls, build, settings_error = _loader()
    try:
        build(settings_cls, json.loads(json.dumps(settings)))
    except settings_error as err:
        message = str(err).removeprefix("settings.")
        path, _, problem = message.partition(": ")
        variable = _variable(path)
        where = f"{variable} (hub setting {path})" if variable else f"hub setting {path}"
        return f"{where}: {problem}"
    return ""


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gpuhub_settings_problem": gpuhub_settings_problem}
