"""Roster parsing: YAML and CSV, every problem named."""

from __future__ import annotations

import pytest
from gpuhub_hub.admin.roster import RosterError, Wanted, parse
from gpuhub_hub.names import username_problem


def test_yaml_forms() -> None:
    text = (
        "users:\n  - alice\n"
        "  - {name: bob, admin: true, groups: [staff, ta], password: s3cret-long}\n"
    )
    assert parse(text) == [
        Wanted("alice"),
        Wanted("bob", admin=True, groups=("staff", "ta"), password="s3cret-long"),  # noqa: S106
    ]
    assert parse("- {username: carol, groups: 'b a'}") == [Wanted("carol", groups=("a", "b"))]


def test_csv_with_empty_cells_and_blank_lines() -> None:
    text = "\ufeffName,Admin,Groups,Password\nalice,no,staff;ta,\n\nbob,,,pw-long-enough\n"
    assert parse(text, "csv") == [
        Wanted("alice", admin=False, groups=("staff", "ta")),
        Wanted("bob", password="pw-long-enough"),  # noqa: S106
    ]


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("- Alice", "yaml", "uppercase letters"),
        ("- 'a b'", "yaml", "contains a space"),
        ("- a/b", "yaml", "contains a slash"),
        ("- '...'", "yaml", "not a valid user name"),
        ("- ''", "yaml", "must not be empty"),
        ("- alice\n- alice", "yaml", "alice is listed twice"),
        ("- {name: alice, admin: maybe}", "yaml", "admin must be true or false"),
        ("- {name: alice, role: x}", "yaml", "unknown field(s) role"),
        ("alice: 1", "yaml", "must be a list"),
        ("[", "yaml", "not valid YAML"),
        ("user,admin\nalice,no\n", "csv", "header row with a `name` column"),
        ("name\nalice,extra\n", "csv", "more cells than header columns"),
        ("- alice", "toml", "unknown roster format"),
    ],
)
def test_bad_rosters(text: str, fmt: str, message: str) -> None:
    with pytest.raises(RosterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text, fmt)


@pytest.mark.parametrize("name", ["alice", "a", "j.smith", "user_2", "x-1", "0day", "a" * 32])
def test_good_names(name: str) -> None:
    assert username_problem(name) is None


@pytest.mark.parametrize(
    "name", ["", " ", "Alice", "a b", "a/b", ".hidden", "-x", "a" * 33, "é", None]
)
def test_bad_names(name: object) -> None:
    assert username_problem(name)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A YAML error on the line with the password: PyYAML quotes that line.
        (
            "- {name: amy, password: 'Hunter2-Secret}\n",
            "the roster is not valid YAML at line 2, column 1",
        ),
        ("- name: amy\n  password: Hunter2-Secret: x\n", "not valid YAML at line 2, column 27"),
        # An entry that is neither a name nor a mapping.
        ("- [amy, Hunter2-Secret]\n", "entry 1: expected a user name or a mapping, got a list"),
    ],
)
def test_errors_never_repeat_a_password(text: str, message: str) -> None:
    with pytest.raises(RosterError) as error:
        parse(text)
    assert message in str(error.value)
    assert "Hunter2" not in str(error.value)
