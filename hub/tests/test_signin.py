"""Campus sign-in, loaded by the real JupyterHub from the real jupyterhub_config.py: LDAP
against a real OpenLDAP (slapd, TLS required), OpenID Connect's configuration."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import directory
import provider
import pytest
import requests
from e2e.hubclient import HubClient
from gpuhub_hub.settings import SettingsError
from gpuhub_hub.signin import GpuhubLDAPAuthenticator
from hubsettings import SettingsFactory
from livehub import LiveHub, live_hub
from livehub import gpuhub_admin as cli
from oauthenticator.generic import GenericOAuthenticator
from provider import Provider, query
from test_config import load_hub


@pytest.fixture(scope="module")
def ldap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[directory.Directory]:
    server = directory.start(tmp_path_factory.mktemp("slapd"))
    server.add_person("ada", "ada-password-1")
    server.add_person("bob", "bob-password-1")
    server.add_person("eve", "eve-password-1")
    server.set_members("students", ["ada", "bob"])
    server.set_members("staff", ["bob"])
    server.set_members("hubadmins", ["bob"])
    yield server
    server.stop()


def ldap_settings(server: directory.Directory, **overrides: Any) -> dict[str, Any]:  # noqa: ANN401
    ldap = {
        "server_address": "127.0.0.1",
        "server_port": server.port,
        "ca_file": str(server.ca_file),
        "bind_dn_template": [f"uid={{username}},{directory.PEOPLE}"],
        "group_search_base": directory.GROUPS,
    }
    ldap.update(overrides)
    return {
        "mode": "ldap",
        "allowed_groups": ["students", "staff"],
        "admin_groups": ["hubadmins"],
        "ldap": ldap,
    }


def authenticator(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory, auth: dict[str, Any]
) -> GpuhubLDAPAuthenticator:
    app = load_hub(monkeypatch, settings_file(auth=auth))
    assert app.authenticator_class is GpuhubLDAPAuthenticator
    assert app.config.Authenticator.manage_groups is True
    return GpuhubLDAPAuthenticator(config=app.config)


def login(auth: GpuhubLDAPAuthenticator, name: str, password: str) -> dict[str, Any] | None:
    data = {"username": name, "password": password}
    return asyncio.run(auth.get_authenticated_user(None, data))


def test_a_member_logs_in_with_their_groups_over_starttls(
    monkeypatch: pytest.MonkeyPatch,
    settings_file: SettingsFactory,
    ldap_server: directory.Directory,
) -> None:
    auth = authenticator(monkeypatch, settings_file, ldap_settings(ldap_server))
    assert auth.tls_strategy.name == "before_bind"
    model = login(auth, "ada", "ada-password-1")
    assert model is not None
    assert (model["name"], model["groups"], model["admin"]) == ("ada", ["students"], False)
    admin = login(auth, "bob", "bob-password-1")
    assert admin is not None
    assert admin["groups"] == ["hubadmins", "staff", "students"]
    assert admin["admin"] is True


def test_wrong_password_and_non_member_are_refused(
    monkeypatch: pytest.MonkeyPatch,
    settings_file: SettingsFactory,
    ldap_server: directory.Directory,
) -> None:
    auth = authenticator(monkeypatch, settings_file, ldap_settings(ldap_server))
    assert login(auth, "ada", "not-her-password") is None
    assert login(auth, "eve", "eve-password-1") is None  # in no allowed group
    assert login(auth, "nobody", "whatever-password") is None


def test_group_changes_take_effect_at_the_next_login(
    monkeypatch: pytest.MonkeyPatch,
    settings_file: SettingsFactory,
    ldap_server: directory.Directory,
) -> None:
    auth = authenticator(monkeypatch, settings_file, ldap_settings(ldap_server))
    ldap_server.set_members("staff", ["bob", "ada"])
    try:
        model = login(auth, "ada", "ada-password-1")
        assert model is not None
        assert model["groups"] == ["staff", "students"]
    finally:
        ldap_server.set_members("staff", ["bob"])
    model = login(auth, "ada", "ada-password-1")
    assert model is not None
    assert model["groups"] == ["students"]


def test_lookup_with_a_service_account_and_ldaps(
    monkeypatch: pytest.MonkeyPatch,
    settings_file: SettingsFactory,
    ldap_server: directory.Directory,
    tmp_path: Path,
) -> None:
    """The directory lets only bound users search: the service account finds the DN."""
    secret = tmp_path / "search-password"
    secret.write_text(directory.SERVICE_PASSWORD + "\n")
    ldap = ldap_settings(
        ldap_server,
        server_port=ldap_server.ldaps_port,
        use_ssl=True,
        bind_dn_template=[],
        lookup_dn=True,
        user_search_base=directory.PEOPLE,
        search_user=directory.SERVICE_DN,
        search_password_file=str(secret),
    )
    auth = authenticator(monkeypatch, settings_file, ldap)
    assert auth.lookup_dn_search_password == directory.SERVICE_PASSWORD
    model = login(auth, "ada", "ada-password-1")
    assert model is not None
    assert model["groups"] == ["students"]
    assert login(auth, "ada", "not-her-password") is None


def test_the_directorys_certificate_is_checked(
    monkeypatch: pytest.MonkeyPatch,
    settings_file: SettingsFactory,
    ldap_server: directory.Directory,
) -> None:
    """Without the directory's CA (the system's bundle does not hold it) nobody logs in."""
    auth = authenticator(monkeypatch, settings_file, ldap_settings(ldap_server, ca_file=""))
    assert login(auth, "ada", "ada-password-1") is None


@pytest.mark.parametrize(
    ("ldap", "message"),
    [
        ({"start_tls": False}, "start_tls: a plain ldap:// connection without StartTLS"),
        ({"server_address": "ldap://dir.example"}, "server_address: 'ldap://dir.example'"),
        ({"bind_dn_template": []}, "bind_dn_template: give one, or turn lookup_dn on"),
        ({"bind_dn_template": ["uid=x,dc=lab"]}, "lacks {username}"),
        ({"search_user": "cn=gpuhub,dc=lab"}, "search_password_file: the search user needs"),
    ],
)
def test_unsafe_or_incomplete_ldap_settings_stop_the_hub(
    monkeypatch: pytest.MonkeyPatch,
    settings_file: SettingsFactory,
    ldap: dict[str, Any],
    message: str,
) -> None:
    fake = directory.Directory("127.0.0.1", 389, 636, Path("/nonexistent"), None)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_hub(monkeypatch, settings_file(auth=ldap_settings(fake, **ldap)))


CLIENT_SECRET = "s3cret-from-the-provider"  # noqa: S105 (made up)


def oidc_settings(secret: Path, **overrides: Any) -> dict[str, Any]:  # noqa: ANN401
    oidc = {
        "issuer": "https://sso.lab.test/realms/lab",
        "authorize_url": "https://sso.lab.test/auth",
        "token_url": "https://sso.lab.test/token",
        "userdata_url": "https://sso.lab.test/userinfo",
        "client_id": "gpuhub",
        "client_secret_file": str(secret),
        "callback_url": "https://hub.lab.test/hub/oauth_callback",
        "ca_file": "/etc/ssl/certs/lab-ca.pem",
    }
    oidc.update(overrides)
    return {
        "mode": "oidc",
        "allowed_groups": ["students"],
        "admin_groups": ["hubadmins"],
        "oidc": oidc,
    }


def test_oidc_uses_the_providers_groups_with_pkce(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory, tmp_path: Path
) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    app = load_hub(monkeypatch, settings_file(auth=oidc_settings(secret)))
    assert app.authenticator_class is GenericOAuthenticator
    auth = GenericOAuthenticator(config=app.config)
    assert auth.client_secret == CLIENT_SECRET
    assert auth.enable_pkce is True
    assert auth.manage_groups is True
    assert auth.auth_state_groups_key == "oauth_user.groups"
    assert (auth.allowed_groups, auth.admin_groups) == ({"students"}, {"hubadmins"})
    assert auth.allow_all is False  # it would let everyone past the allowed groups
    assert auth.http_request_kwargs == {"ca_certs": "/etc/ssl/certs/lab-ca.pem"}
    assert auth.scope == ["openid", "profile", "email"]


@pytest.mark.parametrize(
    ("oidc", "message"),
    [
        ({"issuer": "http://sso.lab.test"}, "issuer: 'http://sso.lab.test' must be an https"),
        ({"token_url": "http://sso.lab.test/t"}, "token_url: .* must be an https"),
        ({"scopes": ["profile"]}, "scopes: must include openid"),
    ],
)
def test_unsafe_oidc_settings_stop_the_hub(
    monkeypatch: pytest.MonkeyPatch,
    settings_file: SettingsFactory,
    tmp_path: Path,
    oidc: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_hub(monkeypatch, settings_file(auth=oidc_settings(tmp_path / "s", **oidc)))


def test_a_mode_without_its_section_stops_the_hub(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    with pytest.raises(SettingsError, match=r"auth\.ldap: mode ldap needs"):
        load_hub(monkeypatch, settings_file(auth={"mode": "ldap"}))


# --- a real hub in ldap mode: the login form, group sync, gpuhub-admin ---------------


@pytest.fixture(scope="module")
def ldap_hub(
    tmp_path_factory: pytest.TempPathFactory, ldap_server: directory.Directory
) -> Iterator[LiveHub]:
    root = tmp_path_factory.mktemp("ldap-hub")
    auth = ldap_settings(ldap_server)
    auth["initial_admin_password_dir"] = ""
    auth["local_groups_file"] = str(root / "local-groups.json")
    with live_hub(root, auth=auth) as running:
        yield running


def hub_user(hub: LiveHub, name: str) -> dict[str, Any]:
    return {u["name"]: u for u in cli(hub, "user", "list")["users"]}[name]


def test_directory_people_log_in_through_the_hub_with_their_groups(
    ldap_hub: LiveHub, ldap_server: directory.Directory
) -> None:
    assert HubClient(ldap_hub.url).login("ada", "ada-password-1")
    assert not HubClient(ldap_hub.url).login("ada", "wrong-password")
    assert not HubClient(ldap_hub.url).login("eve", "eve-password-1")
    assert hub_user(ldap_hub, "ada")["groups"] == ["students"]
    assert HubClient(ldap_hub.url).login("bob", "bob-password-1")
    bob = hub_user(ldap_hub, "bob")
    assert (bob["admin"], bob["groups"]) == (True, ["hubadmins", "staff", "students"])
    # Out of the admin group in the directory: no longer an admin at the next login.
    ldap_server.set_members("hubadmins", ["ada"])
    try:
        assert HubClient(ldap_hub.url).login("bob", "bob-password-1")
        assert hub_user(ldap_hub, "bob")["admin"] is False
    finally:
        ldap_server.set_members("hubadmins", ["bob"])


def test_gpuhub_admin_makes_users_without_passwords(ldap_hub: LiveHub) -> None:
    """Pre-creating a directory person works; a password is refused, naming the mode."""
    assert cli(ldap_hub, "user", "add", "bob")["passwords"] == {}
    refused = cli(ldap_hub, "user", "add", "ada", "--password-stdin", stdin="pw-1234567890", code=2)
    assert "auth.mode is ldap: the hub has no passwords (the directory keeps them)" in str(refused)
    refused = cli(ldap_hub, "user", "set-password", "bob", code=2)
    assert "auth.mode is ldap" in str(refused)


def test_groups_the_hub_adds_last_beyond_the_next_login(ldap_hub: LiveHub) -> None:
    """users.yml groups= in ldap mode: added to the directory's, kept at each login."""
    assert HubClient(ldap_hub.url).login("ada", "ada-password-1")
    result = cli(ldap_hub, "user", "add", "ada", "--group", "research")
    assert "+group research" in json.dumps(result)
    assert hub_user(ldap_hub, "ada")["groups"] == ["research", "students"]
    assert HubClient(ldap_hub.url).login("ada", "ada-password-1")
    assert hub_user(ldap_hub, "ada")["groups"] == ["research", "students"]
    # Not a way in: eve is in no allowed group, whatever the hub adds.
    cli(ldap_hub, "user", "add", "eve", "--group", "students")
    assert not HubClient(ldap_hub.url).login("eve", "eve-password-1")
    cli(ldap_hub, "user", "remove", "ada")
    assert HubClient(ldap_hub.url).login("ada", "ada-password-1")
    assert hub_user(ldap_hub, "ada")["groups"] == ["students"]


