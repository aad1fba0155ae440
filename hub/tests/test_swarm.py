"""Cluster mode's spawner (gpuhub_hub.swarm): configuration, the service it asks Swarm
for, placement messages and home placement. Swarm itself runs in the Molecule scenario
`cluster` (tests/e2e/test_cluster.py): this machine's own engine is not put in swarm mode."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gpuhub_hub import hardening
from gpuhub_hub.cluster import ClusterError, HomeRecords, node_down, node_usage, pick_node
from gpuhub_hub.gpus import Allocation, Gpu, GpuPolicy, NoGpuFree
from gpuhub_hub.homes import STARTER, WORK, main
from gpuhub_hub.settings import SettingsError
from gpuhub_hub.spawner import GpuhubSpawner
from gpuhub_hub.swarm import GpuhubSwarmSpawner, no_gpu_message, placement_problem
from hubsettings import SettingsFactory
from test_config import load_hub, make_user

GPU_PROFILE = {
    "slug": "gpu",
    "display_name": "One GPU",
    "image": "gpuhub/singleuser-cpu:a1",
    "gpu": {"mode": "exclusive", "count": 1},
}


def cluster(state: Path, **values: Any) -> dict[str, Any]:  # noqa: ANN401
    return {
        "registry": "10.0.0.1:5000",
        "hub_image": "gpuhub/hub:current",
        "home_nodes_dir": str(state / "home-nodes"),
        "homes_mode": "local",
        "servers_label": "gpuhub.servers",
        "gpu_model_label": "gpuhub.gpu.model",
        "placement_wait": 10,
        "hub_containers": ["jupyterhub", "jupyterhub-proxy"],
        "shared_sync_file": str(state / "shared-sync.json"),
        **values,
    }


def swarm_spawner(
    monkeypatch: pytest.MonkeyPatch,
    settings_file: SettingsFactory,
    tmp_path: Path,
    **spawner: object,
) -> GpuhubSwarmSpawner:
    gpus = [{"uuid": "GPU-a", "index": 0}, {"uuid": "GPU-b", "index": 1}]
    profiles = {"profiles": [{"slug": "cpu", "display_name": "CPU", "image": "x:1"}, GPU_PROFILE]}
    path = settings_file(
        cluster=cluster(tmp_path / "state"), spawner={"gpus": gpus, **profiles, **spawner}
    )
    app = load_hub(monkeypatch, path)
    assert app.spawner_class is GpuhubSwarmSpawner
    return GpuhubSwarmSpawner(user=make_user("alice", []), config=app.config)


def test_cluster_settings_choose_the_swarm_spawner(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory, tmp_path: Path
) -> None:
    spawner = swarm_spawner(monkeypatch, settings_file, tmp_path, pids_limit=300)
    spawner.user_options = {"profile": "gpu"}
    profile = spawner.apply_profile()
    # What a new home gets made with (the home's one-shot service), besides work/.
    assert spawner.inner_mount_points() == ("shared",)
    # The token comes as a Swarm secret, never as a bind mount of a hub-host file.
    assert all(b["bind"] != hardening.TOKEN_MOUNT for b in spawner.volumes.values())
    assert spawner.extra_container_spec["command"] == hardening.ENTRYPOINT
    assert spawner.extra_container_spec["user"] == "1000:100"
    assert spawner.extra_container_spec["cap_drop"] == ["ALL"]
    assert spawner.extra_endpoint_spec == {"mode": "dnsrr"}
    # Each user's servers are on that user's own network, not the shared one.
    shared = spawner.gpuhub_settings.spawner.network
    assert spawner.network_name == f"{shared}-alice" == spawner.user_network
    # Only keyword arguments create_service takes.
    assert set(spawner.extra_create_kwargs) == {"labels"}
    resources = spawner._resources()
    assert resources["Limits"]["Pids"] == 300
    assert resources["Limits"]["MemoryBytes"] == resources["Reservations"]["MemoryBytes"]
    # GPUs are the hub's ledger, never Swarm reservations (see swarm.py).
    assert "GenericResources" not in resources["Reservations"]
    spawner.home_node = "node2"
    assert spawner._constraints(profile) == [
        "node.labels.gpuhub.servers==true",
        "node.hostname==node2",
    ]
    l4 = replace(profile, gpu=replace(profile.gpu, model="NVIDIA L4"))
    assert "node.labels.gpuhub.gpu.model==NVIDIA L4" in spawner._constraints(l4)


def test_bad_cluster_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with pytest.raises(SettingsError, match=r"cluster\.registry: 'https://x' is not host"):
        load_hub(monkeypatch, settings_file(cluster=cluster(state, registry="https://x")))
    with pytest.raises(SettingsError, match=r"cluster\.homes_mode: 'afs' is not one of"):
        load_hub(monkeypatch, settings_file(cluster=cluster(state, homes_mode="afs")))
    with pytest.raises(SettingsError, match=r"cluster\.placement_wait: must be greater"):
        load_hub(monkeypatch, settings_file(cluster=cluster(state, placement_wait=0)))


def test_placement_messages_say_why_and_what_to_do() -> None:
    down = placement_problem("no suitable node (scheduling constraints not satisfied)", "CPU")
    assert down == (
        "No node can run this server now (no suitable node (scheduling constraints not "
        "satisfied)). Start the 'CPU' profile instead, or try again later."
    )


CLUSTER_GPUS = [
    Gpu("GPU-a", 0, node="gpu01"),
    Gpu("GPU-b", 1, node="gpu01"),
    Gpu("GPU-c", 0, node="gpu02"),
    Gpu("GPU-d", 1, node="gpu02"),
]


def test_no_gpu_messages_count_the_cluster_or_the_home_node() -> None:
    one = GpuPolicy(mode="exclusive", count=1)
    full = dict.fromkeys(["GPU-a", "GPU-b", "GPU-c", "GPU-d"], "someone")
    assert no_gpu_message(one, CLUSTER_GPUS, full, "gpu01", "CPU") == (
        "No GPUs free: 4 of 4 in the cluster are in use and this profile needs 1. "
        "Start the 'CPU' profile instead, or try again later."
    )
    home_full = dict.fromkeys(["GPU-a", "GPU-b"], "someone")
    assert no_gpu_message(one, CLUSTER_GPUS, home_full, "gpu01", "") == (
        "No GPUs free: 2 of 2 on node gpu01 (where your files are) are in use and this "
        "profile needs 1. 2 are free on other nodes: an admin can move your files there "
        "(gpuhub-admin user move)."
    )


def test_the_cluster_ledger_gives_each_server_gpus_of_its_node(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory, tmp_path: Path
) -> None:
    """The hub's ledger, not Swarm's reservations: devices of the home's node that no
    service's gpuhub.gpus label names; NVIDIA_VISIBLE_DEVICES says which."""
    gpus = [{"uuid": g.uuid, "index": g.index, "node": g.node} for g in CLUSTER_GPUS]
    spawner = swarm_spawner(monkeypatch, settings_file, tmp_path, gpus=gpus)
    # The hub's one allocator is made from these settings' GPUs (not another test's).
    monkeypatch.setattr(GpuhubSpawner, "_gpu_allocator", None)
    services = [{"Spec": {"Name": "jupyter-bob", "Labels": {"gpuhub.gpus": "GPU-c"}}}]

    async def docker(method: str, *args: object, **kwargs: object) -> object:
        assert (method, kwargs) == ("services", {"filters": {"label": "gpuhub.gpus"}})
        return services

    monkeypatch.setattr(spawner, "docker", docker)
    spawner.user_options = {"profile": "gpu"}
    spawner.apply_profile()
    assert spawner.environment["NVIDIA_VISIBLE_DEVICES"] == "void"  # no GPU yet
    spawner.home_node = "gpu02"

    def allocate(count: int) -> tuple[Allocation, str]:
        return asyncio.run(spawner._allocate(GpuPolicy(mode="exclusive", count=count)))

    allocation, node = allocate(1)
    assert (allocation.device_ids, node) == (("GPU-d",), "gpu02")
    spawner.apply_gpus(allocation)
    assert spawner.environment["NVIDIA_VISIBLE_DEVICES"] == "GPU-d"
    assert spawner.extra_container_spec["labels"]["gpuhub.gpus"] == "GPU-d"
    assert "GPU-d" in spawner.environment["GPUHUB_GPUS"]
    services.append({"Spec": {"Name": "jupyter-carol", "Labels": {"gpuhub.gpus": "GPU-d"}}})
    with pytest.raises(NoGpuFree, match=r"on node gpu02 \(where your files are\)"):
        allocate(1)
    spawner.home_node = ""  # homes on NFS: any node with enough free
    allocation, node = allocate(2)
    assert (allocation.device_ids, node) == (("GPU-a", "GPU-b"), "gpu01")


