"""Homes are made owned by the container user, seeded once, never overwritten."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from gpuhub_hub.homes import (
    MIGRATING,
    MOVING,
    archive_home,
    ensure_home,
    is_legacy,
    migrate_home,
    purge_user_files,
)

UID, GID = (1000, 100) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def test_new_home_is_owned_by_the_container_user_and_seeded(tmp_path: Path) -> None:
    assert ensure_home(tmp_path, "alice", UID, GID) is True
    home = tmp_path / "alice"
    assert (home.stat().st_uid, home.stat().st_gid) == (UID, GID)
    # The starter notebooks are in work/, where users have always found them.
    tour = home / "work" / "PyTorch-Tour.ipynb"
    assert tour.is_file()
    assert (tour.stat().st_uid, tour.stat().st_gid) == (UID, GID)


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    ensure_home(tmp_path, "alice", UID, GID)
    tour = tmp_path / "alice" / "work" / "PyTorch-Tour.ipynb"
    tour.write_text("my edits")
    assert ensure_home(tmp_path, "alice", UID, GID) is False
    assert tour.read_text() == "my edits"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a root-owned directory")
def test_root_owned_home_is_handed_to_the_user(tmp_path: Path) -> None:
    (tmp_path / "bob").mkdir()
    os.chown(tmp_path / "bob", 0, 0)
    ensure_home(tmp_path, "bob", 1000, 100)
    assert (tmp_path / "bob").stat().st_uid == 1000


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "Alice", "."])
def test_names_that_are_not_plain_directory_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="cannot name a home directory"):
        ensure_home(tmp_path, name, UID, GID)


def test_archive_keeps_owners_and_purge_deletes_everything(tmp_path: Path) -> None:
    home_root, archives = tmp_path / "home", tmp_path / "archive"
    home_root.mkdir()
    ensure_home(home_root, "alice", os.getuid(), os.getgid())
    (home_root / "alice" / "data.bin").write_bytes(b"\x00\x01")
    archive = archive_home(home_root, archives, "alice", "20261122T000000Z")
    assert archive == archives / "alice" / "20261122T000000Z.tar.gz"
    assert not (home_root / "alice").exists()
    with tarfile.open(archive) as tar:
        assert tar.getmember("alice/data.bin").uid == os.getuid()
    assert archive_home(home_root, archives, "alice", "x") is None
    assert purge_user_files(home_root, archives, "alice") == [archives / "alice"]
    assert not archives.joinpath("alice").exists()


def test_mount_points_are_made_the_users_and_work_comes_back(tmp_path: Path) -> None:
    ensure_home(tmp_path, "alice", UID, GID, ("shared",))
    shared = tmp_path / "alice" / "shared"
    assert shared.is_dir()
    assert (shared.stat().st_uid, shared.stat().st_gid) == (UID, GID)
    (tmp_path / "alice" / "work" / "PyTorch-Tour.ipynb").unlink()
    (tmp_path / "alice" / "work").rmdir()
    assert ensure_home(tmp_path, "alice", UID, GID) is False
    assert (tmp_path / "alice" / "work").is_dir()
    assert not (tmp_path / "alice" / "work" / "PyTorch-Tour.ipynb").exists()


def legacy_home(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A home as the earlier layout left it (its files were the user's ~/work), marked."""
    root, marks = tmp_path / "home", tmp_path / "legacy"
    home = root / "lee"
    (home / "work").mkdir(parents=True)  # the user's own ~/work/work folder
    (home / "work" / "deep.txt").write_text("deep")
    (home / "notes.txt").write_text("mine")
    (home / ".hidden").write_text("dot")
    marks.mkdir()
    (marks / "lee").write_text("legacy\n")
    return root, marks, home


def test_a_legacy_home_moves_into_work_keeping_every_file_where_its_user_saw_it(
    tmp_path: Path,
) -> None:
    root, marks, home = legacy_home(tmp_path)
    assert is_legacy(marks, "lee")
    assert migrate_home(root, marks, "lee", UID, GID) is True
    assert (home / "work" / "notes.txt").read_text() == "mine"
    assert (home / "work" / ".hidden").read_text() == "dot"
    assert (home / "work" / "work" / "deep.txt").read_text() == "deep"
    assert sorted(p.name for p in home.iterdir()) == ["work"]
    assert not is_legacy(marks, "lee")
    # Once only: a second call (the next start) moves nothing.
    assert migrate_home(root, marks, "lee", UID, GID) is False
    assert (home / "work" / "notes.txt").exists()


def test_a_move_stopped_half_way_resumes_without_nesting_twice(tmp_path: Path) -> None:
    root, marks, home = legacy_home(tmp_path)
    # Stopped after two entries went into the staging folder.
    staging = home / MIGRATING
    staging.mkdir()
    (home / "notes.txt").rename(staging / "notes.txt")
    (marks / "lee").write_text(MOVING)
    assert migrate_home(root, marks, "lee", UID, GID) is True
    assert (home / "work" / "notes.txt").read_text() == "mine"
    assert (home / "work" / "work" / "deep.txt").read_text() == "deep"
    # Stopped after the last rename, before the mark went: nothing moves again.
    (marks / "lee").write_text(MOVING)
    assert migrate_home(root, marks, "lee", UID, GID) is True
    assert (home / "work" / "notes.txt").read_text() == "mine"
    assert not (home / "work" / "work" / "notes.txt").exists()
    assert not is_legacy(marks, "lee")


def test_new_homes_are_never_moved(tmp_path: Path) -> None:
    root, marks = tmp_path / "home", tmp_path / "legacy"
    root.mkdir()
    marks.mkdir()
    ensure_home(root, "new", UID, GID)
    (root / "new" / ".bash_history").write_text("ls")
    assert migrate_home(root, marks, "new", UID, GID) is False
    assert (root / "new" / ".bash_history").exists()
