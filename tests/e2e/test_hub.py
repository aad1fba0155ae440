"""The hub, end to end, on a converged test host: accounts, spawning, limits, files,
starter content, culling, and a hub restart. Tests run in file order; the culler's idle
server (conftest's `idler`) started before this module and is checked last, so its wait
overlaps the other tests."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from gpuhub_hub.chart import WIDTH
from hubclient import HubClient
from PIL import Image
from testhost import (
    BUSY,
    SECRETS,
    Idler,
    TestHost,
    UserFactory,
    changed_tasks,
    ok,
    size_in_bytes,
)

METER = "meter"  # the usage report's user
# The starter notebook, in the home's work/ folder (where users have always found it).
TOUR = "work/PyTorch-Tour.ipynb"


@pytest.fixture(scope="module")
def alice(make_user: UserFactory) -> HubClient:
    return make_user("alice")


@pytest.fixture(scope="module")
def alice_kernel(alice: HubClient) -> str:
    alice.start_server("alice")
    return alice.start_kernel("alice")


def run(client: HubClient, kernel: str, code: str) -> str:
    result = client.execute(client.username or "", kernel, code)
    assert result.error is None, result.error
    return result.stdout


def test_server_spawns_and_runs_torch(alice: HubClient, alice_kernel: str) -> None:
    out = run(alice, alice_kernel, "import torch; print(torch.randn(2, 2).sum())")
    assert out.startswith("tensor("), out


def test_limits_and_uid_seen_from_inside(
    host: TestHost, alice: HubClient, alice_kernel: str
) -> None:
    limits = {
        "mem_limit": host.scenario_var("jupyterhub_mem_limit"),
        "cpu_limit": host.scenario_var("jupyterhub_cpu_limit"),
    }
    code = r"""
import os, pathlib
def read(*paths):
    for p in paths:
        if pathlib.Path(p).exists():
            return pathlib.Path(p).read_text().split()
mem = read('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes')[0]
cpu = read('/sys/fs/cgroup/cpu.max') or (
    read('/sys/fs/cgroup/cpu/cpu.cfs_quota_us') + read('/sys/fs/cgroup/cpu/cpu.cfs_period_us'))