def test_new_homes_go_to_the_node_with_fewest() -> None:
    homes = {"a": "node1", "b": "node1", "c": "node2"}
    assert pick_node(["node1", "node2", "node3"], homes) == "node3"
    assert pick_node(["node1", "node2"], homes) == "node2"
    # Homes on a node that left do not count.
    assert pick_node(["node2", "node3"], {**homes, "d": "gone", "e": "node3"}) == "node2"
    with pytest.raises(ClusterError, match="No node runs user servers"):
        pick_node([], homes)


def test_the_home_command_makes_archives_and_purges_homes(tmp_path: Path) -> None:
    """What a node's one-shot services run (cluster homes `local`)."""
    uid, gid = os.getuid(), os.getgid()
    homes, archive = tmp_path / "home", tmp_path / "archive"
    homes.mkdir()
    assert main(["ensure", str(homes), "alice", str(uid), str(gid), "shared"]) == 0
    home = homes / "alice"
    assert (home / "shared").is_dir()
    starters = sorted(p.name for p in STARTER.glob("*.ipynb"))
    assert starters
    assert sorted(p.name for p in (home / WORK).glob("*.ipynb")) == starters
    assert main(["ensure", str(homes), "alice", str(uid), str(gid)]) == 0  # present: unchanged
    with pytest.raises(ValueError, match="cannot name a home"):
        main(["ensure", str(homes), "../x", str(uid), str(gid)])
    assert main([str(homes), "alice", str(uid), str(gid)]) == 2  # no action: the usage
    (home / WORK / "kept.txt").write_text("mine")
    assert main(["archive", str(homes), str(archive), "alice", "20261123T000000Z"]) == 0
    assert not home.exists()
    packed = archive / "alice" / "20261123T000000Z.tar.gz"
    with tarfile.open(packed) as tar:
        assert tar.extractfile("alice/work/kept.txt").read() == b"mine"  # type: ignore[union-attr]
    assert main(["purge", str(homes), str(archive), "alice"]) == 0
    assert not (archive / "alice").exists()


