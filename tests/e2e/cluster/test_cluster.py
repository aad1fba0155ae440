"""Cluster mode, end to end (Molecule scenario `cluster`: a hub host and two nodes with two
made-up GPUs each, joined in a Docker Swarm). Expected values come from the scenario's
inventory: its node group and each node's gpuhub_gpus. Tests run in file order."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from hubclient import HubClient, HubError
from netprobe import probe
from testhost import BACKUP_ENV, RESTIC, TestHost, UserFactory, new_password, ok

GPU_VARIABLE = "NVIDIA_VISIBLE_DEVICES"  # what NVIDIA's runtime (the nodes' default) reads


def node_names() -> list[str]:
    """The scenario's jupyterhub_nodes (Molecule writes groups at the inventory's top)."""
    inventory = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())
    return sorted(inventory["jupyterhub_nodes"]["hosts"])


@pytest.fixture(scope="module")
def nodes() -> dict[str, TestHost]:
    return {name: TestHost(name) for name in node_names()}


@pytest.fixture(scope="module")
def gpus(nodes: dict[str, TestHost]) -> dict[str, set[str]]:
    """Each node's GPU UUIDs, as the scenario made them up."""
    return {
        name: {g["uuid"] for g in node.scenario_var("gpuhub_gpus")} for name, node in nodes.items()
    }


def swarm_nodes(host: TestHost) -> dict[str, dict[str, Any]]:
    ids = host.run("docker", "node", "ls", "-q").split()
    return {
        n["Description"]["Hostname"]: n
        for n in json.loads(host.run("docker", "node", "inspect", *ids))
    }


def node_of(host: TestHost, user: str) -> str:
    """The node running `user`'s default server (its service's running task)."""
    out = host.run(
        "docker",
        "service",
        "ps",
        f"jupyter-{user}",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
    )
    running = [line.split()[0] for line in out.splitlines() if " Running " in f" {line} "]
    assert len(running) == 1, out
    return running[0]


def home_node(host: TestHost, user: str) -> str:
    """The node the hub recorded for `user`'s home."""
    return host.run("cat", host.path("state", "home-nodes", user)).strip()


def container_of(host: TestHost, nodes: dict[str, TestHost], user: str) -> tuple[TestHost, str]:
    """The node running `user`'s default server, and its container there."""
    node = nodes[node_of(host, user)]
    container = node.run("docker", "ps", "-q", "--filter", f"label=gpuhub.user={user}").split()
    assert len(container) == 1, container
    return node, container[0]


def gpu_of(host: TestHost, nodes: dict[str, TestHost], user: str) -> str:
    """The GPU UUID the hub gave `user`'s server: the variable in its container's
    configuration, which the NVIDIA runtime reads to expose that device."""
    node, container = container_of(host, nodes, user)
    env = json.loads(node.run("docker", "inspect", "-f", "{{json .Config.Env}}", container))
    found = [v.split("=", 1)[1] for v in env if v.startswith(GPU_VARIABLE + "=")]
    return ",".join(found)


def run(client: HubClient, code: str) -> str:
    user = client.username or ""
    kernel = client.start_kernel(user)
    result = client.execute(user, kernel, code)
    assert result.error is None, result.error
    return result.stdout.strip()


def test_nodes_joined_with_their_labels_and_gpus(host: TestHost, gpus: dict[str, set[str]]) -> None:
    found = swarm_nodes(host)
    assert set(found) == {host.name, *gpus}
    assert found[host.name]["Spec"]["Role"] == "manager"
    assert found[host.name]["Spec"]["Labels"]["gpuhub.servers"] == "false"
    for name, uuids in gpus.items():
        node = found[name]
        assert node["Status"]["State"] == "ready"
        assert node["Spec"]["Role"] == "worker"
        assert node["Spec"]["Labels"]["gpuhub.servers"] == "true"
        assert node["Spec"]["Labels"]["gpuhub.gpu.count"] == str(len(uuids))
        advertised = {
            r["NamedResourceSpec"]["Value"]
            for r in node["Description"]["Resources"].get("GenericResources") or []
            if r.get("NamedResourceSpec", {}).get("Kind") == "NVIDIA-GPU"
        }
        assert advertised == uuids


