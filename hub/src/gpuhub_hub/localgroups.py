"""Groups the hub adds to a directory's (auth modes ldap and oidc).

There the directory's or provider's groups replace a person's hub groups at every login.
Groups an admin gives with `users.yml groups=` (gpuhub-admin) are kept here, one list per
user, and added back at each login (configure.py's post-auth hook), so they last. They let
no one in: allowed groups are checked against the directory's groups before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def load(path: str) -> dict[str, list[str]]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    return {str(k): sorted(str(g) for g in v) for k, v in data.items()}


def save(path: str, groups: dict[str, list[str]]) -> None:
    """Replace the file at once (a login reading it sees the old or the new one)."""
    data = {name: sorted(set(g)) for name, g in sorted(groups.items()) if g}
    temporary = Path(f"{path}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    temporary.chmod(0o644)
    os.replace(temporary, path)


def of(path: str, name: str) -> list[str]:
    return load(path).get(name, []) if path else []
