"""Users as code, end to end: users.yml and gpuhub-admin on the converged test host,
checked through Nginx, the REST API and the host's files. Then the operations
playbooks, and last a teardown that a following site.yml undoes. Tests run in order."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hubclient import HubClient
from testhost import TestHost, flat, new_password, ok, recap

PASSWORDS = {"uma": new_password()}
ROSTER = [f"s{i:02d}" for i in range(1, 21)]
ROSTER_PASSWORDS = {name: new_password() for name in ROSTER}


def users_yml(host: TestHost, **extra: Any) -> subprocess.CompletedProcess[str]:  # noqa: ANN401
    return host.playbook("users.yml", "-e", json.dumps(extra))


def hub_users(host: TestHost) -> dict[str, dict[str, Any]]:
    listed = host.run("docker", "exec", host.hub, "gpuhub-admin", "--json", "user", "list")
    return {u["name"]: u for u in json.loads(listed)["users"]}


def accounts(host: TestHost) -> dict[str, dict[str, Any]]:
    """The users' accounts (names, admin, approval, groups) without their servers, which
    start and stop on their own while a test runs (the idle culler)."""
    return {
        name: {k: v for k, v in user.items() if k != "servers"}
        for name, user in hub_users(host).items()
    }


def client(hub_url: str, ca_file: str) -> HubClient:
    return HubClient(hub_url, verify=ca_file)


def write_file(user: HubClient, path: str, text: str) -> None:
    reply = user.api(
        "PUT",
        f"/user/{user.username}/api/contents/{path}",
        json={"type": "file", "format": "text", "content": text},
    )
    assert reply.status_code in (200, 201), reply.text


def read_file(user: HubClient, path: str) -> str:
    reply = user.api("GET", f"/user/{user.username}/api/contents/{path}")
    assert reply.status_code == 200, reply.text
    return reply.json()["content"]


def logged_in(hub_url: str, ca_file: str, name: str, password: str) -> HubClient:
    user = client(hub_url, ca_file)
    assert user.login(name, password), f"{name} cannot log in"
    user.create_token()
    return user


def running_with_file(
    hub_url: str, ca_file: str, name: str, password: str, path: str, text: str
) -> HubClient:
    """Log in, start the server and write a file into the user's work folder."""
    user = logged_in(hub_url, ca_file, name, password)
    user.start_server(name)
    write_file(user, path, text)
    return user


def test_users_yml_adds_a_user_who_logs_in(host: TestHost, hub_url: str, ca_file: str) -> None:
    ok(users_yml(host, user="uma", password=PASSWORDS["uma"]), changed=1)
    assert client(hub_url, ca_file).login("uma", PASSWORDS["uma"])
    assert not client(hub_url, ca_file).login("uma", "wrong-" + PASSWORDS["uma"])
    ok(users_yml(host, user="uma", password=PASSWORDS["uma"]), changed=0)


def test_admin_flag_shows_in_the_rest_api(host: TestHost, admin: HubClient) -> None:
    ok(users_yml(host, user="uma", admin=True), changed=1)
    assert admin.api("GET", "/hub/api/users/uma").json()["admin"] is True
    ok(users_yml(host, user="uma", admin=True), changed=0)
    ok(users_yml(host, user="uma", admin=False), changed=1)
    assert admin.api("GET", "/hub/api/users/uma").json()["admin"] is False


def test_generated_password_is_printed_once(host: TestHost, hub_url: str, ca_file: str) -> None:
    out = ok(users_yml(host, user="vic", user_groups="staff"), changed=1)
    match = re.search(r"\bvic: '?([^'\s]+)", out.split("Show new passwords")[1])
    assert match, out[-2000:]
    assert client(hub_url, ca_file).login("vic", match.group(1))
    assert hub_users(host)["vic"]["groups"] == ["staff"]
    again = ok(users_yml(host, user="vic", user_groups="staff"), changed=0)
    assert "Show new passwords" not in again


def test_set_password_changes_the_working_password(
    host: TestHost, hub_url: str, ca_file: str
) -> None:
    new = new_password()
    host.run(
        "sh",
        "-c",
        f"printf '%s\\n' '{new}' | docker exec -i jupyterhub "
        "gpuhub-admin user set-password uma --password-stdin",
    )
    assert client(hub_url, ca_file).login("uma", new)
    assert not client(hub_url, ca_file).login("uma", PASSWORDS["uma"])
    PASSWORDS["uma"] = new  # later tests log in with the new one


def test_removal_stops_the_server_and_archives_the_home(
    host: TestHost, hub_url: str, ca_file: str
) -> None:
    running_with_file(hub_url, ca_file, "uma", PASSWORDS["uma"], "notes.txt", "uma's notes\n")
    assert host.run("docker", "ps", "-q", "--filter", "name=^jupyter-uma$").strip()

    ok(users_yml(host, user="uma", state="absent"), changed=1)
    assert not host.run("docker", "ps", "-aq", "--filter", "name=^jupyter-uma$").strip()
    (archive,) = host.run("ls", f"{host.root}/archive/uma").split()
    path = f"{host.root}/archive/uma/{archive}"
    assert host.run("tar", "-xzOf", path, "uma/notes.txt") == "uma's notes\n"
    assert "No such file" in host.run("ls", f"{host.root}/home/uma", check=False)
    assert "uma" not in hub_users(host)
    assert not client(hub_url, ca_file).login("uma", PASSWORDS["uma"])
    ok(users_yml(host, user="uma", state="absent"), changed=0)

    ok(users_yml(host, user="uma", state="absent", purge=True), changed=1)
    assert "No such file" in host.run("ls", f"{host.root}/archive/uma", check=False)
    assert "No such file" in host.run("ls", f"{host.root}/home/uma", check=False)


