"""Homes are made owned by the container user, seeded once, never overwritten."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from gpuhub_hub.homes import archive_home, ensure_home, purge_user_files

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
