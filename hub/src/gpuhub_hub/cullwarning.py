"""Warnings before a cull, from the rules the culler follows (culling.py): on the hub's
home page (JupyterHub's template_vars["announcement_home"], called with the user) and
inside JupyterLab, whose gpuhub extension asks the user's server, which asks the hub:

    GET /hub/api/gpuhub/cull/<user>[/<server>]   {"warning", "deadline", "keepable"}

(scope access:servers on that server: the server's own token has it, so has its user).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from .culling import CullRules, Deadline

ROUTE = r"/api/gpuhub/cull/([^/]+)/?([^/]*)"


def warning_text(subject: str, deadline: Deadline, now: datetime, keep: str) -> str:
    """`subject` will be stopped at ..., and how to `keep` it (unless it is at its
    maximum age, which nothing moves)."""
    minutes = max(0, round((deadline.when - now).total_seconds() / 60))
    head = f"{subject} will be stopped at {deadline.when:%H:%M UTC} (in about {minutes} min)"
    if not deadline.keepable:
        return f"{head}: it has reached its maximum age. Save your work."
    return f"{head} because it is idle: {keep} to keep it running."


def server_model(spawner: Any) -> dict[str, Any]:  # noqa: ANN401 (jupyterhub.spawner.Spawner)
    """What the rules read of a server, as the hub's API shows it to the culler."""
    return {
        "user_options": spawner.user_options,
        "started": spawner.orm_spawner.started,
        "last_activity": spawner.orm_spawner.last_activity,
    }


def home_warnings(rules: CullRules, announcement: str = "") -> Callable[[Any], str | None]:
    """template_vars["announcement_home"]: the viewing user's warnings (HTML) before the
    hub's announcement, or None (the page then shows the announcement alone)."""

    def warnings(user: Any) -> str | None:  # noqa: ANN401 (jupyterhub.user.User or None)
        if user is None:
            return None
        now = datetime.now(UTC)
        lines = []
        for name, spawner in sorted(user.spawners.items()):
            due = rules.warning_due(server_model(spawner), now) if spawner.ready else None
            if due is not None:
                label = escape(f"{user.name}/{name}" if name else user.name)
                link = f'<a href="{escape(user.server_url(name))}">open it</a> and work in it'
                lines.append(warning_text(f"Your server {label}", due, now, link))
        return "<br>".join([*lines, *([announcement] if announcement else [])]) or None

    return warnings


class CullWarningHandler(APIHandler):
    """A server's cull warning, for JupyterLab (plain text; null when none is due)."""

    def initialize(self, rules: CullRules) -> None:
        self.rules = rules

    @needs_scope("access:servers")
    def get(self, user_name: str, server_name: str = "") -> None:
        user = self.find_user(user_name)
        spawner = user.spawners.get(server_name) if user else None
        if spawner is None or not spawner.ready:
            raise web.HTTPError(404, f"{user_name} has no running server {server_name!r}")
        now = datetime.now(UTC)
        deadline = self.rules.deadline(server_model(spawner))
        due = deadline is not None and self.rules.warns(deadline, now)
        keep = "run a cell or edit a file"
        self.write(
            {
                "warning": warning_text("This server", deadline, now, keep) if due else None,
                "deadline": deadline.when.isoformat() if deadline else None,
                "keepable": deadline.keepable if deadline else True,
            }
        )
