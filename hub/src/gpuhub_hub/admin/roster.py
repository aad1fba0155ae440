"""Rosters: the users a hub should have, from YAML (or JSON) or CSV.

YAML: a list, or a mapping with a `users` list; each entry a user name or a mapping
with `name`, and optionally `admin`, `groups` and `password`:

    users:
      - alice
      - {name: bob, admin: true, groups: [staff]}

CSV: a header row naming the columns `name` (or `username`), and optionally `admin`,
`groups` (separated by spaces or ';') and `password`.

A field left out (or an empty CSV cell) means "leave as it is" for existing users.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any

import yaml

from ..names import username_problem

FIELDS = ("name", "admin", "groups", "password")
TRUE, FALSE = {"true", "yes", "1", "y"}, {"false", "no", "0", "n"}


class RosterError(ValueError):
    """A roster that cannot be used; the message names the entry."""


@dataclass(frozen=True)
class Wanted:
    name: str
    admin: bool | None = None
    groups: tuple[str, ...] | None = None
    password: str | None = None


def _flag(value: Any, where: str) -> bool | None:  # noqa: ANN401
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE | FALSE:
        return text in TRUE
    raise RosterError(f"{where}: admin must be true or false, got {value!r}")


def _groups(value: Any, where: str) -> tuple[str, ...] | None:  # noqa: ANN401
    if value is None or value == "":
        return None
    items = re.split(r"[;,\s]+", value.strip()) if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(g, str) for g in items):
        raise RosterError(f"{where}: groups must be a list of names, got {value!r}")
    return tuple(sorted({g for g in items if g}))


def _entry(raw: Any, where: str) -> Wanted:  # noqa: ANN401
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        # The entry itself is not shown: it may hold a password.
        raise RosterError(f"{where}: expected a user name or a mapping, got a {type(raw).__name__}")
    raw = {("name" if k == "username" else k): v for k, v in raw.items()}
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise RosterError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    name = raw.get("name")
    name = name.strip() if isinstance(name, str) else name
    problem = username_problem(name)
    if problem:
        raise RosterError(f"{where}: {problem}")
    password = raw.get("password")
    if password is not None and (not isinstance(password, str) or not password):
        raise RosterError(f"{where} ({name}): password must be a non-empty string")
    return Wanted(
        name=str(name),
        admin=_flag(raw.get("admin"), f"{where} ({name})"),
        groups=_groups(raw.get("groups"), f"{where} ({name})"),
        password=password or None,
    )


def _rows_yaml(text: str) -> list[Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        # PyYAML's message quotes the line, which may hold a password: say only where.
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RosterError(f"the roster is not valid YAML{where} (the line is not shown)") from None
    if isinstance(data, dict) and set(data) == {"users"}:
        data = data["users"]
    if not isinstance(data, list):
        raise RosterError("the roster must be a list of users (or a mapping with a `users` list)")
    return data


def _rows_csv(text: str) -> list[Any]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "name" not in header and "username" not in header:
        raise RosterError("the CSV roster needs a header row with a `name` column")
    reader.fieldnames = header
    rows = []
    for row in reader:
        if None in row:
            raise RosterError(f"CSV line {reader.line_num}: more cells than header columns")
        if any((v or "").strip() for v in row.values()):
            rows.append({k: (v or "").strip() or None for k, v in row.items()})
    return rows


def parse(text: str, fmt: str = "yaml") -> list[Wanted]:
    """Parse a roster; every problem is a RosterError naming the entry."""
    if fmt not in ("yaml", "csv"):
        raise RosterError(f"unknown roster format {fmt!r}: use yaml or csv")
    rows = _rows_csv(text) if fmt == "csv" else _rows_yaml(text)
    users = [_entry(row, f"entry {i}") for i, row in enumerate(rows, start=1)]
    seen: set[str] = set()
    for user in users:
        if user.name in seen:
            raise RosterError(f"{user.name} is listed twice")
        seen.add(user.name)
    return users