def test_nodes_pull_from_the_registry_over_tls(host: TestHost, nodes: dict[str, TestHost]) -> None:
    registry = f"{host.address}:{host.fact('gpuhub_registry_port')}"
    node = next(iter(nodes.values()))
    ca = f"/etc/docker/certs.d/{registry}/ca.crt"
    catalog = json.loads(node.run("curl", "-sf", "--cacert", ca, f"https://{registry}/v2/_catalog"))
    assert {"gpuhub/hub", "gpuhub/singleuser-cpu"} <= set(catalog["repositories"])
    # Without the cluster's CA the registry is not trusted.
    code, _ = node.container.exec_run(["curl", "-sf", f"https://{registry}/v2/"])
    assert code != 0


SHARED_FILE = "datasets/README"  # put in the hub host's shared folder by the next test


def test_the_shared_folder_is_copied_to_every_node(
    host: TestHost, nodes: dict[str, TestHost]
) -> None:
    """What an admin puts in the hub host's shared folder reaches each node once synced
    (the next test reads it in servers there); a second sync copies nothing."""
    sync = ("docker", "exec", host.hub, "gpuhub-admin", "--json", "shared", "sync")
    path = host.path("shared", SHARED_FILE)
    host.run("sh", "-c", f"mkdir -p {os.path.dirname(path)} && echo 'iris 150' > {path}")
    assert json.loads(host.run(*sync))["shared"] == dict.fromkeys(nodes, "updated")
    assert json.loads(host.run(*sync))["shared"] == dict.fromkeys(nodes, "unchanged")


QUOTA_GROUP = "lab"


def test_a_group_at_its_gpu_quota_is_refused_and_a_raised_quota_needs_no_restart(
    host: TestHost, hub_url: str, ca_file: str
) -> None:
    """Two members of one group, which may hold one GPU at once: the second is refused,
    told who holds the group's GPU; the quota raised (the file the jupyterhub role writes
    from jupyterhub_group_limits), the next spawn gets one, with no hub restart. Every
    GPU is free again afterwards (the next tests count on them)."""
    quotas = host.path("config", "gpu-quotas.yaml")
    as_converged = host.run("cat", quotas)
    hub_started = host.run("docker", "inspect", "-f", "{{.State.StartedAt}}", host.hub)
    members = []
    for name in ("q1", "q2"):
        client = HubClient(hub_url, verify=ca_file)
        client.password = new_password()
        host.add_user(name, client.password, "--group", QUOTA_GROUP)
        assert client.login(name, client.password), name
        client.create_token()
        members.append(client)
    first, second = members
    try:
        host.put_file(quotas, f"{QUOTA_GROUP}: {{max_gpus: 1}}\n", 0o640)
        first.start_server("q1", profile="gpu", timeout=420)
        started = time.monotonic()
        with pytest.raises(HubError) as refused:
            second.start_server("q2", profile="gpu", timeout=60)
        assert time.monotonic() - started < 30, "a quota refusal must come at once"
        assert "spawn: 403" in str(refused.value), refused.value
        assert (
            f"GPU quota reached: group {QUOTA_GROUP} may hold 1 GPU at once (max_gpus) and "
            "its members hold 1 (q1 1)"
        ) in str(refused.value)
        host.put_file(quotas, f"{QUOTA_GROUP}: {{max_gpus: 2}}\n", 0o640)
        second.start_server("q2", profile="gpu", timeout=420)
        assert host.run("docker", "inspect", "-f", "{{.State.StartedAt}}", host.hub) == hub_started
    finally:
        host.put_file(quotas, as_converged, 0o640)
        for client in members:
            client.stop_server(client.username or "")


@pytest.fixture(scope="module")
def users(make_user: UserFactory) -> list[HubClient]:
    return [make_user(f"c{i}") for i in range(1, 6)]


def test_servers_run_on_the_nodes_and_their_homes_spread(
    host: TestHost, users: list[HubClient], gpus: dict[str, set[str]]
) -> None:
    """Four users' servers, each with a whole GPU (the GPU test counts on them)."""
    four = users[:4]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: c.start_server(c.username or "", profile="gpu", timeout=420), four))
    placed = {c.username: node_of(host, c.username or "") for c in four}
    assert set(placed.values()) == set(gpus), placed  # both nodes, never the hub host
    # Code runs; the shared folder (synced by the last test) is there, read-only.
    code = (
        "import os; print(6 * 7, open('/home/jovyan/shared/" + SHARED_FILE + "').read().strip(),"
        " os.access('/home/jovyan/shared', os.W_OK))"
    )
    for client in four:
        assert run(client, code) == "42 iris 150 False"
    records = {c.username: home_node(host, c.username or "") for c in four}
    assert records == placed


