"""User home directories on the host, made before a container mounts them.

If Docker creates a missing bind-mount source itself it is owned by root, and the user
(uid 1000 in the container) cannot write to their own home: the classic DockerSpawner
permissions bug. The hub creates it first, owned by the container user.

A home is mounted whole at the user's home in the container (settings, ~/.local, history
survive a restart); the starter notebooks are in its `work/` folder. Homes made before
that (the "legacy" layout) were mounted at ~/work only: the storage role marks each such
home once (a file named after its user in the legacy-homes folder, out of users' reach),
and the hub moves its content into its `work/` folder at the user's next start, so every
file stays where its user saw it. A legacy home with another server of its user still
running is mounted the old way until that one stops.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from .names import USERNAME

STARTER = Path(__file__).resolve().parent / "starter"
# Inside a home: where the starter notebooks go, and where a legacy home's files move to.
WORK = "work"
# A legacy home's content on its way into work/ (resumed if the hub stopped half way).
MIGRATING = ".gpuhub-moving-into-work"
MOVING = "moving\n"


def home_path(root: str | Path, username: str) -> Path:
    if not USERNAME.match(username):
        raise ValueError(f"user name {username!r} cannot name a home directory")
    return Path(root) / username


def _owned_dir(path: Path, uid: int, gid: int, mode: int) -> None:
    path.mkdir(mode=mode, exist_ok=True)
    info = path.stat()
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(path, uid, gid)


def ensure_home(
    root: str | Path, username: str, uid: int, gid: int, mount_points: tuple[str, ...] = ()
) -> bool:
    """Make the home owned uid:gid with its work/ folder, seed the starter notebooks into
    a new one, and make `mount_points` (folders other mounts cover, such as shared/) owned
    by the user before Docker makes them root's. True if the home is new.

    An existing home keeps its content: nothing in it is overwritten.
    """
    home = home_path(root, username)
    created = not home.exists()
    _owned_dir(home, uid, gid, 0o750)
    # Made only where missing: the user may have changed an existing one's owner or mode.
    for name in (WORK, *mount_points):
        if not (home / name).exists():
            _owned_dir(home / name, uid, gid, 0o755)
    if created:
        for item in sorted(STARTER.glob("*.ipynb")):
            target = home / WORK / item.name
            if not target.exists():
                shutil.copyfile(item, target)
                os.chown(target, uid, gid)
    return created


def is_legacy(legacy_dir: str | Path, username: str) -> bool:
    """Whether the user's home still has the layout mounted at ~/work only."""
    return home_path(legacy_dir, username).exists()


def migrate_home(
    root: str | Path, legacy_dir: str | Path, username: str, uid: int, gid: int
) -> bool:
    """Move a legacy home's content into its work/ folder (where its user saw it) and drop
    its legacy mark. True if it was legacy. Safe to run again after a stop half way: the
    mark says "moving" once the staging folder exists; a moving mark without the staging
    folder means the last rename was done.
    """
    mark = home_path(legacy_dir, username)
    if not mark.exists():
        return False
    home = home_path(root, username)
    staging = home / MIGRATING
    if home.is_dir() and mark.read_text() != MOVING:
        _owned_dir(staging, uid, gid, 0o755)
        _write_synced(mark, MOVING)
    if staging.is_dir():
        for entry in sorted(home.iterdir()):
            if entry != staging:
                entry.rename(staging / entry.name)
        staging.rename(home / WORK)
    mark.unlink()
    return True


def _write_synced(path: Path, text: str) -> None:
    with path.open("w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


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


USAGE = """usage: python -m gpuhub_hub.homes ensure ROOT USER UID GID [MOUNT_POINT...]
       python -m gpuhub_hub.homes archive ROOT ARCHIVE_ROOT USER STAMP
       python -m gpuhub_hub.homes purge ROOT ARCHIVE_ROOT USER"""


def main(argv: list[str]) -> int:
    """ensure_home, archive_home or purge_user_files, run on the node that keeps the home
    (cluster mode: the hub and gpuhub-admin run it there as a one-shot service)."""
    action, args = (argv[0], argv[1:]) if argv else ("", [])
    if action == "ensure" and len(args) >= 4:
        root, username, uid, gid, *mounts = args
        created = ensure_home(root, username, int(uid), int(gid), tuple(mounts))
        print(f"{home_path(root, username)}: {'created' if created else 'present'}")
    elif action == "archive" and len(args) == 4:
        archive = archive_home(*args)
        print(f"{archive or 'no home'}")
    elif action == "purge" and len(args) == 3:
        removed = purge_user_files(*args)
        print(" ".join(map(str, removed)) or "nothing")
    else:
        print(USAGE)
        return 2
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
