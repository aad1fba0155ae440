"""The usage ledger: one JSON line per server start and stop, appended by the spawner to a
file in the hub's state folder (so it is in the backups), and the report `gpuhub-admin
usage` makes of it: server-hours and GPU-hours per user or per group.

A session runs from its server's start (the spawner's start returned) to its stop; one
still running counts until now; a start that finds its server's previous session open
(the hub died before recording the stop) closes that one there. A report clips sessions to
its window; a session counts for each group its user was in at its start ('-': none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

START, STOP = "start", "stop"
NO_GROUP = "-"
SINCE = re.compile(r"^(\d+)([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Event:
    event: Literal["start", "stop"]
    time: str  # ISO 8601, UTC
    user: str
    server: str = ""
    groups: tuple[str, ...] = ()
    profile: str = ""
    gpus: int = 0


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def record(path: str | Path, event: Event) -> None:
    """Append one event (one small write: lines of concurrent writers never mix)."""
    line = json.dumps(asdict(event), separators=(",", ":")) + "\n"
    with Path(path).open("a", encoding="utf-8") as ledger:
        ledger.write(line)


def read(path: str | Path) -> list[Event]:
    """Every event; a line that is not a whole event (a write cut short) is skipped."""
    events = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            data = json.loads(line)
            data["groups"] = tuple(data.get("groups") or ())
            events.append(Event(**data))
        except (ValueError, TypeError):
            continue
    return events


@dataclass
class Session:
    user: str
    server: str
    groups: tuple[str, ...]
    profile: str
    gpus: int
    start: datetime
    stop: datetime | None = None


def sessions(events: Iterable[Event]) -> list[Session]:
    """Starts and stops paired per server (user and server name), in ledger order."""
    done: list[Session] = []
    open_: dict[tuple[str, str], Session] = {}
    for event in events:
        key, at = (event.user, event.server), datetime.fromisoformat(event.time)
        previous = open_.pop(key, None)
        if previous is not None:
            previous.stop = at
            done.append(previous)
        if event.event == START:
            open_[key] = Session(
                event.user, event.server, event.groups, event.profile, event.gpus, at
            )
    return done + list(open_.values())


@dataclass
class Row:
    key: str
    sessions: int = 0
    server_hours: float = 0.0
    gpu_hours: float = 0.0
    users: set[str] = field(default_factory=set)


def pieces(session: Session, since: datetime, now: datetime) -> Iterator[tuple[date, float]]:
    """The session's hours inside [since, now], cut at each midnight (UTC): (day, hours)."""
    start = max(session.start, since).astimezone(UTC)
    stop = min(session.stop or now, now).astimezone(UTC)
    while start < stop:
        midnight = datetime.combine(start.date() + timedelta(days=1), time(), tzinfo=UTC)
        end = min(stop, midnight)
        yield start.date(), (end - start).total_seconds() / 3600
        start = end


def add(rows: dict[str, Row], session: Session, by: Literal["user", "group"], hours: float) -> None:
    """Count `hours` of `session` for its user, or for each of its groups."""
    for key in [session.user] if by == "user" else list(session.groups) or [NO_GROUP]:
        row = rows.setdefault(key, Row(key))
        row.sessions += 1
        row.server_hours += hours
        row.gpu_hours += hours * session.gpus
        row.users.add(session.user)


def report(
    all_sessions: Sequence[Session],
    since: datetime,
    by: Literal["user", "group"],
    now: datetime | None = None,
) -> list[Row]:
    """Hours inside [since, now] per user or group, largest GPU-hours first."""
    now = now or datetime.now(UTC)
    rows: dict[str, Row] = {}
    for session in all_sessions:
        hours = sum(h for _, h in pieces(session, since, now))
        if hours:
            add(rows, session, by, hours)
    return sorted(rows.values(), key=lambda r: (-r.gpu_hours, -r.server_hours, r.key))


def daily(
    all_sessions: Sequence[Session],
    since: datetime,
    by: Literal["user", "group"],
    now: datetime | None = None,
) -> dict[date, dict[str, Row]]:
    """The same hours per day (UTC) and user or group, every day of the window listed."""
    now = now or datetime.now(UTC)
    days: dict[date, dict[str, Row]] = {}
    day = since.astimezone(UTC).date()
    while day <= now.date():
        days[day] = {}
        day += timedelta(days=1)
    for session in all_sessions:
        for day, hours in pieces(session, since, now):
            add(days[day], session, by, hours)
    return days


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'7d', '24h', '90m', '2w', or an ISO date/time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    match = SINCE.match(text.strip())
    if match:
        return now - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a span such as 7d, 24h, 90m or 2w, or a date such as "
            "2026-12-01"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