def test_a_user_whose_node_is_away_is_told_so() -> None:
    assert node_down("gpu02") == (
        "Your files are on node gpu02, which is down or drained now: your server can start "
        "once it is back. Ask an admin if it stays away."
    )


def _node(node_id: str, hostname: str, uuids: list[str], state: str = "ready") -> dict[str, Any]:
    """A node record as Docker's API returns it (docker node inspect)."""
    resources = [{"NamedResourceSpec": {"Kind": "NVIDIA-GPU", "Value": u}} for u in uuids]
    return {
        "ID": node_id,
        "Spec": {"Availability": "active", "Labels": {"gpuhub.servers": "true"}},
        "Description": {"Hostname": hostname, "Resources": {"GenericResources": resources}},
        "Status": {"State": state},
    }


def _task(node_id: str, user: str, state: str, gpus: str = "") -> dict[str, Any]:
    """A task record as Docker's API returns it (docker inspect <task>); `gpus`: the
    devices its server holds (the gpuhub.gpus label the spawner gives it)."""
    labels = {"gpuhub.user": user, **({"gpuhub.gpus": gpus} if gpus else {})}
    return {
        "NodeID": node_id,
        "Spec": {
            "ContainerSpec": {"Labels": labels},
            "Resources": {"Reservations": {"MemoryBytes": 536870912}},
        },
        "Status": {"State": state},
    }


def test_node_usage_counts_gpus_reserved_by_placed_tasks_only() -> None:
    nodes = [_node("n2", "gpu02", ["GPU-c"]), _node("n1", "gpu01", ["GPU-a", "GPU-b"])]
    tasks = [
        _task("n1", "alice", "running", gpus="GPU-a"),
        _task("n1", "bob", "starting", gpus="GPU-b"),
        _task("n2", "carol", "running"),
        _task("n2", "dave", "shutdown", gpus="GPU-c"),  # ended: holds nothing
        {**_task("", "erin", "pending", gpus="GPU-c"), "NodeID": ""},  # not placed
    ]
    usage = node_usage(nodes, tasks, "NVIDIA-GPU")
    assert [(n.hostname, n.gpus, n.gpus_reserved, n.users) for n in usage] == [
        ("gpu01", 2, 2, ("alice", "bob")),
        ("gpu02", 1, 0, ("carol",)),
    ]


