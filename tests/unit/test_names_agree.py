"""The user-name rule lives in the hub package (gpuhub_hub/names.py) only: playbooks and
roles apply it through the gpuhub role's `gpuhub_username_problem` filter, never a copy."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A user-name pattern in YAML: starts like the rule, ends with a length bound.
PATTERN = re.compile(r"\^\[a-z0-9\]\[a-z0-9\._-\]\{0,\d+\}\$")


def test_no_yaml_restates_the_user_name_rule() -> None:
    copies = [
        f"{path.relative_to(REPO)}: {line.strip()}"
        for path in REPO.glob("**/*.yml")
        if not {".venv", ".cache"} & set(path.parts)
        for line in path.read_text().splitlines()
        if "group" not in line and PATTERN.search(line)
    ]
    assert copies == [], "use the gpuhub_username_problem filter instead:\n" + "\n".join(copies)
