"""Security drills 1-6 (README, Security), tried from real user containers on the
converged test host. Every "cannot" is paired with a control that shows the same target
answering from somewhere it is allowed, so a drill fails when the rule is missing rather
than because the target is not there.

Drill 2 never sends traffic off the test host: the "metadata service" and "private"
addresses live in a network namespace inside the test host, behind a veth pair, with
listeners of our own, and the test host routes them there. (They sit on the namespace's
loopback interface: a dummy interface needs the `dummy` kernel module, which a test host
cannot load.)
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
from hubclient import HubClient
from netprobe import probe, users_ip
from testhost import (
    SECRETS,
    TestHost,
    UserFactory,
    flat,
    memory_events,
    recap,
    size_in_bytes,
)

ATTACKER, VICTIM = "secalice", "secbob"
METADATA = "169.254.169.254"
PRIVATE = "10.255.255.10"  # blocked: in 10.0.0.0/8
ALLOWED = "10.255.255.20"  # on the scenario's firewall_users_allow list, port 7070 only
HOST_SERVICE_PORT = 9999  # a listener on the test host itself

# A namespace "drill" holding the blocked and allowed addresses on its loopback,
# reached from the test host through a veth pair, with HTTP listeners on 80 and 7070.
DRILL_NETNS = f"""
set -e
ip netns del drill 2>/dev/null || true
ip link del drill-host 2>/dev/null || true
ip netns add drill
ip link add drill-host type veth peer name drill-ns netns drill
ip addr add 10.255.254.1/30 dev drill-host
ip link set drill-host up
ip -n drill link set lo up
ip -n drill addr add 10.255.254.2/30 dev drill-ns
ip -n drill link set drill-ns up
for address in {METADATA} {PRIVATE} {ALLOWED}; do
  ip -n drill addr add $address/32 dev lo
  ip route replace $address/32 via 10.255.254.2
done
ip -n drill route add default via 10.255.254.1
for port in 80 7070; do
  ip netns exec drill setsid python3 -m http.server $port >/dev/null 2>&1 < /dev/null &