def test_exclusive_gpus_are_one_per_server_cluster_wide(
    host: TestHost, nodes: dict[str, TestHost], users: list[HubClient], gpus: dict[str, set[str]]
) -> None:
    """The first four users' servers hold a GPU each (started with the GPU profile)."""
    total = sum(len(u) for u in gpus.values())
    four, fifth = users[:4], users[4]
    held = {c.username: gpu_of(host, nodes, c.username or "") for c in four}
    assert len(set(held.values())) == 4, held
    assert set(held.values()) <= set().union(*gpus.values())
    # The fifth waits at most the placement wait (and Swarm's scheduling), then is told.
    started = time.monotonic()
    with pytest.raises(HubError) as refused:
        fifth.start_server(fifth.username or "", profile="gpu", timeout=120)
    assert time.monotonic() - started < 60
    message = fifth.api("GET", f"/hub/api/users/{fifth.username}").text + str(refused.value)
    progress = host.run("docker", "logs", "--tail", "200", host.hub)
    assert f"No GPUs free: {total} of {total} in the cluster" in progress + message
    assert "jupyter-" + (fifth.username or "") not in host.run("docker", "service", "ls")
    # One on the fifth user's home node stops: now it starts there, with the freed GPU.
    home = home_node(host, fifth.username or "")
    neighbour = next(c for c in four if node_of(host, c.username or "") == home)
    freed = held[neighbour.username]
    neighbour.stop_server(neighbour.username or "")
    fifth.start_server(fifth.username or "", profile="gpu", timeout=300)
    assert gpu_of(host, nodes, fifth.username or "") == freed


def test_status_shows_each_node_with_its_gpus_and_users(
    host: TestHost, users: list[HubClient], gpus: dict[str, set[str]]
) -> None:
    """After the GPU test every running server holds one GPU."""
    running = [c.username or "" for c in users if c.server_state(c.username or "")]
    where = {name: node_of(host, name) for name in running}
    # One line per node; the output may wrap long lines.
    out = " ".join(ok(host.playbook("playbooks/status.yml"), changed=0).split())
    for node, uuids in gpus.items():
        mine = sorted(u for u, n in where.items() if n == node)
        line = (
            f"{node}: ready, active; GPUs {len(mine)} of {len(uuids)} reserved; "
            f"servers: {', '.join(mine) or 'none'}"
        )
        assert line in out, out[-3000:]


def test_a_work_file_survives_stop_and_start_and_follows_its_home_to_another_node(
    host: TestHost, nodes: dict[str, TestHost], users: list[HubClient]
) -> None:
    client = users[0]
    name = client.username or ""
    move = ("docker", "exec", host.hub, "gpuhub-admin", "user", "move", name, "--to")
    source = home_node(host, name)
    target = next(n for n in nodes if n != source)
    client.start_server(name, timeout=300)
    run(client, "open('/home/jovyan/work/kept.txt', 'w').write('still here')")
    refused = host.run(*move, target, check=False)
    assert f"{name} has running servers ((default)): stop them first" in refused, refused
    client.stop_server(name)
    out = host.run(*move, target)
    assert f"moved {name}'s home from {source} to {target}" in out, out
    assert home_node(host, name) == target
    old = nodes[source].container.exec_run(["test", "-e", nodes[source].path("home", name)])
    assert old.exit_code != 0, "the old copy is still there"
    assert host.run(*move, target).strip() == f"{name}'s home is on {target} already"
    client.start_server(name, timeout=300)
    assert node_of(host, name) == target
    assert run(client, "print(open('/home/jovyan/work/kept.txt').read())") == "still here"


def test_a_hub_restart_keeps_every_service_and_kernel(
    host: TestHost, users: list[HubClient]
) -> None:
    client = users[0]
    name = client.username or ""
    client.start_server(name, timeout=300)
    before = host.run("docker", "service", "ls", "-q", "--filter", "label=gpuhub.user").split()
    assert before
    kernel = client.start_kernel(name)
    assert client.execute(name, kernel, "x = 41").error is None
    host.run("docker", "restart", host.hub)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if client.api("GET", "/hub/api/").status_code == 200:
                break
        except OSError:
            pass
        time.sleep(2)
    after = host.run("docker", "service", "ls", "-q", "--filter", "label=gpuhub.user").split()
    assert sorted(after) == sorted(before)
    assert client.execute(name, kernel, "print(x + 1)").stdout.strip() == "42"


