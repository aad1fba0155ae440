"""NativeAuthenticator plus a small REST API for its accounts (password, approval).

NativeAuthenticator keeps passwords and approvals in its own table and offers only HTML
pages to manage them. The hub caches that table's rows in its database session, so a
second process writing the table would be ignored until a restart. These handlers run
inside the hub, use NativeAuthenticator's own model and methods, and need the
`admin:users` scope, so the management CLI (a hub service) can manage accounts safely.
As in JupyterHub's own API, only an admin caller may change (or test the password of)
an admin's account.

The accounts of `admin_users` exist before the hub first answers: at start, an admin
with no account gets one, approved, with the password Ansible generated into
`initial_password_dir/<name>` (root 0600). So no visitor can claim an admin name by
signing up first.

    GET  /hub/api/gpuhub/accounts              [{"name", "approved"}]
    GET  /hub/api/gpuhub/accounts/<name>       {"name", "approved"}
    PUT  /hub/api/gpuhub/accounts/<name>       {"password"?, "approved"?} -> {"created", "changed"}
    DELETE /hub/api/gpuhub/accounts/<name>     (a sign-up that is not a hub user yet)
    POST /hub/api/gpuhub/accounts/<name>/check {"password"} -> {"valid"}
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bcrypt
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from prometheus_client import Histogram
from tornado import web
from traitlets import Unicode

from .names import username_problem
from .nativecompat import compatible


class GpuhubAuthenticator(NativeAuthenticator):
    """NativeAuthenticator with the accounts API (configured as c.NativeAuthenticator)."""

    initial_password_dir = Unicode(
        "",
        config=True,
        help="Folder of <admin name> files: the first password of each admin in admin_users.",
    )

    def add_user(self, user: Any) -> None:  # noqa: ANN401 (JupyterHub's User wrapper or row)
        """JupyterHub calls this for every user at start, before the hub answers."""
        super().add_user(user)
        if user.name in self.admin_users and self.initial_password_dir:
            self.ensure_admin_account(user.name)

    def ensure_admin_account(self, name: str) -> None:
        if UserInfo.find(self.db, name) is not None:
            return  # made earlier (or by gpuhub-admin): never reset a password here
        path = Path(self.initial_password_dir) / name
        try:
            password = path.read_text().strip()
        except OSError as err:
            self.log.error("admin %s has no account and %s is unreadable: %s", name, path, err)
            return
        # At start, before the hub answers: nothing waits on the event loop yet.
        self.new_account(name, hash_password(password), approved=True)
        self.db.commit()
        self.log.info("gpuhub accounts: created admin %s with the password in %s", name, path)

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:  # noqa: ANN401
        return [
            *compatible(super().get_handlers(app)),
            (r"/api/gpuhub/accounts", AccountListHandler),
            (r"/api/gpuhub/accounts/([^/]+)", AccountHandler),
            (r"/api/gpuhub/accounts/([^/]+)/check", PasswordCheckHandler),
        ]

    async def authenticate(self, handler: Any, data: dict[str, Any]) -> str | None:  # noqa: ANN401
        """NativeAuthenticator's login, with the bcrypt check (about 0.2 s of CPU) in a worker
        thread: on the event loop it stalled every other request of the hub for the whole
        hash, at every login."""
        name = self.normalize_username(data["username"])
        info = self.get_user(name)
        if info is None or (self.allowed_failed_logins and self.is_blocked(name)):
            return None
        valid = await password_matches(info, str(data.get("password") or ""))
        checks = [bool(info.is_authorized), valid]
        if info.has_2fa:
            checks.append(info.is_valid_token(data.get("2fa")))
        if all(checks):
            self.successful_login(name)
            return name
        self.add_login_attempt(name)
        return None

    def weak_password_reason(self, password: str) -> str | None:
        if len(password) < self.minimum_password_length:
            return f"the password is shorter than {self.minimum_password_length} characters"
        if self.check_common_password and self.is_password_common(password):
            return "the password is on the list of common passwords"
        return None

    def new_account(self, name: str, hashed: bytes, approved: bool) -> UserInfo:
        """A password account (hashed by hash_password) added to the hub's session (the
        caller commits)."""
        info = UserInfo(username=name, password=b"", is_authorized=approved)
        self.set_password(info, hashed)
        self.db.add(info)
        return info

    def set_password(self, info: UserInfo, hashed: bytes) -> None:
        info.password = hashed
        # A new password also lifts a lock from failed logins.
        self.login_attempts.pop(info.username, None)


# A bcrypt hash or check costs about 0.2 s of CPU. On the event loop it stalls every other
# request of the hub for that long: at every login, and for 20 s when a roster of 100
# accounts arrives (seen in a profile of the load benchmark). Handlers run it in threads
# of their own, one per core, at a lower priority (nice +10) than the event loop's thread:
# hashes on every core would otherwise take turns with the loop instead of yielding to it.
# (One thread alone fell behind 2 logins/s while user containers took the CPU.)
NICE = 10


def _lower_priority() -> None:
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


_HASHING = ThreadPoolExecutor(
    os.cpu_count() or 2, thread_name_prefix="bcrypt", initializer=_lower_priority
)

# On the hub's /hub/metrics beside JupyterHub's own (the default registry): how long each
# password check took as the login or API call waiting on it saw it, the wait for a free
# worker included. bench/load.py splits the time per login with it.
PASSWORD_CHECK_SECONDS = Histogram(
    "gpuhub_password_check_seconds",
    "Seconds a password check took (bcrypt in a worker thread, the wait for one included)",
)


def hash_password(password: str) -> bytes:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt())


async def hashed_password(password: str) -> bytes:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, hash_password, password)


def _matches(password: str, hashed: bytes) -> bool:
    return bcrypt.checkpw(password.encode(), hashed)


async def password_matches(info: UserInfo, password: str) -> bool:
    loop = asyncio.get_running_loop()
    with PASSWORD_CHECK_SECONDS.time():
        return await loop.run_in_executor(_HASHING, _matches, password, bytes(info.password))


def _model(info: UserInfo) -> dict[str, Any]:
    return {"name": info.username, "approved": bool(info.is_authorized)}


class _AccountsBase(APIHandler):
    @property
    def native(self) -> GpuhubAuthenticator:
        if not isinstance(self.authenticator, GpuhubAuthenticator):
            raise web.HTTPError(409, "accounts exist only with auth.mode native")
        return self.authenticator

    def guard_admin_target(self, name: str) -> None:
        """An admin's account is changed only by an admin (as JupyterHub's users API)."""
        target = self.find_user(name)
        is_admin = name in self.native.admin_users or bool(target and target.admin)
        if is_admin and not self.current_user.admin:
            raise web.HTTPError(403, "Only admins can modify other admins")

    def body(self) -> dict[str, Any]:
        data = self.get_json_body() or {}
        if not isinstance(data, dict):
            raise web.HTTPError(400, "expected a JSON object")
        return data


class AccountListHandler(_AccountsBase):
    @needs_scope("admin:users")
    def get(self) -> None:
        accounts = UserInfo.all_users(self.native.db)
        self.write({"accounts": sorted((_model(a) for a in accounts), key=lambda a: a["name"])})


class AccountHandler(_AccountsBase):
    @needs_scope("admin:users")
    def get(self, name: str) -> None:
        info = UserInfo.find(self.native.db, name)
        if info is None:
            raise web.HTTPError(404, f"no account {name}")
        self.write(_model(info))

    @needs_scope("admin:users")
    async def put(self, name: str) -> None:
        native, data = self.native, self.body()
        unknown = set(data) - {"password", "approved"}
        if unknown:
            raise web.HTTPError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        problem = username_problem(name)
        if problem:
            raise web.HTTPError(400, problem)
        self.guard_admin_target(name)
        password, approved = data.get("password"), data.get("approved")
        if password is not None:
            if not isinstance(password, str):
                raise web.HTTPError(400, "password must be a string")
            weak = native.weak_password_reason(password)
            if weak:
                raise web.HTTPError(400, f"{name}: {weak}")
        if approved is not None and not isinstance(approved, bool):
            raise web.HTTPError(400, "approved must be true or false")

        info = UserInfo.find(native.db, name)
        if info is None and password is None:
            raise web.HTTPError(400, f"{name}: a new account needs a password")
        same = info is not None and password is not None and await password_matches(info, password)
        hashed = await hashed_password(password) if password is not None and not same else None
        # Other requests ran while the hash was made: look again.
        info = UserInfo.find(native.db, name)
        created = changed = False
        if info is None:
            if hashed is None:
                raise web.HTTPError(409, f"{name}: the account went away meanwhile")
            info = native.new_account(name, hashed, approved=approved is not False)
            created = changed = True
        else:
            if hashed is not None:
                native.set_password(info, hashed)
                changed = True
            if approved is not None and bool(info.is_authorized) != approved:
                info.is_authorized = approved
                changed = True
        if changed:
            native.db.commit()
            self.log.info("gpuhub accounts: %s %s", "created" if created else "updated", name)
        self.write({**_model(info), "created": created, "changed": changed})

    @needs_scope("admin:users")
    def delete(self, name: str) -> None:
        """Delete a sign-up that never became a hub user (hub users: DELETE /users/<name>)."""
        self.guard_admin_target(name)
        info = UserInfo.find(self.native.db, name)
        if info is None:
            raise web.HTTPError(404, f"no account {name}")
        self.native.db.delete(info)
        self.native.db.commit()
        self.set_status(204)


class PasswordCheckHandler(_AccountsBase):
    @needs_scope("admin:users")
    async def post(self, name: str) -> None:
        password = self.body().get("password")
        if not isinstance(password, str):
            raise web.HTTPError(400, "password must be a string")
        self.guard_admin_target(name)
        info = UserInfo.find(self.native.db, name)
        self.write({"valid": info is not None and await password_matches(info, password)})
