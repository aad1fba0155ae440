"""The one rule for user names (the settings, JupyterHub's sign-up and login through
Authenticator.username_pattern, the accounts API and the CLI), and the rule for names
of named servers."""

from __future__ import annotations

import re

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
GROUP = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
GROUP_RULE = "lowercase letters, digits, '.', '_', '-', up to 64"
# Named servers: letters, digits, '.', '_', '-', never starting with '.' (so never `.`
# or `..`, which URLs resolve as path steps).
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
SERVER_RULE = "1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
RULE = (
    "1 to 32 characters: lowercase letters, digits, '.', '_' or '-', "
    "starting with a letter or digit"
)


def username_problem(name: object) -> str | None:
    """Why `name` cannot be a user name, or None when it can."""
    if not isinstance(name, str) or not name.strip():
        return "a user name must not be empty"
    if USERNAME.match(name):
        return None
    if name.lower() != name and USERNAME.match(name.lower()):
        return (
            f"{name!r} has uppercase letters; JupyterHub lowercases names at login "
            f"(use {name.lower()})"
        )
    for char, what in (("/", "a slash"), (" ", "a space"), (",", "a comma"), ("@", "an '@'")):
        if char in name:
            return f"{name!r} contains {what}; {RULE}"
    if len(name) > 32:
        return f"{name!r} is {len(name)} characters long; {RULE}"
    return f"{name!r} is not a valid user name; {RULE}"


def check_username(name: object) -> str:
    """Return `name` when it is a valid user name, else raise ValueError saying why."""
    problem = username_problem(name)
    if problem:
        raise ValueError(problem)
    return str(name)


def group_problem(name: object) -> str | None:
    """Why `name` cannot be a group name, or None when it can."""
    if isinstance(name, str) and GROUP.match(name):
        return None
    return f"{name!r} must be {GROUP_RULE}"


def server_name_problem(name: str) -> str | None:
    """Why `name` cannot name a named server, or None ('' is the default server)."""
    if name == "" or SERVER_NAME.match(name):
        return None
    return f"{name!r} is not a valid server name; {SERVER_RULE}"
