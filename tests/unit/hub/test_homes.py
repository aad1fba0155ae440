"""Homes are made owned by the container user, seeded once, never overwritten."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gpuhub_hub.homes import ensure_home

UID, GID = (1000, 100) if os.geteuid() == 0 else (os.getuid(), os.getgid())


def test_new_home_is_owned_by_the_container_user_and_seeded(tmp_path: Path) -> None:
    assert ensure_home(tmp_path, "alice", UID, GID) is True
    home = tmp_path / "alice"
    assert (home.stat().st_uid, home.stat().st_gid) == (UID, GID)
    tour = home / "PyTorch-Tour.ipynb"
    assert tour.is_file()
    assert (tour.stat().st_uid, tour.stat().st_gid) == (UID, GID)


def test_existing_files_are_never_overwritten(tmp_path: Path) -> None:
    ensure_home(tmp_path, "alice", UID, GID)
    tour = tmp_path / "alice" / "PyTorch-Tour.ipynb"
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
