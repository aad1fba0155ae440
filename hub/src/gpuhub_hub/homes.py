"""User home directories on the host, made before a container mounts them.

If Docker creates a missing bind-mount source itself it is owned by root, and the user
(uid 1000 in the container) cannot write to their own home: the classic DockerSpawner
permissions bug. The hub creates it first, owned by the container user.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from .names import USERNAME

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


def archive_home(
    root: str | Path, archive_root: str | Path, username: str, stamp: str
) -> Path | None:
    """Pack a user's home into <archive_root>/<user>/<stamp>.tar.gz (0600), then remove it.

    Returns the archive, or None when the user has no home. Owners and modes are kept,
    so `tar -xzpf` as root restores the home as it was.
    """
    home = home_path(root, username)
    if not home.exists():
        return None
    folder = home_path(archive_root, username)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / f"{stamp}.tar.gz"
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(home, arcname=username)
    partial.chmod(0o600)
    partial.rename(target)
    shutil.rmtree(home)
    return target


def purge_user_files(root: str | Path, archive_root: str | Path, username: str) -> list[Path]:
    """Delete a user's home and every archive of it; returns what was deleted."""
    removed = []
    for path in (home_path(root, username), home_path(archive_root, username)):
        if path.exists():
            shutil.rmtree(path)
            removed.append(path)
    return removed
