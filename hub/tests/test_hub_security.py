"""The security review's findings against a real hub (real JupyterHub, NativeAuthenticator
and idle culler, started from the real jupyterhub_config.py): each test fails with the
protection it names taken out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from e2e.hubclient import HubClient
from gpuhub_hub.admin.hubapi import HubAPI, HubError
from jupyterhub import version_info
from livehub import ADMIN_PASSWORD, LiveHub, live_hub

PASSWORD = "correct-horse-battery"  # noqa: S105
ADMIN_TOKEN = "t" * 64  # the gpuhub-admin service's token in live_hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    # Sign-up on (the opt-in) so its holes can be probed; the culler may delete users,
    # which gives it `admin:users` without being an admin.
    with live_hub(
        tmp_path_factory.mktemp("hub"),
        auth={"enable_signup": True},
        culler={"enabled": True, "cull_users": True, "timeout": 86400, "every": 3600},
    ) as running:
        yield running


def api(hub: LiveHub, token: str = ADMIN_TOKEN) -> HubAPI:
    return HubAPI(f"{hub.url}/hub/api", token)


def raw(hub: LiveHub, method: str, path: str, token: str = ADMIN_TOKEN) -> requests.Response:
    """One REST API call as sent, path untouched (for what HubAPI would refuse or escape)."""
    headers = {"Authorization": f"token {token}"}
    return requests.request(
        method, f"{hub.url}/hub/api{path}", headers=headers, json={}, timeout=60
    )


def test_the_admin_account_exists_before_anyone_can_sign_up(hub: LiveHub) -> None:
    """Finding 2: the first visitor used to claim `admin` by signing up."""
    attacker = HubClient(hub.url)
    attacker.signup("admin", "attacker-chosen-password")
    assert not attacker.login("admin", "attacker-chosen-password")
    assert HubClient(hub.url).login("admin", ADMIN_PASSWORD)
    assert api(hub).accounts()["admin"] is True
    # Control: sign-up itself works, and needs approval.
    visitor = HubClient(hub.url)
    visitor.signup("visitor", PASSWORD)
    assert api(hub).accounts()["visitor"] is False
    assert not visitor.login("visitor", PASSWORD)


def test_sign_up_and_the_users_api_follow_the_user_name_rule(hub: LiveHub) -> None:
    """Finding 5: anyone could sign up as `x@y` (JupyterHub had no username_pattern)."""
    for bad in ("x@y", "a+b", "-lead"):
        HubClient(hub.url).signup(bad, PASSWORD)
    HubClient(hub.url).signup("good.name", PASSWORD)  # control
    accounts = api(hub).accounts() or {}
    assert "good.name" in accounts
    assert not {"x@y", "a+b", "-lead"} & set(accounts)
    refused = raw(hub, "POST", "/users/x%40y")
    assert refused.status_code == 400, refused.text


def test_only_admins_change_an_admins_account(hub: LiveHub) -> None:
    """Finding 4: the culler (admin:users, not admin) could set an admin's password."""
    culler = api(hub, hub.service_token("jupyterhub_idle_culler"))
    api(hub).create_user("plainuser", admin=False)
    api(hub).put_account("plainuser", PASSWORD, True)
    for call in (
        lambda: culler.put_account("admin", "culler-chosen-password"),
        lambda: culler.password_valid("admin", ADMIN_PASSWORD),
        lambda: culler.delete_account("admin"),
    ):
        with pytest.raises(HubError, match="403 Only admins can modify other admins"):
            call()
    assert HubClient(hub.url).login("admin", ADMIN_PASSWORD)
    # Control: the same token may manage a user who is not an admin.
    assert culler.put_account("plainuser", "culler-set-password")["changed"] is True
    assert HubClient(hub.url).login("plainuser", "culler-set-password")


@pytest.mark.parametrize("server", ["..", "."])
def test_stopping_a_dot_named_server_cannot_reach_another_url(hub: LiveHub, server: str) -> None:
    """Finding 5: `DELETE /users/alice/servers/..` was sent as `DELETE /users/alice/`."""
    admin = api(hub)
    admin.create_user("dotted", admin=False)
    with pytest.raises(HubError, match=f"404 dotted has no server named '{server}'"):
        admin.stop_server("dotted", server)
    assert admin.user("dotted") is not None
    admin.delete_user("dotted")


def test_workshop_mode_has_no_admins(tmp_path: Path) -> None:
    """Finding 1: workshop mode kept admin_users, so typing `admin` made you one."""
    with live_hub(tmp_path) as native:
        # Sign-up is an opt-in: with the defaults, no page to claim an account on.
        assert requests.get(f"{native.url}/hub/signup", timeout=30).status_code == 404
        assert api(native).user("admin")["admin"] is True  # control: native mode
    with live_hub(tmp_path, auth={"mode": "workshop"}) as workshop:
        assert api(workshop).user("admin")["admin"] is False
        visitor = HubClient(workshop.url)
        assert visitor.login("admin", "")  # anyone may type any name: that is workshop mode
        visitor.create_token()
        me = visitor.api("GET", "/hub/api/user")
        assert me.json()["admin"] is False, me.text
        assert visitor.api("GET", "/hub/api/users").status_code == 403


def test_the_culler_token_has_only_the_culler_scopes(tmp_path: Path) -> None:
    """Finding 9 (least privilege, live): the default culler lists users and stops servers,
    and can do nothing else, such as creating users or touching an admin."""
    with live_hub(tmp_path, culler={"enabled": True, "timeout": 86400, "every": 3600}) as hub:
        token = hub.service_token("jupyterhub_idle_culler")

        def call(method: str, path: str) -> int:
            return raw(hub, method, path, token).status_code

        api(hub).create_user("idle", admin=False)
        assert call("GET", "/users") == 200  # control: what it needs
        assert call("DELETE", "/users/idle/server") in (202, 204, 400)  # stopping is allowed
        assert call("POST", "/users/newcomer") == 403
        assert call("DELETE", "/users/idle") == 403
        assert call("PATCH", "/users/admin") == 403
        assert call("GET", "/users/idle/tokens") == 403
        assert call("PUT", "/gpuhub/accounts/idle") == 403


def test_named_servers_follow_the_server_name_rule(hub: LiveHub) -> None:
    """Finding 5: a named server called `.hidden` (or `..`, sent escaped) must not start."""
    admin = api(hub)
    admin.create_user("namer", admin=False)
    for escaped in ("%2Ehidden", "%2E%2E"):
        answer = raw(hub, "POST", f"/users/namer/servers/{escaped}")
        assert answer.status_code == 400, answer.text
        # gpuhub's rule; JupyterHub 6 refuses such a name itself, before gpuhub sees it.
        expected = "Invalid server_name" if version_info >= (6,) else "is not a valid server name"
        assert expected in answer.json()["message"]
    assert not (admin.user("namer") or {}).get("servers")