def test_running_servers_reach_a_recreated_hub(host: TestHost, users: list[HubClient]) -> None:
    """A site.yml run that recreates the hub's container gives it a new address on each
    user's network: a server that kept running asks the hub for a token it has not seen
    within a minute (c-ares kept the old address for Docker DNS's 600 s)."""
    client = users[0]
    name = client.username or ""
    client.start_server(name, timeout=300)
    host.run("docker", "rm", "-f", host.hub)
    ok(host.playbook("molecule/cluster/converge.yml"))
    client.create_token("after the hub was recreated")  # one the server has not seen
    deadline = time.monotonic() + 60
    while True:
        status = client.api("GET", f"/user/{name}/api/status", timeout=10).status_code
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status == 200


DOCKER_API_PORT = 2375  # Docker's TCP API, were an admin to open it: a listener of ours


def test_user_containers_reach_no_cluster_host(
    host: TestHost, nodes: dict[str, TestHost], users: list[HubClient]
) -> None:
    """Not the registry, the backup server, the swarm's ports, a Docker API or anything
    else on the hub host or a node: each target answers from the node itself (the
    control), not from a user's server."""
    client = users[0]
    name = client.username or ""
    client.start_server(name, timeout=300)
    node, container = container_of(host, nodes, name)
    other = next(n for n in nodes.values() if n.name != node.name)
    targets = [
        f"{host.address}:{host.fact('gpuhub_registry_port')}",
        f"{host.address}:{host.fact('gpuhub_backup_port')}",
        f"{host.address}:2377",
        f"{node.address}:7946",
        f"{other.address}:7946",
    ]
    assert probe(node, None, *targets) == dict.fromkeys(targets, "open")
    # The listeners go by themselves after a minute; each answers on its own host (other
    # cluster hosts may reach only the swarm's ports there).
    listen = ["timeout", "60", "python3", "-m", "http.server", str(DOCKER_API_PORT), "--bind"]
    for listener in (node, other):
        listener.container.exec_run([*listen, listener.address], detach=True)
    time.sleep(1)
    for listener in (node, other):
        api = f"{listener.address}:{DOCKER_API_PORT}"
        assert probe(listener, None, api) == {api: "open"}
        targets.append(api)
    reached = probe(node, container, *targets)
    assert all(result != "open" for result in reached.values()), reached


def test_a_users_server_reaches_no_other_users_server(
    host: TestHost, nodes: dict[str, TestHost], users: list[HubClient]
) -> None:
    """Each user's servers are on their own overlay network with the hub and the proxy:
    the hub reaches another user's server (the control), a user's server does not, by
    name or by any of its addresses."""
    mine, theirs = (c.username or "" for c in users[:2])
    for client in users[:2]:
        client.start_server(client.username or "", timeout=300)
    node, container = container_of(host, nodes, theirs)
    networks = json.loads(
        node.run("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", container)
    )
    port = 8888  # DockerSpawner's port of a user's server
    targets = [f"jupyter-{theirs}:{port}"] + [f"{n['IPAddress']}:{port}" for n in networks.values()]
    hub = host.fact("gpuhub_hub_container")
    assert probe(host, hub, *targets) == dict.fromkeys(targets, "open")
    my_node, my_container = container_of(host, nodes, mine)
    reached = probe(my_node, my_container, *targets)
    assert all(result != "open" for result in reached.values()), reached