# --- a real hub in oidc mode against a real provider (Glewlwyd) ------------------------

CALLBACK = "https://hub.lab.test/hub/oauth_callback"  # registered; the test follows it by hand


@pytest.fixture(scope="module")
def oidc_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveHub, Provider]]:
    root = tmp_path_factory.mktemp("oidc")
    sso = provider.start(root)
    try:
        sso.set_up(CALLBACK)
        sso.add_person("ada", "ada-password-1", ["students"])
        sso.add_person("bob", "bob-password-1", ["staff", "hubadmins"])
        sso.add_person("eve", "eve-password-1", [])
        secret = root / "client-secret"
        secret.write_text(provider.CLIENT_SECRET + "\n")
        found = sso.discovery()
        oidc = {
            "issuer": found["issuer"],
            "authorize_url": found["authorization_endpoint"],
            "token_url": found["token_endpoint"],
            "userdata_url": found["userinfo_endpoint"],
            "client_id": provider.CLIENT_ID,
            "client_secret_file": str(secret),
            "callback_url": CALLBACK,
            "ca_file": str(sso.ca_file),
        }
        auth = {
            "mode": "oidc",
            "initial_admin_password_dir": "",
            "allowed_groups": ["students", "staff"],
            "admin_groups": ["hubadmins"],
            "oidc": oidc,
        }
        with live_hub(root / "hub", auth=auth) as running:
            yield running, sso
    finally:
        sso.stop()


