"""User home directories on the host, made before a container mounts them.

If Docker creates a missing bind-mount source itself it is owned by root, and the user
(uid 1000 in the container) cannot write to their own home: the classic DockerSpawner
permissions bug. The hub creates it first, owned by the container user.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .settings import USERNAME

STARTER = Path(__file__).resolve().parent / "starter"


def home_path(root: str | Path, username: str) -> Path:
    if not USERNAME.match(username):
        raise ValueError(f"user name {username!r} cannot name a home directory")
    return Path(root) / username


def ensure_home(root: str | Path, username: str, uid: int, gid: int) -> bool:
    """Make the home owned uid:gid; seed starter content into a new one. True if new.

    An existing home keeps its content: nothing in it is overwritten.
    """
    home = home_path(root, username)
    created = not home.exists()
    home.mkdir(mode=0o750, exist_ok=True)
    info = home.stat()
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(home, uid, gid)
    if created:
        for item in sorted(STARTER.glob("*.ipynb")):
            target = home / item.name
            if not target.exists():
                shutil.copyfile(item, target)
                os.chown(target, uid, gid)
    return created
