"""Moving a home between nodes (gpuhub_hub.transfer): the real sender and receiver over
HTTP on this machine, as the two one-shot services run them on two nodes."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from gpuhub_hub.transfer import INCOMING, main, manifest, receive, replace, send


def _home(root: Path) -> Path:
    home = root / "alice"
    (home / "work" / "deep").mkdir(parents=True)
    (home / "work" / "notes.txt").write_text("hello\n")
    (home / "work" / "deep" / "data.bin").write_bytes(os.urandom(3 << 20))
    (home / ".bash_history").write_text("ls\n")
    (home / "link").symlink_to("work/notes.txt")
    (home / "work" / "private").write_text("secret")
    (home / "work" / "private").chmod(0o600)
    os.chown(home / "work" / "notes.txt", 1001, 1001)
    home.chmod(0o750)
    return home


def _serve(home: Path) -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=send, args=(str(home), port), daemon=True).start()
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            threading.Event().wait(0.1)
    return f"http://127.0.0.1:{port}"


@pytest.mark.skipif(os.geteuid() != 0, reason="keeping owners needs root, as on a node")
def test_a_home_moves_whole_and_verified(tmp_path: Path) -> None:
    home = _home(tmp_path / "node1")
    url = _serve(home)
    (tmp_path / "node2").mkdir()
    result = receive(url, str(tmp_path / "node2"), "alice")
    moved = tmp_path / "node2" / "alice"
    assert result["manifest"] == manifest(home) == manifest(moved)
    assert (moved / "work" / "notes.txt").read_text() == "hello\n"
    assert (moved / "work" / "notes.txt").stat().st_uid == 1001
    assert os.readlink(moved / "link") == "work/notes.txt"
    assert (moved / "work" / "private").stat().st_mode & 0o777 == 0o600
    assert moved.stat().st_mode & 0o777 == 0o750
    assert not list((tmp_path / "node2").glob(INCOMING + "*"))
    # Never over an existing home.
    with pytest.raises(RuntimeError, match="exists on this node"):
        receive(url, str(tmp_path / "node2"), "alice")
    assert main(["remove", str(tmp_path / "node1"), "alice"]) == 0
    assert not home.exists()


def test_a_shared_folder_is_replaced_by_a_verified_copy(tmp_path: Path) -> None:
    """`shared sync`: the node's old copy goes only once the new one is checked."""
    hub = tmp_path / "hub" / "shared"
    (hub / "datasets").mkdir(parents=True)
    (hub / "datasets" / "iris.csv").write_text("a,b\n")
    url = _serve(hub)
    node = tmp_path / "node"
    (node / "shared").mkdir(parents=True)
    (node / "shared" / "stale.txt").write_text("gone after the sync")
    result = replace(url, str(node), "shared")
    assert result["manifest"] == manifest(hub) == manifest(node / "shared")
    assert not (node / "shared" / "stale.txt").exists()
    assert sorted(p.name for p in node.iterdir()) == ["shared"]
    with pytest.raises(ValueError, match="not a folder name"):
        replace(url, str(node), "../elsewhere")


def test_a_changed_tree_changes_the_manifest(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / "work").mkdir(parents=True)
    (home / "work" / "a").write_text("1")
    before = manifest(home)
    (home / "work" / "a").write_text("2")
    assert manifest(home) != before
    (home / "work" / "a").write_text("1")
    assert manifest(home) == before
    (home / "work" / "b").symlink_to("a")
    assert manifest(home) != before


def test_entries_that_leave_the_home_are_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    from gpuhub_hub.transfer import _checked

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("work/ok.txt", "../escape.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            info.mode = 0o4755
            tar.addfile(info, io.BytesIO(b"hi"))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r") as tar:
        entries = _checked(tar)
        first = next(entries)
        assert first.name == "work/ok.txt"
        assert first.mode == 0o755  # no setuid
        with pytest.raises(RuntimeError, match=r"refused entry '\.\./escape\.txt'"):
            next(entries)
