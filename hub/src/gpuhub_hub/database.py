"""The hub's SQLite database in write-ahead-log mode.

JupyterHub commits on its event loop. In SQLite's default rollback-journal mode every
commit waits for fsync of the journal and the database; a profile of the load benchmark
(100 users logging in while their containers start) found the event loop inside those
commits for 17 s of 150. With a write-ahead log and synchronous=NORMAL a commit appends to
the log without waiting for the disk; the log is synced at checkpoints. A power cut can lose
the last commits before a checkpoint, never the database (SQLite's documented guarantee).
The mode is kept in the file; synchronous is set on each new connection.

Whoever puts a copy of the database back (restore, upgrade rollback) removes the -wal and
-shm files first: a log left from the replaced database would be replayed into the copy.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")


def _write_ahead_log(connection: Any, _record: Any) -> None:  # noqa: ANN401 (DBAPI objects)
    if not isinstance(connection, sqlite3.Connection):
        return
    cursor = connection.cursor()
    try:
        for pragma in PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def use_write_ahead_log() -> None:
    """Every SQLite connection this process opens from now on (JupyterHub makes its
    engine after reading its configuration)."""
    if not event.contains(Engine, "connect", _write_ahead_log):
        event.listen(Engine, "connect", _write_ahead_log)