def wait_for_node(host: TestHost, node: str, state: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if swarm_nodes(host)[node]["Status"]["State"] == state:
            return
        time.sleep(2)
    raise AssertionError(f"{node} not {state} after {timeout} s")


def test_a_lost_node_stops_only_its_users_and_they_come_back(
    host: TestHost, nodes: dict[str, TestHost], users: list[HubClient]
) -> None:
    homes = {c.username: home_node(host, c.username or "") for c in users}
    lost = sorted(set(homes.values()))[-1]
    stranded = next(c for c in users if homes[c.username] == lost)
    fine = next(c for c in users if homes[c.username] != lost)
    fine.start_server(fine.username or "", timeout=300)
    stranded.stop_server(stranded.username or "")
    nodes[lost].run("systemctl", "stop", "docker.socket", "docker.service")
    try:
        wait_for_node(host, lost, "down")
        assert run(fine, "print(6 * 7)") == "42"
        with pytest.raises(HubError):
            stranded.start_server(stranded.username or "", timeout=60)
        log = host.run("docker", "logs", "--since", "2m", host.hub)
        assert f"Your files are on node {lost}, which is down or drained now" in log
    finally:
        nodes[lost].run("systemctl", "start", "docker.service")
    wait_for_node(host, lost, "ready")
    stranded.start_server(stranded.username or "", timeout=300)
    assert node_of(host, stranded.username or "") == lost
    assert run(stranded, "print(6 * 7)") == "42"


def test_removing_a_user_archives_and_purges_their_home_on_its_node(
    host: TestHost, nodes: dict[str, TestHost], make_user: UserFactory
) -> None:
    """gpuhub-admin user remove (what users.yml state=absent runs) archives the home on the
    node that keeps it; with --purge every node's archives of the user go too."""
    client = make_user("c6")
    name = client.username or ""
    client.start_server(name, timeout=300)
    run(client, "open('/home/jovyan/work/kept.txt', 'w').write('archived')")
    node = nodes[home_node(host, name)]
    remove = ("docker", "exec", host.hub, "gpuhub-admin", "user", "remove", name)
    out = host.run(*remove)
    assert f"archived {name}'s home: {node.name}:" in out, out
    archive = out.split(f"{node.name}:", 1)[1].split()[0]
    assert f"{name}/work/kept.txt" in node.run("tar", "-tzf", archive).split()
    gone = node.container.exec_run(["test", "-e", node.path("home", name)]).exit_code
    assert gone != 0, "the home is still on its node"
    record = host.container.exec_run(["test", "-e", host.path("state", "home-nodes", name)])
    assert record.exit_code != 0, "the hub still records a home"
    networks = ("docker", "network", "ls", "-q", "--filter", f"label=gpuhub.network-of={name}")
    assert not host.run(*networks).split(), "the user's own network outlived her"
    host.run(*remove, "--purge")
    left = node.container.exec_run(["test", "-e", node.path("archive", name)]).exit_code
    assert left != 0, "the archive is still on the node"


def test_node_homes_are_backed_up_and_restore_onto_their_node(
    host: TestHost, nodes: dict[str, TestHost], users: list[HubClient]
) -> None:
    """Every host's nightly entry backs up into the hub host's one repository under its own
    host name; a node's snapshot holds the homes it keeps, and the node cannot delete it
    (append-only). restore.yml -e user= puts a lost file back on the home's node."""
    client = users[0]
    name = client.username or ""
    node = nodes[home_node(host, name)]
    kept = node.path("home", name, "work", "kept.txt")
    for each in (host, *nodes.values()):
        each.run("sh", "-c", each.backup_command())
    snapshots = json.loads(host.run(RESTIC, "snapshots", "--json"))
    assert {s["hostname"] for s in snapshots} == {host.name, *nodes}
    (latest,) = [s for s in snapshots if s["hostname"] == node.name]
    assert node.path("home") in latest["paths"]
    # The node's own credentials cannot delete it: what `restic forget` sends (restic itself
    # retries the refusal for most of a minute) is answered 403.
    delete = (
        f'set -a; . {BACKUP_ENV}; curl -s -o /dev/null -w "%{{http_code}}" -X DELETE'
        f' --cacert "$RESTIC_CACERT" "${{RESTIC_REPOSITORY#rest:}}snapshots/{latest["id"]}"'
    )
    assert node.run("sh", "-c", delete) == "403"
    assert latest["id"] in host.run(RESTIC, "snapshots", "--json")

    node.run("rm", kept)
    restore = ("playbooks/restore.yml", "-e", f"user={name}")
    ok(host.playbook(*restore, "-e", f"confirm_restore={host.name}"))
    assert node.run("cat", kept) == "still here"
    assert host.container.exec_run(["test", "-e", host.path("home", name)]).exit_code != 0


def test_zz_teardown_leaves_the_cluster_and_keeps_homes(
    host: TestHost, nodes: dict[str, TestHost], users: list[HubClient]
) -> None:
    """Last: the scenario is destroyed after it."""
    homes = {c.username: home_node(host, c.username or "") for c in users}
    ok(host.playbook("playbooks/teardown.yml"))
    for node in (host, *nodes.values()):
        state = node.run("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").strip()
        assert state == "inactive", (node.name, state)
        assert not node.run("docker", "ps", "-q", "--filter", "label=gpuhub.user").split()
    assert not host.run("docker", "ps", "-q", "--filter", f"name=^{host.hub}$").split()
    for user, node in homes.items():
        nodes[node].run("test", "-d", nodes[node].path("home", user or "", "work"))
        host.run("test", "-f", host.path("state", "home-nodes", user or ""))
