"""Moving a home between cluster nodes (`gpuhub-admin user move`), and copying the hub
host's shared folder to the nodes (`gpuhub-admin shared sync`), as one-shot services of the
hub image on a private network made for the purpose:

    python3 -m gpuhub_hub.transfer send FOLDER PORT        on the node that has the folder
    python3 -m gpuhub_hub.transfer receive URL ROOT USER   on the node the home goes to
    python3 -m gpuhub_hub.transfer remove ROOT USER        on the old node, once verified
    python3 -m gpuhub_hub.transfer replace URL ROOT NAME   on a node: ROOT/NAME becomes a copy

The receiver unpacks the sender's tar stream into ROOT/.incoming-USER, checks it against
the sender's manifest (every path, its type, owner, size and content or link target), and
only then renames it to ROOT/USER; on any difference it deletes what it unpacked and fails,
and the old copy stays where it was.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import stat
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .homes import home_path

INCOMING = ".incoming-"


def manifest(root: str | Path, contents: bool = True) -> str:
    """A digest of the tree under `root`: paths, types, owners, sizes, contents, links. The
    quick one (not `contents`) has files' modes and modification times instead of contents."""
    base = Path(root)
    lines = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath) / name
            info = path.lstat()
            rel = path.relative_to(base).as_posix()
            if stat.S_ISLNK(info.st_mode):
                what = "l " + os.readlink(path)
            elif stat.S_ISDIR(info.st_mode):
                what = "d"
            elif stat.S_ISREG(info.st_mode) and not contents:
                what = f"f {info.st_size} {info.st_mode:o} {info.st_mtime_ns}"
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256()
                with path.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                what = f"f {info.st_size} {digest.hexdigest()}"
            else:
                what = "o"  # sockets, fifos: carried as entries only
            lines.append(f"{rel}\t{info.st_uid}:{info.st_gid}\t{what}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def send(home: str, port: int) -> None:
    """Serve GET /manifest and GET /home.tar (a stream of the home) until stopped."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/manifest":
                body = manifest(home).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path == "/home.tar":
                self.send_response(200)
                self.end_headers()
                with tarfile.open(fileobj=self.wfile, mode="w|") as tar:
                    tar.add(home, arcname=".")
            else:
                self.send_error(404)

    http.server.ThreadingHTTPServer(("", port), Handler).serve_forever()


def receive(url: str, root: str, username: str) -> dict[str, str]:
    """Unpack the sender's home into ROOT/USER once it matches the sender's manifest."""
    target = home_path(root, username)
    if target.exists():
        raise RuntimeError(f"{target} exists on this node: move it aside first")
    incoming = _unpack(url, Path(root) / f"{INCOMING}{username}")
    incoming.path.rename(target)
    return {"home": str(target), "manifest": incoming.manifest}


def replace(url: str, root: str, name: str) -> dict[str, str]:
    """Make ROOT/NAME a verified copy of the sender's folder: unpacked beside it, checked,
    then swapped in (servers that mount the old one see the new one at their next start)."""
    if "/" in name or name in {"", ".", ".."}:
        raise ValueError(f"{name!r} is not a folder name")
    target = Path(root) / name
    incoming = _unpack(url, Path(root) / f"{INCOMING}{name}")
    old = Path(root) / f".old-{name}"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    incoming.path.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return {"folder": str(target), "manifest": incoming.manifest}


@dataclass(frozen=True)
class Unpacked:
    path: Path
    manifest: str


def _unpack(url: str, incoming: Path) -> Unpacked:
    """The sender's folder unpacked into `incoming`, checked against its manifest."""
    shutil.rmtree(incoming, ignore_errors=True)  # a failed earlier transfer
    incoming.mkdir(mode=0o700)
    try:
        with (
            _open(f"{url}/home.tar") as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            # Links are the folder's own (absolute targets too): the stream comes from a
            # real folder, so no entry lies under a link and none leaves it (checked).
            extra = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(incoming, members=_checked(tar), numeric_owner=True, **extra)  # noqa: S202 (entries checked)
        with _open(f"{url}/manifest") as answer:
            expected = answer.read().decode().strip()
        got = manifest(incoming)
        if got != expected:
            raise RuntimeError(f"checksum mismatch: sent {expected}, received {got}")
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    # The stream's first entry (".") gave the folder the original's owner and mode.
    return Unpacked(incoming, expected)


def _open(url: str, wait: float = 120) -> Any:  # noqa: ANN401 (an HTTP response)
    """GET `url`, retrying while the sender's service is still starting."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return urllib.request.urlopen(url, timeout=60)  # noqa: S310 (http on a private network)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _checked(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The stream's entries, refusing any that would land outside the folder, without
    setuid/setgid bits."""
    for member in tar:
        for name in (member.name, member.linkname if member.islnk() else ""):
            if name.startswith("/") or ".." in Path(name).parts:
                raise RuntimeError(f"refused entry {member.name!r}: it leaves the home")
        member.mode &= ~0o6000
        yield member


def remove(root: str, username: str) -> None:
    shutil.rmtree(home_path(root, username))


def main(argv: list[str]) -> int:
    command, *args = argv or [""]
    if command == "send" and len(args) == 2:
        send(args[0], int(args[1]))
    elif command == "receive" and len(args) == 3:
        print(json.dumps(receive(*args)))
    elif command == "replace" and len(args) == 3:
        print(json.dumps(replace(*args)))
    elif command == "remove" and len(args) == 2:
        remove(*args)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