def test_home_records_name_a_node_or_a_move(tmp_path: Path) -> None:
    records = HomeRecords(tmp_path)
    assert records.read("alice") == ""
    records.write("alice", "gpu01")
    records.write("bob", "moving gpu01 gpu02")
    assert records.read("alice") == "gpu01"
    assert records.all() == {"alice": "gpu01", "bob": "moving gpu01 gpu02"}
    with pytest.raises(ValueError, match="contains a slash"):
        records.read("../state")


@pytest.mark.parametrize("action", [["move", "alice", "--to", "gpu02"], ["where", "alice"]])
def test_home_nodes_are_refused_outside_cluster_mode(
    settings_file: SettingsFactory, capsys: pytest.CaptureFixture[str], action: list[str]
) -> None:
    from gpuhub_hub.admin.cli import BAD_INPUT
    from gpuhub_hub.admin.cli import main as admin

    code = admin(["--settings", str(settings_file()), "user", *action])
    assert code == BAD_INPUT
    assert "homes are kept on nodes in cluster mode with homes mode local only" in (
        capsys.readouterr().err
    )


def test_user_where_names_the_node_keeping_the_home(
    settings_file: SettingsFactory, tmp_path: Path
) -> None:
    from gpuhub_hub.admin.cli import main as admin

    path = settings_file(cluster=cluster(tmp_path / "state"))
    (tmp_path / "state" / "home-nodes").mkdir(parents=True)
    HomeRecords(tmp_path / "state" / "home-nodes").write("alice", "gpu02")
    out = io.StringIO()
    assert admin(["--settings", str(path), "--json", "user", "where", "alice"], out=out) == 0
    assert json.loads(out.getvalue()) == {"user": "alice", "home_node": "gpu02"}
    out = io.StringIO()
    assert admin(["--settings", str(path), "user", "where", "bob"], out=out) == 0
    assert out.getvalue() == "bob's home: no node yet (it is made at their first start)\n"


def test_nfs_homes_are_volumes_any_node_mounts(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory, tmp_path: Path
) -> None:
    nfs = cluster(
        tmp_path / "state", homes_mode="nfs", nfs_server="10.0.0.1", nfs_export="/srv/homes"
    )
    app = load_hub(monkeypatch, settings_file(cluster=nfs))
    spawner = GpuhubSwarmSpawner(user=make_user("alice", []), config=app.config)
    spawner.apply_profile()
    (home,) = (m for m in spawner.mounts if m["Target"] == "/home/jovyan")
    assert home["Type"] == "volume"
    assert home["Source"].startswith("gpuhub-home-alice-")
    assert home["VolumeOptions"]["DriverConfig"] == {
        "Name": "local",
        "Options": {
            "type": "nfs",
            "o": "addr=10.0.0.1,nfsvers=4.2,hard",
            "device": ":/srv/homes/alice",
        },
    }
    shared = next(m for m in spawner.mounts if m["Target"] == "/home/jovyan/shared")
    assert shared["Type"] == "bind"
    assert shared["ReadOnly"] is True
    # No node pin: any node can run the server.
    assert spawner._constraints(spawner.apply_profile()) == ["node.labels.gpuhub.servers==true"]
    # With the shared folder's export named, servers mount it too, read-only.
    app = load_hub(monkeypatch, settings_file(cluster={**nfs, "nfs_shared_export": "/srv/shared"}))
    spawner = GpuhubSwarmSpawner(user=make_user("alice", []), config=app.config)
    spawner.apply_profile()
    shared = next(m for m in spawner.mounts if m["Target"] == "/home/jovyan/shared")
    assert (shared["Type"], shared["ReadOnly"]) == ("volume", True)
    assert shared["VolumeOptions"]["DriverConfig"]["Options"]["device"] == ":/srv/shared"
    with pytest.raises(SettingsError, match="homes mode nfs needs the NFS server"):
        load_hub(monkeypatch, settings_file(cluster=cluster(tmp_path / "s", homes_mode="nfs")))