def roster_csv(tmp_path: Path, names: list[str]) -> str:
    lines = ["name,groups,password"] + [f"{n},staff,{ROSTER_PASSWORDS[n]}" for n in names]
    path = tmp_path / "roster.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_roster_converges_and_exclusive_removes_exactly_the_dropped(
    host: TestHost, tmp_path: Path, hub_url: str, ca_file: str
) -> None:
    out = ok(users_yml(host, users_file=roster_csv(tmp_path, ROSTER)), changed=1)
    assert all(name in out for name in ROSTER)
    assert client(hub_url, ca_file).login("s07", ROSTER_PASSWORDS["s07"])
    ok(users_yml(host, users_file=roster_csv(tmp_path, ROSTER)), changed=0)

    before = set(hub_users(host))
    others = sorted(before - set(ROSTER))  # users of the other tests stay on the list
    kept = ROSTER[:15]
    path = tmp_path / "class.yml"
    path.write_text(
        json.dumps([{"name": n, "groups": ["staff"]} for n in kept] + [{"name": n} for n in others])
    )
    ok(users_yml(host, users_file=str(path), exclusive=True), changed=1)
    assert before - set(hub_users(host)) == set(ROSTER[15:])
    ok(users_yml(host, users_file=str(path), exclusive=True), changed=0)


BAD_INPUTS = [
    ({"user": "Uma"}, "use uma"),
    ({"user": "a/b"}, "is not a valid user name"),
    ({"user": "..."}, "is not a valid user name"),
    ({"user": "a b"}, "is not a valid user name"),
    ({"user": ""}, "is not a valid user name"),
    ({"user": "wes", "user_groups": "nosuchgroup"}, "unknown group(s) nosuchgroup"),
    ({"user": "wes", "state": "maybe"}, "state must be present or absent"),
    ({"users_file": "/nonexistent/roster.csv"}, "no such file on this machine"),
    ({"user": "wes", "exclusive": True}, "exclusive only goes with users_file"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_INPUTS)
def test_bad_input_fails_clearly_and_changes_nothing(
    host: TestHost, extra: dict[str, Any], message: str
) -> None:
    before = accounts(host)
    result = users_yml(host, **extra)
    out = flat(result)
    assert result.returncode != 0
    assert message in out, result.stdout[-3000:]
    assert "Nothing was changed." in out
    assert recap(result) == (0, 1)
    assert accounts(host) == before


@pytest.mark.parametrize(
    ("roster", "message"),
    [
        ("- wes\n- Bad Name\n", "entry 2: 'Bad Name' contains a space"),
        ("- {name: wes, groups: [nosuchgroup]}\n", "unknown group(s) nosuchgroup"),
        ("name,admin\nwes,perhaps\n", "admin must be true or false"),
    ],
)
def test_bad_rosters_change_nothing(
    host: TestHost, tmp_path: Path, roster: str, message: str
) -> None:
    path = tmp_path / ("roster.csv" if roster.startswith("name,") else "roster.yml")
    path.write_text(roster)
    before = accounts(host)
    result = users_yml(host, users_file=str(path))
    assert result.returncode != 0
    assert message in flat(result), result.stdout[-3000:]
    assert accounts(host) == before


def test_status_and_stop_server(host: TestHost, hub_url: str, ca_file: str) -> None:
    s01 = logged_in(hub_url, ca_file, "s01", ROSTER_PASSWORDS["s01"])
    s01.start_server("s01")
    out = ok(host.playbook("playbooks/status.yml"), changed=0)
    assert re.search(r"s01\s+\(default\)\s+yes", out), out[-3000:]
    assert "servers fit at their full memory limit" in " ".join(out.split())
    # Which server holds which GPU: none here (a GPU-less host), but listed.
    assert "gpus: []" in out, out[-3000:]
    ok(host.playbook("playbooks/stop-server.yml", "-e", "user=s01"), changed=1)
    assert s01.server_state("s01") is None
    ok(host.playbook("playbooks/stop-server.yml", "-e", "user=s01"), changed=0)


def test_teardown_keeps_data_and_site_yml_brings_everyone_back(
    host: TestHost, hub_url: str, ca_file: str
) -> None:
    running_with_file(
        hub_url, ca_file, "s02", ROSTER_PASSWORDS["s02"], "essay.txt", "kept across teardown\n"
    )

    refused = host.playbook("playbooks/teardown.yml", "-e", "purge=true")
    assert refused.returncode != 0
    assert "-e confirm_purge=" in flat(refused)
    assert recap(refused) == (0, 1)

    ok(host.playbook("playbooks/teardown.yml"))
    names = host.run("docker", "ps", "-a", "--format", "{{.Names}}").split()
    assert not {host.hub, host.proxy} & set(names), names
    servers = host.run("docker", "ps", "-aq", "--filter", "label=gpuhub.user")
    assert servers.strip() == "", servers
    networks = host.run("docker", "network", "ls", "--format", "{{.Name}}").split()
    assert host.fact("jupyterhub_network") not in networks
    assert host.users_network not in networks
    assert host.run("cat", f"{host.root}/home/s02/essay.txt") == "kept across teardown\n"
    host.run("test", "-s", f"{host.root}/state/jupyterhub.sqlite")
    images = host.run("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert host.hub_image in images

    converge = host.converge()
    assert converge.returncode == 0, converge.stdout[-3000:]
    s02 = logged_in(hub_url, ca_file, "s02", ROSTER_PASSWORDS["s02"])
    s02.start_server("s02")
    assert read_file(s02, "essay.txt") == "kept across teardown\n"
    assert set(ROSTER[:15]) <= set(hub_users(host))
