"""A small client of JupyterHub's REST API and gpuhub's accounts API, as the
gpuhub-admin service."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from ..settings import Settings

PAGINATION = "application/jupyterhub-pagination+json"


def part(name: str) -> str:
    """`name` as one URL path segment: every reserved character escaped, dots too, so
    neither '/' nor '.'/'..' can make a request reach another resource."""
    return quote(name, safe="").replace(".", "%2E")


class HubError(RuntimeError):
    """The hub refused a request or did not answer; the message says why."""


@dataclass(frozen=True)
class Account:
    """A hub user as the CLI sees it: JupyterHub's record plus NativeAuthenticator's."""

    name: str
    admin: bool
    groups: tuple[str, ...]
    servers: dict[str, dict[str, Any]]
    approved: bool | None  # None: no password account (or workshop mode)
    in_hub: bool = True  # False: a sign-up that has not logged in yet

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "admin": self.admin,
            "groups": list(self.groups),
            "approved": self.approved,
            "servers": sorted(self.servers),
            "signed_up_only": not self.in_hub,
        }


def api_url(settings: Settings) -> str:
    """The hub's API on its own bind port, as seen from inside the hub container."""
    port = urlsplit(settings.hub.hub_bind_url).port or 80
    return f"http://127.0.0.1:{port}{settings.hub.base_url}hub/api"


class HubAPI:
    def __init__(self, url: str, token: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def request(self, method: str, path: str, ok: tuple[int, ...] = (200,), **kw: Any) -> Any:  # noqa: ANN401
        try:
            reply = self.session.request(method, self.url + path, timeout=self.timeout, **kw)
        except requests.RequestException as err:
            raise HubError(f"the hub API at {self.url} does not answer: {err}") from None
        if reply.status_code not in ok:
            try:
                message = reply.json().get("message") or reply.reason
            except ValueError:
                message = reply.reason
            raise HubError(f"{method} {path}: {reply.status_code} {message}")
        return reply.json() if reply.content else None

    def _pages(self, path: str, key: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            sep = "&" if "?" in path else "?"
            page = self.request(
                "GET", f"{path}{sep}offset={offset}", headers={"Accept": PAGINATION}
            )
            if isinstance(page, list):  # an API without pagination
                return page
            items.extend(page["items"] if key is None else page[key])
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return items
            offset = following["offset"]

    # JupyterHub's own API
    def users(self) -> list[dict[str, Any]]:
        return self._pages("/users")

    def user(self, name: str) -> dict[str, Any] | None:
        reply = self.request("GET", f"/users/{part(name)}", ok=(200, 404))
        return None if reply is None or "name" not in reply else reply

    def create_user(self, name: str, admin: bool) -> None:
        self.request("POST", f"/users/{part(name)}", ok=(201,), json={"admin": admin})

    def set_admin(self, name: str, admin: bool) -> None:
        self.request("PATCH", f"/users/{part(name)}", json={"admin": admin})

    def delete_user(self, name: str) -> None:
        self.request("DELETE", f"/users/{part(name)}", ok=(204,))

    def groups(self) -> set[str]:
        return {group["name"] for group in self._pages("/groups")}

    def create_group(self, name: str) -> None:
        self.request("POST", f"/groups/{part(name)}", ok=(201,))

    def add_to_group(self, group: str, user: str) -> None:
        self.request("POST", f"/groups/{part(group)}/users", json={"users": [user]})

    def remove_from_group(self, group: str, user: str) -> None:
        self.request("DELETE", f"/groups/{part(group)}/users", json={"users": [user]})

    def stop_server(self, user: str, server: str = "", wait: float = 120) -> None:
        """Stop one server (the default one for '') and wait until it has stopped."""
        path = f"/users/{part(user)}/server" + (f"s/{part(server)}" if server else "")
        self.request("DELETE", path, ok=(202, 204, 400))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            model = self.user(user)
            if model is None or server not in (model.get("servers") or {}):
                return
            time.sleep(1)
        raise HubError(f"{user}'s server {server or '(default)'} did not stop in {wait:.0f} s")

    # gpuhub's accounts API (NativeAuthenticator's records)
    def accounts(self) -> dict[str, bool] | None:
        """name -> approved, or None when the hub has no password accounts (workshop)."""
        reply = self.request("GET", "/gpuhub/accounts", ok=(200, 404, 409))
        if reply is None or "accounts" not in reply:
            return None
        return {a["name"]: a["approved"] for a in reply["accounts"]}

    def put_account(
        self, name: str, password: str | None = None, approved: bool | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if password is not None:
            body["password"] = password
        if approved is not None:
            body["approved"] = approved
        return self.request("PUT", f"/gpuhub/accounts/{part(name)}", json=body)

    def delete_account(self, name: str) -> None:
        self.request("DELETE", f"/gpuhub/accounts/{part(name)}", ok=(204, 404))

    def password_valid(self, name: str, password: str) -> bool:
        reply = self.request(
            "POST", f"/gpuhub/accounts/{part(name)}/check", json={"password": password}
        )
        return bool(reply["valid"])

    # Both together
    def snapshot(self) -> dict[str, Account]:
        """Every user: hub users plus sign-ups that have not logged in yet."""
        return self.snapshot_with(self.accounts())

    def snapshot_with(self, approvals: dict[str, bool] | None) -> dict[str, Account]:
        """As snapshot(), with the accounts (see accounts()) already fetched."""
        found = {
            u["name"]: Account(
                name=u["name"],
                admin=bool(u.get("admin")),
                groups=tuple(sorted(u.get("groups") or [])),
                servers=u.get("servers") or {},
                approved=None if approvals is None else approvals.get(u["name"]),
            )
            for u in self.users()
        }
        for name, approved in (approvals or {}).items():
            if name not in found:
                found[name] = Account(name, False, (), {}, approved, in_hub=False)
        return dict(sorted(found.items()))