done
setsid python3 -m http.server {HOST_SERVICE_PORT} >/dev/null 2>&1 < /dev/null &
sleep 1
"""


@pytest.fixture(scope="module")
def attacker(make_user: UserFactory) -> HubClient:
    client = make_user(ATTACKER)
    client.start_server(ATTACKER)
    return client


@pytest.fixture(scope="module")
def victim(make_user: UserFactory) -> HubClient:
    client = make_user(VICTIM)
    client.start_server(VICTIM)
    return client


@pytest.fixture(scope="module")
def drill_targets(host: TestHost) -> None:
    host.run("sh", "-c", DRILL_NETNS)
    deadline = time.monotonic() + 20
    targets = (
        f"{METADATA}:80",
        f"{PRIVATE}:80",
        f"{ALLOWED}:7070",
        f"127.0.0.1:{HOST_SERVICE_PORT}",
    )
    while time.monotonic() < deadline:
        if set(probe(host, None, *targets).values()) == {"open"}:
            return
        time.sleep(1)
    raise AssertionError(
        f"drill listeners do not answer on the test host: {probe(host, None, *targets)}"
    )


def test_drill_1_alice_cannot_reach_bobs_server_or_files(
    host: TestHost, attacker: HubClient, victim: HubClient
) -> None:
    alice, bob = host.server_of(ATTACKER), host.server_of(VICTIM)
    bob_server = f"{users_ip(host, bob)}:8888"
    # Control: the hub reaches Bob's server (that is how it checks it is up).
    assert probe(host, host.hub, bob_server)[bob_server] == "open"
    assert probe(host, alice, bob_server)[bob_server] != "open"

    secret = {"type": "file", "format": "text", "content": "bob's private notes 7731"}
    assert victim.api("PUT", f"/user/{VICTIM}/api/contents/private.txt", json=secret).ok
    # Alice's credentials at Bob's server, through the front door.
    stolen = attacker.api("GET", f"/user/{VICTIM}/api/contents/private.txt?content=1")
    assert stolen.status_code in (403, 404), stolen.status_code
    assert "7731" not in stolen.text
    # Alice's file system: her own home only; no other home, no host tree, no Docker socket.
    mounts = host.run("docker", "exec", alice, "cat", "/proc/self/mountinfo")
    assert VICTIM not in mounts
    assert "docker.sock" not in mounts
    found = host.run(
        "docker",
        "exec",
        alice,
        "grep",
        "-rls",
        "7731",
        "/home",
        "/srv",
        "/mnt",
        "/tmp",  # noqa: S108 (a path inside the container)
        check=False,
    )
    assert found.strip() == "", found


def test_drill_2_egress_is_blocked_except_hub_and_allow_list(
    host: TestHost, attacker: HubClient, drill_targets: None
) -> None:
    alice = host.server_of(ATTACKER)
    # The host's address on the users network: the subnet's .1 (the hub has .2).
    gateway = users_ip(host, host.hub).rsplit(".", 1)[0] + ".1"
    template = "{{range .IPAM.Config}}{{.Gateway}}{{end}}"
    network = host.run("docker", "network", "inspect", "-f", template, host.users_network)
    assert network.strip() == gateway
    blocked = (
        f"{METADATA}:80",
        f"{PRIVATE}:80",
        f"{ALLOWED}:80",  # allowed address, but not this port
        host.proxy_api,  # the proxy's API
        f"{gateway}:{HOST_SERVICE_PORT}",  # another service on the host
    )
    allowed = (f"{ALLOWED}:7070", host.hub_api, f"{gateway}:443")
    # Controls: the hub container, which no user rule covers, reaches the same targets.
    from_hub = probe(
        host,
        host.hub,
        f"{METADATA}:80",
        f"{PRIVATE}:80",
        f"{ALLOWED}:80",
        host.proxy_api,
    )
    assert set(from_hub.values()) == {"open"}, from_hub
    assert (
        probe(host, None, f"{gateway}:{HOST_SERVICE_PORT}")[f"{gateway}:{HOST_SERVICE_PORT}"]
        == "open"
    )

    from_alice = probe(host, alice, *blocked, *allowed)
    assert [t for t in blocked if from_alice[t] == "open"] == [], from_alice
    assert [t for t in allowed if from_alice[t] != "open"] == [], from_alice
    # The hub API answers a user server's own token.
    token = host.run("cat", f"{host.root}/tokens/{alice}").strip()
    check = (
        "import os, urllib.request; r = urllib.request.Request("
        "os.environ['JUPYTERHUB_API_URL'] + '/user', headers={'Authorization': 'token ' + "
        f"{token!r}}}); print(urllib.request.urlopen(r, timeout=10).status)"
    )
    assert host.run("docker", "exec", alice, "python3", "-c", check).strip() == "200"


def test_drill_2_host_firewall_lets_in_only_its_ports(host: TestHost, drill_targets: None) -> None:
    """From outside the test host (this machine), only firewall_tcp_ports get through."""
    service = f"{host.address}:{HOST_SERVICE_PORT}"
    inside = f"127.0.0.1:{HOST_SERVICE_PORT}"
    assert probe(host, None, inside) == {inside: "open"}  # control: the service listens
    outside = {}
    for target in (service, f"{host.address}:443"):
        address, port = target.rsplit(":", 1)
        try:
            socket.create_connection((address, int(port)), timeout=4).close()
            outside[target] = "open"
        except OSError as err:
            outside[target] = type(err).__name__
    assert outside == {service: "TimeoutError", f"{host.address}:443": "open"}, outside


def test_drill_3_user_containers_are_confined(
    host: TestHost, attacker: HubClient, victim: HubClient
) -> None:
    pids_limit = host.scenario_var("jupyterhub_pids_limit")
    # The drill's own two servers: other users' idle servers may be culled (and removed)
    # while the drill inspects them.
    names = [host.server_of(ATTACKER), host.server_of(VICTIM)]
    secrets = [host.run("cat", f"{host.root}/state/{s}").strip() for s in SECRETS]
    for name in names:
        (info,) = json.loads(host.run("docker", "inspect", name))
        config, hostconfig = info["Config"], info["HostConfig"]
        assert config["User"] == ":".join(host.user_ids()), name
        assert hostconfig["CapDrop"] == ["ALL"], name
        assert not hostconfig["CapAdd"], name
        assert "no-new-privileges:true" in hostconfig["SecurityOpt"], name
        assert hostconfig["PidsLimit"] == pids_limit, name
        assert hostconfig["Privileged"] is False, name
        assert hostconfig["AutoRemove"] is False, name  # survives a daemon restart
        assert hostconfig["NetworkMode"] == host.users_network, name
        assert list(info["NetworkSettings"]["Networks"]) == [host.users_network], name
        assert not any("docker.sock" in m["Source"] for m in info["Mounts"]), name
        env = dict(e.split("=", 1) for e in config["Env"])
        assert not any("TOKEN" in key or "SECRET" in key for key in env), sorted(env)
        text = json.dumps(info)
        api_token = host.run("cat", f"{host.root}/tokens/{name}").strip()
        assert len(api_token) >= 32
        for secret in [*secrets, api_token]:
            assert secret not in text, f"a secret shows in docker inspect {name}"
        token_file = f"{host.root}/tokens/{name}"
        assert host.run("stat", "-c", "%a %u", token_file).split() == ["400", host.user_ids()[0]]
        inside = host.run(
            "docker",
            "exec",
            name,
            "sh",
            "-c",
            "id -u; grep -E '^(NoNewPrivs|CapEff)' /proc/1/status; "
            "tr '\\0' '\\n' < /proc/1/environ",
        )
        lines = inside.splitlines()
        assert lines[0] == host.user_ids()[0], inside
        assert "NoNewPrivs:\t1" in lines, inside
        assert "CapEff:\t0000000000000000" in lines, inside
        for secret in secrets:
            assert secret not in inside


def started_at(host: TestHost, container: str) -> str:
    return host.run("docker", "inspect", "-f", "{{.State.StartedAt}}", container).strip()


def test_drill_4_memory_and_fork_bombs_stay_in_their_container(
    host: TestHost, attacker: HubClient, victim: HubClient
) -> None:
    alice, bob = host.server_of(ATTACKER), host.server_of(VICTIM)
    bob_kernel = victim.start_kernel(VICTIM)
    assert victim.execute(VICTIM, bob_kernel, "kept = 'bob 1'").error is None
    hub_started = started_at(host, host.hub)
    before = memory_events(host, alice)
    assert before["limit"] == size_in_bytes(host.scenario_var("jupyterhub_mem_limit"))

    kernel = attacker.start_kernel(ATTACKER)
    bomb = "chunks = []\nwhile True:\n    chunks.append(b'\\x01' * (32 * 1024 * 1024))"
    assert attacker.execute(ATTACKER, kernel, bomb, timeout=120).error == "kernel died"
    after = memory_events(host, alice)
    assert after["limit_hits"] > before["limit_hits"], "the bomb never reached its own limit"
    assert after["oom_kill"] > before["oom_kill"], "the bomb was not OOM-killed in its container"
    assert memory_events(host, bob)["oom_kill"] == 0

    limit = host.scenario_var("jupyterhub_pids_limit")
    fork_bomb = (
        "import os, time\n"
        "children = []\n"
        "try:\n"
        f"    for _ in range({limit * 2}):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        children.append(pid)\n"
        "    print(len(children), 0)\n"
        "except OSError as err:\n"
        "    print(len(children), err.errno)\n"
        "finally:\n"
        "    for pid in children: os.kill(pid, 9)\n"
    )
    forked, errno = host.run("docker", "exec", alice, "python3", "-c", fork_bomb).split()
    assert int(forked) < limit, forked
    assert errno == "11", errno  # EAGAIN: the pids limit

    assert started_at(host, host.hub) == hub_started
    assert attacker.api("GET", "/hub/health").status_code == 200
    assert victim.execute(VICTIM, bob_kernel, "print(kept)").stdout == "bob 1\n"


def test_drill_5_logins_lock_out_and_common_passwords_are_refused(
    hub_url: str, ca_file: str, host: TestHost, make_user: UserFactory
) -> None:
    allowed_failures = host.scenario_var("jupyterhub_allowed_failed_logins")
    lockout = host.scenario_var("jupyterhub_seconds_before_next_try")
    carl = make_user("seccarl")
    for _ in range(allowed_failures):
        assert not HubClient(hub_url, verify=ca_file).login("seccarl", "wrong-" + carl.password)
    assert not HubClient(hub_url, verify=ca_file).login("seccarl", carl.password), "no lockout"
    time.sleep(lockout + 2)
    assert HubClient(hub_url, verify=ca_file).login("seccarl", carl.password), "still locked out"

    # On NativeAuthenticator's list of common passwords, and long enough otherwise.
    refused = host.run(
        "sh",
        "-c",
        "echo qwertyuiop | docker exec -i jupyterhub gpuhub-admin user "
        "set-password seccarl --password-stdin",
        check=False,
    )
    assert "common passwords" in refused, refused
    assert HubClient(hub_url, verify=ca_file).login("seccarl", carl.password)


def test_drill_5_sign_up_waits_for_an_admin_and_admin_names_are_taken_before_the_hub_answers(
    hub_url: str, ca_file: str, host: TestHost, admin: HubClient
) -> None:
    """The scenario turns sign-up on (jupyterhub_enable_signup; off by default, which
    hub/tests/test_hub_security.py checks on a live hub): a stranger's account waits for
    an admin, and nobody can sign up as an admin to set its password."""
    assert host.scenario_var("jupyterhub_enable_signup") is True
    HubClient(hub_url, verify=ca_file).signup("claimer", "a-long-enough-password")
    assert not HubClient(hub_url, verify=ca_file).login("claimer", "a-long-enough-password")
    listed = json.loads(
        host.run("docker", "exec", host.hub, "gpuhub-admin", "--json", "user", "list")
    )
    (claimer,) = [u for u in listed["users"] if u["name"] == "claimer"]
    assert (claimer["approved"], claimer["admin"]) == (False, False), claimer
    HubClient(hub_url, verify=ca_file).signup(admin.username or "", "attacker-password-77")
    assert not HubClient(hub_url, verify=ca_file).login(
        admin.username or "", "attacker-password-77"
    )
    # The admin account (the `admin` fixture logged in with it) came from a root-only file.
    mode = host.run("stat", "-c", "%a %U %G", f"{host.root}/state/admin-passwords/admin")
    assert mode.split() == ["600", "root", "root"]
    assert admin.api("GET", "/hub/api/user").json()["admin"] is True


def test_drill_5_workshop_mode_refuses_a_host_with_homes(host: TestHost) -> None:
    """Workshop mode lets anyone type any name: on a host with homes that opens them."""
    hub = host.run("docker", "inspect", "-f", "{{.State.StartedAt}}", host.hub)
    assert host.run("ls", f"{host.root}/home").split(), "the drill needs a home on the host"
    result = host.converge("-e", "jupyterhub_auth_mode=workshop")
    assert result.returncode != 0
    assert "set jupyterhub_workshop_over_existing_homes: true" in flat(result), flat(result)[-2000:]
    assert recap(result) == (0, 1)
    assert host.run("docker", "inspect", "-f", "{{.State.StartedAt}}", host.hub) == hub


def test_drill_5_bridged_traffic_passes_through_nftables(host: TestHost) -> None:
    """Drill 1's isolation on one bridge needs br_netfilter; the firewall role makes it
    load at boot and sets the sysctl (test hosts share the machine's kernel, so the live
    value is the one this machine set)."""
    assert host.run("cat", "/etc/modules-load.d/gpuhub-firewall.conf") == "br_netfilter\n"
    assert "net.bridge.bridge-nf-call-iptables = 1" in host.run(
        "cat", "/etc/sysctl.d/90-gpuhub-firewall.conf"
    )
    assert host.run("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables").strip() == "1"


def test_drill_6_metrics_need_the_metrics_token(
    hub_url: str, ca_file: str, host: TestHost, attacker: HubClient
) -> None:
    url = f"{hub_url}/hub/metrics"
    assert requests.get(url, verify=ca_file, timeout=30).status_code == 403
    assert attacker.api("GET", "/hub/metrics").status_code == 403
    token = host.run("cat", f"{host.root}/state/metrics_token").strip()
    answer = requests.get(
        url, headers={"Authorization": f"token {token}"}, verify=ca_file, timeout=30
    )
    assert answer.status_code == 200
    assert "jupyterhub_" in answer.text
    # The metrics token can read nothing else.
    users = requests.get(
        f"{hub_url}/hub/api/users",
        headers={"Authorization": f"token {token}"},
        verify=ca_file,
        timeout=30,
    )
    assert users.status_code == 403
