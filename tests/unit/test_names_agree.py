"""Every playbook and role applies the hub package's user-name rule, character for character."""

from __future__ import annotations

import re
from pathlib import Path

from gpuhub_hub.names import USERNAME

REPO = Path(__file__).resolve().parents[2]
# A user-name pattern in YAML: starts like the rule, ends with a length bound.
PATTERN = re.compile(r"\^\[a-z0-9\]\[a-z0-9\._-\]\{0,\d+\}\$")
USER_NAME_FILES = (
    "users.yml",
    "playbooks/stop-server.yml",
    "playbooks/restore.yml",
    "roles/jupyterhub_storage/tasks/preflight.yml",
)


def test_one_user_name_rule() -> None:
    for name in USER_NAME_FILES:
        text = (REPO / name).read_text()
        found = [p for p in PATTERN.findall(text) if "group" not in p]
        assert USERNAME.pattern in found, f"{name} does not use {USERNAME.pattern}"
    for path in REPO.glob("**/*.yml"):
        if ".venv" in path.parts or ".cache" in path.parts:
            continue
        for line in path.read_text().splitlines():
            if "group" in line:
                continue
            for pattern in PATTERN.findall(line):
                assert pattern == USERNAME.pattern, f"{path}: {line.strip()}"
