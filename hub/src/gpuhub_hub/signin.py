"""Campus sign-in: the directory's (LDAP) groups as hub groups, and who may log in.

JupyterHub's ldapauthenticator checks membership only of the groups it is told to allow
(by DN) and hands no groups to the hub. gpuhub's subclass reads the person's groups while
it is bound as them (or as the search account) and returns them as the login's `groups`,
which JupyterHub applies with `Authenticator.manage_groups`: a person added to `staff` in
the directory gets staff limits and profiles at their next login, and loses them when
removed. OpenID Connect needs no subclass: oauthenticator's GenericOAuthenticator does the
same from the token's groups claim (configure.py sets it up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPInvalidDnError, LDAPStartTLSError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn
from ldapauthenticator import LDAPAuthenticator
from traitlets import Set, Unicode

from . import localgroups

GROUPS_KEY = "gpuhub_groups"  # carried from get_user_attributes to authenticate
STARTTLS_TRIES = 3


def login_name_of(userdn: str) -> str:
    """The value of a DN's first part (uid=alice,ou=people,... -> alice)."""
    try:
        return str(parse_dn(userdn)[0][1])
    except (IndexError, ValueError, LDAPInvalidDnError):
        return ""


class GpuhubLDAPAuthenticator(LDAPAuthenticator):
    """LDAPAuthenticator whose logins carry the person's directory groups."""

    group_search_base = Unicode(
        "", config=True, help="Where the groups are; empty: the person's groups are not read."
    )
    group_filter = Unicode(
        "(|(member={userdn})(uniqueMember={userdn})(memberUid={uid}))",
        config=True,
        help="The person's groups: {userdn} is their DN, {uid} its first value.",
    )
    group_name_attribute = Unicode("cn", config=True, help="The attribute naming a group.")
    gpuhub_allowed_groups = Set(
        Unicode(), help="Only their members may log in (allow_all off); empty: every person."
    ).tag(config=True, allow_config=True)
    gpuhub_admin_groups = Set(
        Unicode(), config=True, help="Their members are admins; empty: the hub decides."
    )

    def directory_groups(self, conn: ldap3.Connection, userdn: str) -> list[str]:
        if not self.group_search_base:
            return []
        query = self.group_filter.format(
            userdn=escape_filter_chars(userdn), uid=escape_filter_chars(login_name_of(userdn))
        )
        conn.search(
            search_base=self.group_search_base,
            search_scope=ldap3.SUBTREE,
            search_filter=query,
            attributes=[self.group_name_attribute],
        )
        names = set()
        for entry in conn.entries:
            values = entry.entry_attributes_as_dict.get(self.group_name_attribute) or []
            names.update(str(v) for v in values)
        return sorted(names)

    def get_connection(self, userdn: str, password: str) -> ldap3.Connection | None:
        # OpenLDAP 2.5 answers a StartTLS on a fresh connection, now and then under load,
        # with "cannot start TLS when operations are outstanding" (the previous user of
        # the same socket slot is still being torn down): a new connection succeeds.
        for attempt in range(1, STARTTLS_TRIES + 1):
            try:
                return super().get_connection(userdn, password)
            except LDAPStartTLSError as err:
                if "operationsError" not in str(err) or attempt == STARTTLS_TRIES:
                    raise
                self.log.warning("LDAP StartTLS refused (%s): trying a new connection", err)
        return None

    def get_user_attributes(self, conn: ldap3.Connection, userdn: str) -> dict[str, Any]:
        # Called once per login, bound, with the person's DN: the groups ride along.
        attributes = dict(super().get_user_attributes(conn, userdn) or {})
        attributes[GROUPS_KEY] = self.directory_groups(conn, userdn)
        return attributes

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:  # noqa: ANN401
        try:
            model = await super().authenticate(handler, data)
        except LDAPException as err:
            # An unreachable directory or a certificate that does not check out: the
            # login fails (not a server error), the log says why.
            self.log.error("LDAP login of %r failed: %s", data.get("username"), err)
            return None
        if model is None:
            return None
        groups = model["auth_state"]["user_attributes"].pop(GROUPS_KEY, [])
        model["groups"] = groups
        if self.gpuhub_admin_groups:
            # JupyterHub revokes admin when this is False (unless in admin_users).
            model["admin"] = bool(self.gpuhub_admin_groups.intersection(groups))
        self.log.info("LDAP login of %s, groups: %s", model["name"], ", ".join(groups) or "none")
        return model

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        # Replaces the parent's check (allowed groups by DN, allow_all).
        if not self.gpuhub_allowed_groups or username in self.admin_users:
            return True
        groups = set((auth_model or {}).get("groups") or ())
        entitled = self.gpuhub_allowed_groups | self.gpuhub_admin_groups
        if groups & entitled:
            return True
        self.log.warning(
            "LDAP login of %s refused: in none of the allowed groups (%s)",
            username,
            ", ".join(sorted(entitled)),
        )
        return False


def local_groups_hook(path: str) -> Callable[[Any, Any, dict[str, Any]], dict[str, Any]]:
    """A post-auth hook adding the groups users.yml gave (`path`, localgroups.py) to the
    directory's or provider's, which JupyterHub then makes the person's hub groups."""

    def hook(authenticator: Any, handler: Any, authentication: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN401
        extra = localgroups.of(path, authentication["name"])
        if extra:
            groups = set(authentication.get("groups") or ())
            authentication["groups"] = sorted(groups | set(extra))
        return authentication

    return hook