print(os.getuid(), os.getgid(), mem, int(cpu[0]) / int(cpu[1]))
"""
    uid, gid, mem, cpus = run(alice, alice_kernel, code).split()
    assert (uid, gid) == host.user_ids()
    assert int(mem) == size_in_bytes(limits["mem_limit"])
    assert float(cpus) == pytest.approx(limits["cpu_limit"])


def test_terminals_are_on(alice: HubClient, alice_kernel: str) -> None:
    response = alice.api("POST", "/user/alice/api/terminals")
    assert response.status_code == 200, response.text[:200]
    name = response.json()["name"]
    assert alice.api("DELETE", f"/user/alice/api/terminals/{name}").status_code == 204


def test_containers_are_healthy_and_secrets_private(host: TestHost) -> None:
    for name in (host.hub, host.proxy):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = host.run(
                "docker",
                "inspect",
                "-f",
                "{{.State.Health.Status}} {{.HostConfig.RestartPolicy.Name}}",
                name,
            )
            if state.split()[0] == "healthy":
                break
            time.sleep(3)
        assert state.split() == ["healthy", "unless-stopped"], f"{name}: {state}"
    for secret in SECRETS:
        assert host.run("stat", "-c", "%a %U", f"{host.root}/state/{secret}").split() == [
            "600",
            "root",
        ]
    inspect = host.run("docker", "inspect", host.hub, host.proxy)
    for secret in SECRETS:
        value = host.run("cat", f"{host.root}/state/{secret}").strip()
        assert value not in inspect, f"{secret} shows in docker inspect"


def test_work_files_survive_a_respawn(host: TestHost, alice: HubClient, alice_kernel: str) -> None:
    run(alice, alice_kernel, "open('/home/jovyan/work/persist.txt', 'w').write('kept 42')")
    alice.stop_server("alice")
    alice.start_server("alice")
    kernel = alice.start_kernel("alice")
    assert run(alice, kernel, "print(open('/home/jovyan/work/persist.txt').read())") == "kept 42\n"
    owner = host.run("stat", "-c", "%u:%g %a", f"{host.root}/home/alice/work/persist.txt")
    assert owner.split()[0] == ":".join(host.user_ids())
    home = host.run("stat", "-c", "%u:%g", f"{host.root}/home/alice").strip()
    assert home == ":".join(host.user_ids())


def test_hub_restart_keeps_servers_and_kernels(host: TestHost, alice: HubClient) -> None:
    kernel = alice.start_kernel("alice")
    run(alice, kernel, "survivor = 'still here'")
    host.run("docker", "restart", host.hub)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if alice.api("GET", "/hub/health", timeout=5).status_code == 200:
                break
        except OSError:
            pass
        time.sleep(2)
    assert alice.server_state("alice")["ready"]
    assert run(alice, kernel, "print(survivor)") == "still here\n"


def test_tutorial_is_seeded_and_never_overwritten(host: TestHost, make_user: UserFactory) -> None:
    carol = make_user("carol")
    carol.start_server("carol")
    tour = carol.api("GET", f"/user/carol/api/contents/{TOUR}?content=1")
    assert tour.status_code == 200, tour.text[:200]
    assert "PyTorch" in json.dumps(tour.json()["content"])
    edited = {"type": "file", "format": "text", "content": "carol's own notes"}
    assert carol.api("PUT", f"/user/carol/api/contents/{TOUR}", json=edited).status_code == 200
    carol.stop_server("carol")

    secrets_before = host.run("sha256sum", *(f"{host.root}/state/{s}" for s in SECRETS))
    # The roles that own the homes and the secrets (Molecule's idempotence step has
    # already run the whole converge a second time).
    rerun = host.converge("--tags", "jupyterhub_storage,jupyterhub")
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert "changed=0" in rerun.stdout.split("PLAY RECAP")[-1], changed_tasks(rerun)
    assert host.run("sha256sum", *(f"{host.root}/state/{s}" for s in SECRETS)) == secrets_before

    carol.start_server("carol")
    again = carol.api("GET", f"/user/carol/api/contents/{TOUR}?content=1&format=text&type=file")
    assert again.json()["content"] == "carol's own notes"
    carol.stop_server("carol")


def test_the_usage_report_counts_the_session_it_ran(
    host: TestHost, make_user: UserFactory, tmp_path: Path
) -> None:
    """A server started and stopped: gpuhub-admin usage counts one session of that length
    (within a second at each end: the ledger's lines are written as the spawner starts
    and stops it), and no GPU-hours; playbooks/usage.yml prints it by group and brings
    the chart to the controller."""
    client = make_user(METER)
    before_start = time.time()
    client.start_server(METER)
    after_start = time.time()
    time.sleep(5)
    before_stop = time.time()
    client.stop_server(METER)
    after_stop = time.time()
    report = json.loads(
        host.run("docker", "exec", host.hub, "gpuhub-admin", "--json", "usage", "--since", "1h")
    )
    (row,) = [r for r in report["usage"] if r["user"] == METER]
    assert row["sessions"] == 1
    seconds = row["server_hours"] * 3600
    assert before_stop - after_start - 1 <= seconds <= after_stop - before_start + 1, seconds
    assert row["gpu_hours"] == 0
    chart = tmp_path / "usage.png"
    out = ok(
        host.playbook(
            "playbooks/usage.yml",
            "-e",
            "usage_since=1h",
            "-e",
            "usage_by=group",
            "-e",
            f"usage_chart={chart}",
        )
    )
    assert re.search(r"GROUP +SESSIONS +USERS +SERVER-H +GPU-H", out), out[-2000:]
    with Image.open(chart) as picture:  # a PNG of the chart's size
        assert (picture.format, picture.size[0]) == ("PNG", WIDTH)


def test_zz_idle_server_is_culled(
    host: TestHost, admin: HubClient, alice: HubClient, idler: Idler | None
) -> None:
    """Culled by the idle culler, and only after the scenario's timeout of inactivity
    (the culler logs how long the server was idle). The server started with the first
    module after the backup drills (the `idler` fixture) and has idled since; its user,
    looking at the home page meanwhile, saw the warning at least the scenario's
    jupyterhub_culler_warning before (less the watcher's 5 s between looks), and the
    culler logged it before the cull."""
    assert idler is not None
    timeout = host.scenario_var("jupyterhub_culler_timeout")
    every = host.scenario_var("jupyterhub_culler_every")
    warning = host.scenario_var("jupyterhub_culler_warning")
    deadline = idler.ready + timeout + 3 * every + 60
    while time.monotonic() < deadline:
        if admin.server_state("idler") is None:
            break
        time.sleep(5)
    assert admin.server_state("idler") is None, "the idle server was not culled"
    containers = host.run("docker", "ps", "--format", "{{.Names}}")
    assert "jupyter-idler" not in containers
    log = host.run("sh", "-c", f"docker logs {host.hub} 2>&1")
    culled = re.findall(r"Culling server idler \(inactive for ([0-9:]+)\)", log)
    assert culled, "the idle culler did not stop it"
    hours, minutes, seconds = (int(x) for x in culled[0].split(":"))
    assert hours * 3600 + minutes * 60 + seconds >= timeout, f"culled too early: {culled[0]}"
    # The warning: on the user's home page first, then the cull.
    for _ in range(12):  # the watcher sees the server gone within its 5 s
        if idler.gone_at is not None:
            break
        time.sleep(1)
    assert idler.warned_at is not None, "the idler's home page never showed a cull warning"
    assert idler.gone_at is not None
    assert idler.warning.startswith("Your server idler will be stopped at ")
    ahead = idler.gone_at - idler.warned_at
    assert ahead >= warning - 10, f"warned only {ahead:.0f} s before the cull"
    # JupyterLab's extension was told the same deadline at that moment, with a keep.
    assert idler.lab_answer is not None, "the idler's server gave JupyterLab no answer"
    assert idler.lab_answer["keepable"] is True
    at = re.search(r"stopped at ([0-9:]+ UTC)", idler.warning)
    assert at
    assert idler.lab_answer["warning"].startswith(f"This server will be stopped at {at[1]}")
    warned = log.find("Cull warning: server /user/idler/ will be culled at")
    assert 0 <= warned < log.find("Culling server idler "), "the culler logged no warning first"
    # The server started with it, whose kernel has been running one silent cell since, was
    # not culled: a busy kernel is activity.
    assert (admin.server_state(BUSY) or {}).get("ready"), "the busy server was culled"
    assert not re.findall(rf"Culling server {BUSY} ", log)
    # Its cull is not near (no warning); only those who may use a server learn of it
    answer = admin.api("GET", f"/hub/api/gpuhub/cull/{BUSY}/")
    assert answer.status_code == 200
    assert answer.json()["warning"] is None
    # (JupyterHub answers 404 where a scope is missing: it does not say whose servers exist.)
    assert alice.api("GET", f"/hub/api/gpuhub/cull/{BUSY}/").status_code == 404
    admin.stop_server(BUSY)
