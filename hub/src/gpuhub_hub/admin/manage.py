"""What gpuhub-admin does: bring users to a wanted state, remove them, report."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import localgroups
from ..names import username_problem
from ..settings import Settings
from .homestore import HomesError, HostHomes, homes_for
from .hubapi import Account, HubAPI
from .roster import Wanted


class ManageError(ValueError):
    """A request that cannot be carried out; nothing was changed."""


@dataclass
class Report:
    dry_run: bool = False
    added: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # protected from `exclusive`
    archives: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def any_change(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def note(self, name: str, what: str) -> None:
        self.changed.setdefault(name, []).append(what)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.any_change,
            "dry_run": self.dry_run,
            "added": self.added,
            "updated": self.changed,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "kept": self.kept,
            "archives": self.archives,
            "passwords": self.passwords,
        }


def known_groups(settings: Settings) -> set[str]:
    """Groups the settings name: declared ones, ones with limits, ones profiles are for."""
    spawner = settings.spawner
    return (
        set(settings.hub.groups)
        | set(spawner.group_limits)
        | {g for profile in spawner.profiles for g in profile.groups}
    )


class Manager:
    def __init__(
        self,
        api: HubAPI,
        settings: Settings,
        dry_run: bool = False,
        homes: HostHomes | None = None,
    ) -> None:
        self.api = api
        self.settings = settings
        self.homes = homes or homes_for(settings)
        self.report = Report(dry_run=dry_run)
        approvals = api.accounts()
        self.native = approvals is not None
        # ldap, oidc: groups come from the directory at each login; the hub adds its own.
        self.directory = settings.auth.mode in ("ldap", "oidc")
        self.users = api.snapshot_with(approvals)
        self._hub_groups: set[str] | None = None

    # checks made before anything changes
    def check_groups(self, wanted: list[Wanted]) -> None:
        known = known_groups(self.settings)
        for user in wanted:
            unknown = sorted(set(user.groups or ()) - known)
            if unknown:
                listed = ", ".join(sorted(known)) or "none"
                raise ManageError(
                    f"{user.name}: unknown group(s) {', '.join(unknown)}; groups the settings "
                    f"know: {listed} (add it to jupyterhub_groups)."
                )

    def check_removable(self, name: str) -> None:
        if name in self.settings.hub.admin_users:
            raise ManageError(
                f"{name} is in jupyterhub_admin_users; take it out of that list first"
            )

    def new_password(self) -> str:
        length = max(16, self.settings.auth.minimum_password_length + 4)
        return secrets.token_urlsafe(length)[:length]

    def _run(self, *call: Any) -> None:  # noqa: ANN401
        if not self.report.dry_run:
            call[0](*call[1:])

    def _group(self, name: str) -> None:
        if self._hub_groups is None:
            self._hub_groups = self.api.groups()
        if name not in self._hub_groups:
            self._run(self.api.create_group, name)
            self._hub_groups.add(name)

    # one user
    def ensure(self, wanted: Wanted) -> None:
        """Make `wanted` exist, approved, with the admin flag, groups and password given."""
        self.check_groups([wanted])
        name, report = wanted.name, self.report
        if wanted.password and not self.native:
            raise ManageError(f"{name}: a password was given, but {self._no_passwords()}")
        current = self.users.get(name)
        added = current is None
        if added and self.native:
            # The password account first: a password the hub refuses (too short, too
            # common) then stops the request before the user exists.
            self._ensure_account(wanted, Account(name, False, (), {}, None), added)
        if current is None or not current.in_hub:
            self._run(self.api.create_user, name, bool(wanted.admin))
            if current is not None:
                report.note(name, "sign-up made a hub user")
            approved = True if added and self.native else getattr(current, "approved", None)
            current = Account(name, bool(wanted.admin), (), {}, approved)
        if wanted.admin is not None and current.admin != wanted.admin:
            self._run(self.api.set_admin, name, wanted.admin)
            report.note(name, "admin" if wanted.admin else "not admin")
        if wanted.groups is not None and self.directory:
            self._local_groups(name, current.groups, wanted.groups)
        elif wanted.groups is not None:
            for group in sorted(set(wanted.groups) - set(current.groups)):
                self._group(group)
                self._run(self.api.add_to_group, group, name)
                report.note(name, f"+group {group}")
            for group in sorted(set(current.groups) - set(wanted.groups)):
                self._run(self.api.remove_from_group, group, name)
                report.note(name, f"-group {group}")
        if self.native and not added:
            self._ensure_account(wanted, current, added)
        if added:
            report.added.append(name)
            report.changed.pop(name, None)
        elif name not in report.changed:
            report.unchanged.append(name)

    def _local_groups(self, name: str, current: tuple[str, ...], wanted: tuple[str, ...]) -> None:
        """ldap and oidc: `wanted` are the groups the hub adds to the directory's (kept in
        the local groups file, re-added at each login); the directory's stay."""
        path = self.settings.auth.local_groups_file
        if not path:
            raise ManageError("auth.local_groups_file is not set: re-run site.yml")
        record = localgroups.load(path)
        before = set(record.get(name, ()))
        for group in sorted(set(wanted) - set(current)):
            self._group(group)
            self._run(self.api.add_to_group, group, name)
            self.report.note(name, f"+group {group}")
        for group in sorted((before - set(wanted)) & set(current)):
            self._run(self.api.remove_from_group, group, name)
            self.report.note(name, f"-group {group}")
        if before != set(wanted):
            record[name] = sorted(wanted)
            self._run(localgroups.save, path, record)
            self.report.note(name, "groups the hub adds: " + (", ".join(sorted(wanted)) or "none"))

    def _ensure_account(self, wanted: Wanted, current: Account, added: bool) -> None:
        name, report = wanted.name, self.report
        if current.approved is None:  # no password account yet
            password = wanted.password or self.new_password()
            if not wanted.password:
                report.passwords[name] = password
            self._run(self.api.put_account, name, password, True)
            if not added:
                report.note(name, "password account created")
            return
        if not current.approved:
            self._run(self.api.put_account, name, None, True)
            report.note(name, "approved")
        if wanted.password and not self.api.password_valid(name, wanted.password):
            self._run(self.api.put_account, name, wanted.password, None)
            report.note(name, "password set")

    def set_password(self, name: str, password: str | None) -> None:
        current = self._existing(name)
        if not self.native:
            raise ManageError(self._no_passwords())
        new = password or self.new_password()
        self._run(self.api.put_account, name, new, None if current.approved is not None else True)
        if not password:
            self.report.passwords[name] = new
        self.report.note(name, "password set")

    def _no_passwords(self) -> str:
        mode = self.settings.auth.mode
        where = {
            "ldap": "the directory keeps them",
            "oidc": "the sign-on provider keeps them",
        }.get(mode, "anyone logs in without one")
        return f"auth.mode is {mode}: the hub has no passwords ({where})"

    def approve(self, name: str) -> None:
        if not self.native:
            raise ManageError(f"{self._no_passwords()}, and no sign-ups to approve")
        current = self._existing(name)
        if current.approved:
            self.report.unchanged.append(name)
            return
        self._run(self.api.put_account, name, None, True)
        self.report.note(name, "approved")

    def set_admin(self, name: str, admin: bool) -> None:
        current = self._existing(name)
        if not current.in_hub:
            raise ManageError(f"{name} has signed up but not logged in yet: approve them first")
        if current.admin == admin:
            self.report.unchanged.append(name)
            return
        self._run(self.api.set_admin, name, admin)
        self.report.note(name, "admin" if admin else "not admin")

    def remove(self, name: str, purge: bool = False) -> None:
        """Stop the user's servers, delete the user, archive (or with purge delete) files."""
        self.check_removable(name)
        named = not username_problem(name)  # a name made before the rule never had a home
        if named:
            try:
                self.homes.check(name)
            except HomesError as err:
                raise ManageError(str(err)) from None
        current = self.users.pop(name, None)
        if current is not None:
            for server in sorted(current.servers):
                self._run(self.api.stop_server, name, server)
            if current.in_hub:
                self._run(self.api.delete_user, name)
            if self.native:
                self._run(self.api.delete_account, name)
            path = self.settings.auth.local_groups_file
            if self.directory and path and name in (record := localgroups.load(path)):
                del record[name]
                self._run(localgroups.save, path, record)
        files_deleted = False
        if not named:
            pass
        elif purge:
            dry = self.report.dry_run
            files_deleted = self.homes.exists(name) if dry else self.homes.purge(name)
        elif current is not None and not self.report.dry_run:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            archive = self.homes.archive(name, stamp)
            if archive:
                self.report.archives[name] = archive
        if current is not None or files_deleted:
            self.report.removed.append(name)
        else:
            self.report.unchanged.append(name)

    # a whole roster
    def sync(self, roster: list[Wanted], exclusive: bool = False, purge: bool = False) -> None:
        self.check_groups(roster)
        given = [user.name for user in roster if user.password]
        if given and not self.native:
            raise ManageError(f"{', '.join(given)}: passwords given, but {self._no_passwords()}")
        wanted = {user.name for user in roster}
        for user in roster:
            self.ensure(user)
        if exclusive:
            for name in sorted(set(self.users) - wanted):
                if name in self.settings.hub.admin_users:
                    self.report.kept.append(name)
                else:
                    self.remove(name, purge)

    def _existing(self, name: str) -> Account:
        current = self.users.get(name)
        if current is None:
            raise self._missing(name)
        return current

    @staticmethod
    def _missing(name: str) -> ManageError:
        return ManageError(f"no user {name}")
