"""NativeAuthenticator 1.3.0 on JupyterHub 6.

Its login form handler times each login with the handler's `statsd` client, which
JupyterHub 6 removed from its handlers: on JupyterHub 6 every form login answered 500
(AttributeError). gpuhub serves NativeAuthenticator's own login handler, given a statsd
that records nothing where JupyterHub has none; on JupyterHub 5 it is the handler as it was.
"""

from __future__ import annotations

from typing import Any

from jupyterhub.handlers.base import BaseHandler
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler


class _Timer:
    def start(self) -> _Timer:
        return self

    def stop(self, send: bool = True) -> None:
        return None


class NullStats:
    """The part of a statsd client NativeAuthenticator's handlers call (a login's timer):
    records nothing."""

    def timer(self, stat: str) -> _Timer:
        return _Timer()


class LoginHandler(NativeLoginHandler):
    """NativeAuthenticator's login form, on JupyterHub 5 and 6."""


if not hasattr(BaseHandler, "statsd"):  # JupyterHub 6 and later
    LoginHandler.statsd = NullStats()  # type: ignore[attr-defined]


def compatible(handlers: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """NativeAuthenticator's handlers, its login handler replaced by the one above."""
    return [(url, LoginHandler if cls is NativeLoginHandler else cls) for url, cls in handlers]