def sso_login(hub: LiveHub, sso: Provider, name: str, password: str) -> requests.Response:
    """The authorization-code flow as a browser runs it: the hub sends the person to the
    provider with its state and PKCE challenge, the provider sends them back with a code."""
    browser = requests.Session()
    start = browser.get(hub.url + "/hub/oauth_login", allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text
    back = sso.authorize(start.headers["Location"], name, password)
    assert back.startswith(CALLBACK + "?"), back
    return browser.get(
        hub.url + "/hub/oauth_callback", params=query(back), allow_redirects=False, timeout=30
    )


def test_single_sign_on_logs_members_in_with_their_groups(
    oidc_hub: tuple[LiveHub, Provider],
) -> None:
    hub, sso = oidc_hub
    assert (
        "code_challenge="
        in requests.get(hub.url + "/hub/oauth_login", allow_redirects=False, timeout=10).headers[
            "Location"
        ]
    )
    reply = sso_login(hub, sso, "ada", "ada-password-1")
    assert reply.status_code == 302, reply.text
    assert hub_user(hub, "ada")["groups"] == ["students"]
    assert sso_login(hub, sso, "bob", "bob-password-1").status_code == 302
    bob = hub_user(hub, "bob")
    assert (bob["admin"], bob["groups"]) == (True, ["hubadmins", "staff"])
    assert sso_login(hub, sso, "eve", "eve-password-1").status_code == 403  # no allowed group


def test_group_changes_at_the_provider_apply_at_the_next_login(
    oidc_hub: tuple[LiveHub, Provider],
) -> None:
    hub, sso = oidc_hub
    sso.set_groups("ada", ["students", "staff"])
    assert sso_login(hub, sso, "ada", "ada-password-1").status_code == 302
    assert hub_user(hub, "ada")["groups"] == ["staff", "students"]


def test_a_forged_or_missing_state_is_refused(oidc_hub: tuple[LiveHub, Provider]) -> None:
    hub, sso = oidc_hub
    browser = requests.Session()
    start = browser.get(hub.url + "/hub/oauth_login", allow_redirects=False, timeout=10)
    back = query(sso.authorize(start.headers["Location"], "ada", "ada-password-1"))
    forged = {**back, "state": back["state"][:-4] + "AAAA"}
    reply = browser.get(hub.url + "/hub/oauth_callback", params=forged, timeout=30)
    assert reply.status_code == 400, reply.text
    # The real state without the browser's state cookie (another browser) is refused too.
    reply = requests.get(hub.url + "/hub/oauth_callback", params=back, timeout=30)
    assert reply.status_code == 400, reply.text
