"""Campus sign-in end to end: site.yml turns the hub into ldap mode against a real OpenLDAP
(Debian's slapd, StartTLS required) and into oidc mode against a real OpenID Connect
provider (Debian's Glewlwyd, HTTPS). Both servers run in the test host's network (the hub
reaches them at the host's address, their certificates from a CA made here); people sign in
through nginx as a browser does. The hub goes back to native mode at the end, as the
scenario converged it (the other tests' accounts and tokens stay)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import directory
import provider
import pytest
from hubclient import HubClient
from provider import query
from testhost import TestHost, flat, memory_events, ok, size_in_bytes

CA_ON_HOST = "/etc/gpuhub-e2e/{}-ca.crt"  # where the tests put each server's CA (a hub host path)
PASSWORDS = {name: f"{name}-directory-pw-1" for name in ("lena", "sam", "ivy", "mo")}
ALLOWED, ADMINS = ["students", "staff"], ["hubadmins"]
LDAP_PORTS = (10389, 10636)  # the directory in the test host: StartTLS, ldaps
SSO_PORT = 10443  # the provider's HTTPS


@contextmanager
def ports_open(host: TestHost, *ports: int) -> Iterator[None]:
    """The firewall role lets into the host only its own ports: the test servers' ports
    open while they run (as an admin would open a directory's on the hub host), by one rule
    of the test's own, inserted into the role's table and removed after."""
    chain = ("inet", "gpuhub", "input")
    mark = f"gpuhub-e2e-{'-'.join(map(str, ports))}"
    listed = ", ".join(map(str, ports))
    host.run("nft", f"insert rule {' '.join(chain)} tcp dport {{ {listed} }} accept comment {mark}")
    try:
        yield
    finally:
        rules = host.run("nft", "-a", "list", "chain", *chain)
        for handle in re.findall(rf'comment "{mark}" # handle (\d+)', rules):
            host.run("nft", "delete", "rule", *chain, "handle", handle)


def converge_auth(host: TestHost, tmp: Path, **auth: Any) -> None:  # noqa: ANN401
    """The hub's part of site.yml with these sign-in variables (a file: they hold a secret)."""
    extra = tmp / "auth-vars.json"
    extra.write_text(json.dumps(auth))
    extra.chmod(0o600)
    ok(host.converge("--tags", "jupyterhub", "-e", f"@{extra}"))


@pytest.fixture(scope="module", autouse=True)
def native_again(host: TestHost) -> Iterator[None]:
    yield
    ok(host.converge("--tags", "jupyterhub"))
    assert host.settings()["auth"]["mode"] == "native"
    host.run("test", "!", "-e", host.path("state", "auth-secret"))  # no mode needs it now


def user_record(admin: HubClient, name: str) -> dict[str, Any]:
    reply = admin.api("GET", f"/hub/api/users/{name}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def memory_limit_inside(host: TestHost, user: str) -> int:
    """The memory limit `user`'s server container sees (its own cgroup)."""
    return memory_events(host, host.server_of(user))["limit"]


def staff_memory(host: TestHost) -> int:
    return size_in_bytes(host.scenario_var("jupyterhub_group_limits")["staff"]["mem_limit"])


# --- a directory (LDAP) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ldap(
    host: TestHost, tmp_path_factory: pytest.TempPathFactory, admin: HubClient
) -> Iterator[directory.Directory]:
    del admin  # logged in (native mode) before the hub changes modes: its token serves after
    tmp = tmp_path_factory.mktemp("ldap")
    with ports_open(host, *LDAP_PORTS):
        server = directory.start(tmp, host.address, host.enter, LDAP_PORTS)
        try:
            host.put_file(CA_ON_HOST.format("directory"), server.ca_file.read_text())
            for name, password in PASSWORDS.items():
                server.add_person(name, password)
            server.set_members("students", ["lena", "sam", "ivy"])
            server.set_members("staff", ["sam"])
            server.set_members("hubadmins", ["ivy"])
            server.set_members("visitors", ["mo"])
            converge_auth(
                host,
                tmp,
                jupyterhub_auth_mode="ldap",
                jupyterhub_auth_allowed_groups=ALLOWED,
                jupyterhub_auth_admin_groups=ADMINS,
                jupyterhub_auth_ldap={
                    "server_address": host.address,
                    "server_port": server.port,  # StartTLS
                    "ca_file": CA_ON_HOST.format("directory"),
                    "lookup_dn": True,
                    "user_search_base": directory.PEOPLE,
                    "user_attribute": "uid",
                    "search_user": directory.SERVICE_DN,
                    "group_search_base": directory.GROUPS,
                },
                jupyterhub_auth_ldap_search_password=directory.SERVICE_PASSWORD,
            )
            yield server
        finally:
            server.stop()


def test_ldap_secret_is_root_only_and_the_settings_name_only_its_path(
    host: TestHost, ldap: directory.Directory
) -> None:
    secret = host.path("state", "auth-secret")
    assert host.run("stat", "-c", "%a %U", secret).split() == ["600", "root"]
    settings = host.settings()["auth"]
    assert settings["mode"] == "ldap"
    assert settings["ldap"]["search_password_file"] == secret
    assert directory.SERVICE_PASSWORD not in host.run("cat", host.path("config", "settings.yaml"))


def test_ldap_member_logs_in_through_nginx_and_gets_staff_limits(
    host: TestHost, ldap: directory.Directory, hub_url: str, ca_file: str, admin: HubClient
) -> None:
    sam = HubClient(hub_url, verify=ca_file)
    assert sam.login("sam", PASSWORDS["sam"])
    sam.create_token()
    assert sorted(user_record(admin, "sam")["groups"]) == ["staff", "students"]
    sam.start_server("sam")
    try:
        assert memory_limit_inside(host, "sam") == staff_memory(host)
    finally:
        sam.stop_server("sam")


def test_ldap_refuses_wrong_passwords_and_non_members(
    ldap: directory.Directory, hub_url: str, ca_file: str
) -> None:
    assert not HubClient(hub_url, verify=ca_file).login("lena", "not-" + PASSWORDS["lena"])
    assert not HubClient(hub_url, verify=ca_file).login("mo", PASSWORDS["mo"])  # visitors only
    assert HubClient(hub_url, verify=ca_file).login("lena", PASSWORDS["lena"])


def test_ldap_admin_group_members_are_hub_admins(
    ldap: directory.Directory, hub_url: str, ca_file: str, admin: HubClient
) -> None:
    assert HubClient(hub_url, verify=ca_file).login("ivy", PASSWORDS["ivy"])
    assert user_record(admin, "ivy")["admin"] is True
    assert HubClient(hub_url, verify=ca_file).login("sam", PASSWORDS["sam"])
    assert user_record(admin, "sam")["admin"] is False


def test_ldap_group_changes_apply_at_the_next_login(
    ldap: directory.Directory, hub_url: str, ca_file: str, admin: HubClient
) -> None:
    ldap.set_members("staff", ["ivy"])  # sam leaves staff
    ldap.set_members("students", ["sam", "ivy"])  # lena leaves every allowed group
    assert HubClient(hub_url, verify=ca_file).login("sam", PASSWORDS["sam"])
    assert user_record(admin, "sam")["groups"] == ["students"]
    assert not HubClient(hub_url, verify=ca_file).login("lena", PASSWORDS["lena"])


def test_users_yml_refuses_a_password_in_ldap_mode(
    host: TestHost, ldap: directory.Directory
) -> None:
    result = host.playbook("users.yml", "-e", json.dumps({"user": "kim", "password": "x" * 16}))
    assert result.returncode != 0
    assert "auth.mode is ldap: the hub has no passwords" in flat(result), flat(result)[-2000:]


# --- single sign-on (OpenID Connect) ---------------------------------------------------


@pytest.fixture(scope="module")
def sso(
    host: TestHost, tmp_path_factory: pytest.TempPathFactory, hub_url: str, admin: HubClient
) -> Iterator[provider.Provider]:
    del admin  # as for ldap
    tmp = tmp_path_factory.mktemp("oidc")
    callback = f"{hub_url}/hub/oauth_callback"
    with ports_open(host, SSO_PORT):
        server = provider.start(tmp, host.address, host.enter, SSO_PORT)
        try:
            server.set_up(callback)
            server.add_person("nia", "nia-sso-pw-1", ["students", "staff"])
            server.add_person("oli", "oli-sso-pw-1", ["students", "hubadmins"])
            server.add_person("pat", "pat-sso-pw-1", ["alumni"])
            host.put_file(CA_ON_HOST.format("provider"), server.ca_file.read_text())
            converge_auth(
                host,
                tmp,
                jupyterhub_auth_mode="oidc",
                jupyterhub_auth_allowed_groups=ALLOWED,
                jupyterhub_auth_admin_groups=ADMINS,
                jupyterhub_auth_oidc={
                    "issuer": server.issuer,
                    "client_id": provider.CLIENT_ID,
                    "callback_url": callback,
                    "ca_file": CA_ON_HOST.format("provider"),
                },
                jupyterhub_auth_oidc_client_secret=provider.CLIENT_SECRET,
            )
            yield server
        finally:
            server.stop()


def sso_login(
    sso: provider.Provider, hub_url: str, ca_file: str, name: str, password: str
) -> tuple[HubClient, int]:
    """The authorization-code flow through nginx, as a browser follows it: the hub's
    redirect (state, PKCE challenge), the provider's login and grant, back to the hub."""
    browser = HubClient(hub_url, verify=ca_file)
    authorize = browser.sso_start()
    assert authorize.startswith(sso.issuer), authorize
    assert "code_challenge=" in authorize, authorize
    back = sso.authorize(authorize, name, password)
    assert back.startswith(f"{hub_url}/hub/oauth_callback?"), back
    return browser, browser.sso_finish(back, name)


def test_sso_member_signs_in_through_nginx_with_the_providers_groups(
    host: TestHost, sso: provider.Provider, hub_url: str, ca_file: str, admin: HubClient
) -> None:
    nia, status = sso_login(sso, hub_url, ca_file, "nia", "nia-sso-pw-1")
    assert status == 302
    nia.create_token()
    record = user_record(admin, "nia")
    assert (record["admin"], sorted(record["groups"])) == (False, ["staff", "students"])
    nia.start_server("nia")
    try:
        assert memory_limit_inside(host, "nia") == staff_memory(host)
    finally:
        nia.stop_server("nia")
    assert sso_login(sso, hub_url, ca_file, "oli", "oli-sso-pw-1")[1] == 302
    assert user_record(admin, "oli")["admin"] is True


def test_sso_refuses_non_members_and_forged_or_foreign_state(
    sso: provider.Provider, hub_url: str, ca_file: str, admin: HubClient
) -> None:
    assert sso_login(sso, hub_url, ca_file, "pat", "pat-sso-pw-1")[1] == 403  # alumni only
    browser = HubClient(hub_url, verify=ca_file)
    back = query(sso.authorize(browser.sso_start(), "nia", "nia-sso-pw-1"))
    forged = {**back, "state": back["state"][:-4] + "AAAA"}
    callback = f"{hub_url}/hub/oauth_callback?"
    assert browser.sso_finish(callback + urlencode(forged), "nia") == 400
    # The real state from another browser (without the state cookie) is refused too.
    assert HubClient(hub_url, verify=ca_file).sso_finish(callback + urlencode(back), "nia") == 400


def test_sso_group_changes_apply_at_the_next_login(
    sso: provider.Provider, hub_url: str, ca_file: str, admin: HubClient
) -> None:
    sso.set_groups("nia", ["students"])
    assert sso_login(sso, hub_url, ca_file, "nia", "nia-sso-pw-1")[1] == 302
    assert user_record(admin, "nia")["groups"] == ["students"]
