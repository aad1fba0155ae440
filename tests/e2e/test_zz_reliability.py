"""Reliability drills 7-10 (README, Security). They run last (file name): they restart
the hub, upgrade it (playbooks/upgrade.yml, from the scenario's JupyterHub 5 to the role's
pins, then an upgrade broken on purpose that rolls itself back), restart Docker and reboot
the test host. Drill 10 (a --check --diff run changes nothing) comes first, while the host
is exactly as converged."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import requests
from hubclient import HubClient
from netprobe import probe
from shared_facts import default, hub_image
from testhost import TestHost, UserFactory, changed_tasks, flat, ok, recap

LIVE = [f"live{i}" for i in range(10)]
RETURNER = "returner"
# The upgrade: to the role's pins (the scenario starts from the previous JupyterHub).
PINS = default("jupyterhub_images_versions")
UPGRADE = ("-e", json.dumps({"jupyterhub_images_versions": PINS}))
# An upgrade whose new hub image cannot show the login form.
BROKEN = {
    "jupyterhub_images_versions": PINS,
    "jupyterhub_images_hub_extra_commands": ["find /opt -name native-login.html -delete"],
}
OLDER_BUILDS = ("drill-unused", "drill-in-use")
FRESH = "fresh"

Kernels = dict[str, tuple[HubClient, str]]


@pytest.fixture(scope="module")
def kernels(make_user: UserFactory) -> Kernels:
    """Ten users with a running server and a kernel that holds state."""
    clients = {name: make_user(name) for name in LIVE}
    with ThreadPoolExecutor(5) as pool:
        list(pool.map(lambda name: clients[name].start_server(name), LIVE))
    live = {}
    for name, client in clients.items():
        kernel = client.start_kernel(name)
        assert client.execute(name, kernel, f"state = {name!r} * 2").error is None
        live[name] = (client, kernel)
    return live


def wait_for_hub(url: str, ca_file: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/hub/health", verify=ca_file, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    raise AssertionError(f"the hub at {url} did not come back within {timeout} s")


def assert_state_kept(kernels: Kernels) -> None:
    for name, (client, kernel) in kernels.items():
        assert client.server_state(name)["ready"], name
        result = client.execute(name, kernel, "print(state)")
        assert result.stdout == name * 2 + "\n", (name, result)


@contextmanager
def users_at_work(kernels: Kernels, every: float = 30) -> Iterator[list[str]]:
    """The users keep working while the admin upgrades: each kernel runs a cell every
    `every` seconds. (Left idle, their servers would rightly be culled once a converge
    outlasts the scenario's short idle timeout.) A cell the hub's restart interrupts is
    simply tried again at the next round (kept in `missed`, for a failing test's report).
    The round stops as soon as the upgrade is over: while the hub is down, a cell waits
    out its timeout, and a whole round of them would hold the drill for minutes."""
    done = threading.Event()
    missed: list[str] = []

    def work() -> None:
        while not done.wait(every):
            for name, (client, kernel) in kernels.items():
                if done.is_set():
                    return
                try:
                    client.execute(name, kernel, "pass", timeout=10)
                except Exception as error:  # any failure: the next round tries again
                    missed.append(f"{name}: {error!r}")

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        yield missed
    finally:
        done.set()
        worker.join()
        print("cells the upgrade interrupted:", missed)  # shown when the drill fails


def inspect(host: TestHost, template: str, *containers: str) -> list[str]:
    return host.run("docker", "inspect", "-f", template, *containers).split()


# What the roles own: their files and folders (not the hub's database and usage ledger,
# which change on their own), the hub and proxy containers (user servers come and go with
# the culler), networks, images and the nftables table (rules, not their counters).
OWNED = (
    "/etc/gpuhub",
    "/etc/docker/daemon.json",
    "/etc/nginx",
    "/etc/systemd/system/gpuhub-firewall.service",
    "/etc/modules-load.d/gpuhub-firewall.conf",
    "/etc/sysctl.d/90-gpuhub-firewall.conf",
    "/etc/ansible/facts.d",
    "/etc/cron.d/gpuhub-backup",
    "/etc/gpuhub-backup",
    "/usr/local/sbin/gpuhub-backup",
    # and under the root: config/, state/ (see snapshot())
)


def snapshot(host: TestHost) -> str:
    """What the roles own on the host: file hashes and modes, containers, networks, images
    and the firewall's rules (without counters, which move on their own)."""
    owned = " ".join((*OWNED, host.path("config"), host.path("state")))
    return host.run(
        "sh",
        "-ec",
        f"""
find {owned} -type f ! -name 'jupyterhub.sqlite*' ! -name 'usage.jsonl' -print0 | sort -z \
  | xargs -0 sh -c 'sha256sum "$@"; stat -c "%n %a %U %G" "$@"' files
docker inspect -f '{{{{.Name}}}} {{{{.Id}}}} {{{{.State.StartedAt}}}}' {host.hub} {host.proxy}
docker network ls -q --no-trunc | sort
docker images -q --no-trunc | sort -u
nft -s list table inet gpuhub
""",
    )


def test_drill_10_check_diff_on_a_converged_host_changes_nothing(host: TestHost) -> None:
    """The recap alone could miss a task that changes the host while reporting `ok`
    (check_mode: false with changed_when: false): compare the host itself too."""
    before = snapshot(host)
    result = host.converge("--check", "--diff")
    assert result.returncode == 0, result.stdout[-3000:]
    changed, failed = recap(result)
    assert (changed, failed) == (0, 0), changed_tasks(result)
    after = snapshot(host)
    assert after == before, "\n".join(sorted(set(after.splitlines()) ^ set(before.splitlines())))


def jupyterhub_version(host: TestHost) -> str:
    return host.run("docker", "exec", host.hub, "jupyterhub", "--version").strip()


def schema(host: TestHost) -> str:
    """The hub database's schema revision (alembic's)."""
    read = (
        "import sqlite3, sys; database = sqlite3.connect(sys.argv[1], uri=True); "
        "print(database.execute('select version_num from alembic_version').fetchone()[0])"
    )
    uri = f"file:{host.root}/state/jupyterhub.sqlite?mode=ro"
    return host.run("python3", "-c", read, uri).strip()


def test_drill_7_kernels_survive_a_hub_restart_and_upgrade(
    host: TestHost, hub_url: str, ca_file: str, kernels: Kernels, make_user: UserFactory
) -> None:
    servers = [host.server_of(name) for name in LIVE]
    started = inspect(host, "{{.State.StartedAt}}", *servers)

    host.run("docker", "restart", host.hub)
    wait_for_hub(hub_url, ca_file)
    assert_state_kept(kernels)

    assert jupyterhub_version(host) == host.scenario_var("jupyterhub_images_versions")["jupyterhub"]
    schema_before = schema(host)
    hub_before = inspect(host, "{{.Id}}", host.hub)
    proxy_before = inspect(host, "{{.Id}} {{.State.StartedAt}}", host.proxy)
    current = hub_image()
    build_before = inspect(host, "{{.Id}}", current)
    singleuser = inspect(host, "{{.Config.Image}}", servers[0])[0]
    singleuser_before = inspect(host, "{{.Id}}", singleuser)
    # Older builds of the hub image: one unused, which the upgrade removes, and one a
    # (stopped) container still uses, which stays.
    repository = current.rpartition(":")[0]
    for tag in OLDER_BUILDS:
        dockerfile = f"FROM {current}\nLABEL io.gpuhub.drill={tag}\n"
        host.run("sh", "-c", f"printf '{dockerfile}' | docker build -q -t {repository}:{tag} -")
    host.run("docker", "create", "--name", "drill-older-build", f"{repository}:{OLDER_BUILDS[1]}")
    with users_at_work(kernels):
        upgrade = host.playbook("playbooks/upgrade.yml", *UPGRADE)
    assert "smoke test passed" in ok(upgrade), upgrade.stdout[-3000:]
    # Image retention: the build the upgrade replaced is the previous one (a rollback's).
    assert inspect(host, "{{.Id}}", f"{repository}:previous") == build_before
    tags = host.run("docker", "image", "ls", "--format", "{{.Tag}}", repository).split()
    assert OLDER_BUILDS[0] not in tags, tags
    assert OLDER_BUILDS[1] in tags, tags
    host.run("docker", "rm", "drill-older-build")
    host.run("docker", "rmi", f"{repository}:{OLDER_BUILDS[1]}")
    assert inspect(host, "{{.Id}}", host.hub) != hub_before, "the hub was not recreated"
    assert jupyterhub_version(host) == PINS["jupyterhub"]
    assert schema(host) != schema_before, "the database was not upgraded"
    # The proxy kept running (no dropped connections), and so did every user server.
    assert inspect(host, "{{.Id}} {{.State.StartedAt}}", host.proxy) == proxy_before
    wait_for_hub(hub_url, ca_file)
    assert_state_kept(kernels)
    assert inspect(host, "{{.State.StartedAt}}", *servers) == started
    # Users log in with their passwords from before; the probe user is gone.
    for name in LIVE[:2]:
        assert HubClient(hub_url, verify=ca_file).login(name, kernels[name][0].password or "")
    probe = default("jupyterhub_smoke_user")
    assert probe not in host.run("docker", "exec", host.hub, "gpuhub-admin", "user", "list")
    # A new server starts on the new singleuser image.
    fresh = make_user(FRESH)
    fresh.start_server(FRESH)
    image = inspect(host, "{{.Image}}", host.server_of(FRESH))
    assert image == inspect(host, "{{.Id}}", singleuser) != singleuser_before
    fresh.stop_server(FRESH)


def test_drill_7_an_upgrade_with_nothing_to_change_changes_nothing(host: TestHost) -> None:
    again = host.playbook("playbooks/upgrade.yml", *UPGRADE)
    said = ok(again, changed=0)
    assert "Nothing to upgrade" in said, said[-3000:]
    assert "smoke test passed" not in said, changed_tasks(again)


def test_drill_7_a_broken_upgrade_rolls_back_on_its_own(
    host: TestHost, hub_url: str, ca_file: str, kernels: Kernels
) -> None:
    servers = [host.server_of(name) for name in LIVE]
    started = inspect(host, "{{.State.StartedAt}}", *servers)
    hub_before = inspect(host, "{{.Image}}", host.hub)
    proxy_before = inspect(host, "{{.Id}} {{.State.StartedAt}}", host.proxy)
    began = time.monotonic()
    with users_at_work(kernels):
        upgrade = host.playbook("playbooks/upgrade.yml", "-e", json.dumps(BROKEN))
    took = time.monotonic() - began
    assert upgrade.returncode != 0, upgrade.stdout[-3000:]
    said = flat(upgrade)
    assert 'The upgrade failed at "Check the smoke test passed": smoke test failed at login' in said
    assert "Rolled back" in said, said[-3000:]
    assert took < 300, f"the rollback drill took {took:.0f} s"
    # The previous hub image runs; the proxy and the user servers never stopped.
    assert inspect(host, "{{.Image}}", host.hub) == hub_before
    assert inspect(host, "{{.Id}} {{.State.StartedAt}}", host.proxy) == proxy_before
    assert inspect(host, "{{.State.StartedAt}}", *servers) == started
    wait_for_hub(hub_url, ca_file)
    assert_state_kept(kernels)
    for name in LIVE[:2]:
        assert HubClient(hub_url, verify=ca_file).login(name, kernels[name][0].password or "")


def test_drill_8_user_servers_survive_a_docker_restart(
    host: TestHost, hub_url: str, ca_file: str, kernels: Kernels
) -> None:
    servers = [host.server_of(name) for name in LIVE]
    # StartedAt alone stays the same for a container that was stopped: compare whether it
    # runs and its main process too.
    state = "{{.State.Running}}/{{.State.Pid}}/{{.State.StartedAt}}"
    before = inspect(host, state, *servers, host.hub, host.proxy)
    assert all(line.startswith("true/") for line in before), before
    daemon = host.run("systemctl", "show", "-p", "MainPID", "docker")
    host.run("systemctl", "restart", "docker")
    assert host.run("systemctl", "show", "-p", "MainPID", "docker") != daemon
    assert inspect(host, state, *servers, host.hub, host.proxy) == before
    wait_for_hub(hub_url, ca_file)
    assert_state_kept(kernels)
    # Isolation holds with the restarted daemon's rules: the proxy API stays out of reach.
    assert probe(host, host.hub, host.proxy_api) == {host.proxy_api: "open"}
    assert probe(host, servers[0], host.proxy_api)[host.proxy_api] != "open"


def test_drill_9_the_stack_returns_after_a_reboot(
    host: TestHost, hub_url: str, ca_file: str, make_user: UserFactory
) -> None:
    user = make_user(RETURNER)
    password = user.password or ""
    user.start_server(RETURNER)
    kernel = user.start_kernel(RETURNER)
    code = "open('/home/jovyan/work/before-reboot.txt', 'w').write('still 42')"
    assert user.execute(RETURNER, kernel, code).error is None

    address = host.address
    host.container.restart(timeout=60)
    host.container.reload()
    # A real server keeps its address; a test host gets one from Docker's default bridge
    # again, and a container made meanwhile may have taken the old one (the certificate
    # names it): say so rather than wait for a hub that answers elsewhere.
    assert host.address == address, f"the test host came back at {host.address}, not {address}"
    url = f"https://{address}"
    wait_for_hub(url, ca_file, timeout=420)
    for unit in ("gpuhub-firewall", "docker", "nginx"):
        assert host.run("systemctl", "is-active", unit).strip() == "active", unit
    assert "chain users_out" in host.run("nft", "list", "table", "inet", "gpuhub")

    again = HubClient(url, verify=ca_file)
    assert again.login(RETURNER, password), "cannot log in after the reboot"
    again.create_token()
    again.start_server(RETURNER)
    kernel = again.start_kernel(RETURNER)
    read = "print(open('/home/jovyan/work/before-reboot.txt').read())"
    assert again.execute(RETURNER, kernel, read).stdout == "still 42\n"
    server = host.server_of(RETURNER)
    assert probe(host, server, host.proxy_api)[host.proxy_api] != "open"
