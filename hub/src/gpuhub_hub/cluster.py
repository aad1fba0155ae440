"""Cluster mode's shared pieces, used by the hub's spawner (swarm.py), gpuhub-admin
(`user move`, `shared sync`) and status.yml (through the gpuhub role's filter): home
records, one-shot services on a node, the registry's digest of an image, each node's GPU
use, and the nodes' copies of the shared folder.

Homes (mode `local`): `<home_nodes_dir>/<user>` names the node that keeps the user's home,
or, while `gpuhub-admin user move` runs, `moving <from> <to>` (the hub starts no server of
that user meanwhile).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.types import (
    ContainerSpec,
    EndpointSpec,
    Mount,
    Placement,
    RestartPolicy,
    TaskTemplate,
)

from .gpus import LABEL as GPUS_LABEL
from .gpus import USER_LABEL
from .names import check_username
from .polling import next_step
from .transfer import manifest

# Task states that hold their node's resources (scheduled, not yet ended).
PLACED = {"assigned", "accepted", "preparing", "starting", "ready", "running"}
ENDED = {"complete", "failed", "rejected", "shutdown", "orphaned", "remove"}
ONE_SHOT_LABEL = "gpuhub.one-shot"  # one-shot services: what they are for
SECRET_LABEL = "gpuhub.token-of"  # noqa: S105 (a label: the service a token secret is for)
MOVING = "moving"


class ClusterError(RuntimeError):
    """A spawn that cannot be placed; the message is meant for the user."""


def node_down(node: str) -> str:
    """What a user whose home's node is away is told."""
    return (
        f"Your files are on node {node}, which is down or drained now: your server can "
        "start once it is back. Ask an admin if it stays away."
    )


def pick_node(nodes: list[str], homes: dict[str, str]) -> str:
    """The node with the fewest homes (ties: by name)."""
    if not nodes:
        raise ClusterError("No node runs user servers: ask an admin to check the cluster.")
    load = {node: 0 for node in nodes}
    for node in homes.values():
        if node in load:
            load[node] += 1
    return min(sorted(load), key=lambda node: load[node])


@dataclass(frozen=True)
class NodeUsage:
    """One swarm node as status.yml shows it and the GPU message counts it."""

    hostname: str
    state: str  # ready, down...
    availability: str  # active, pause, drain
    gpus: int  # advertised units of the GPU resource kind
    gpus_reserved: int  # held by its placed tasks (their gpuhub.gpus labels)
    users: tuple[str, ...]  # whose servers' tasks are placed there


def _units(resources: list[dict[str, Any]] | None, kind: str) -> int:
    count = 0
    for res in resources or []:
        if res.get("NamedResourceSpec", {}).get("Kind") == kind:
            count += 1
        if res.get("DiscreteResourceSpec", {}).get("Kind") == kind:
            count += int(res["DiscreteResourceSpec"].get("Value", 0))
    return count


def node_usage(
    nodes: list[dict[str, Any]], tasks: list[dict[str, Any]], kind: str
) -> list[NodeUsage]:
    """Each node's GPUs (advertised units of `kind`) and those its placed tasks hold
    (Docker's node and task records)."""
    placed: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        if task.get("NodeID") and task["Status"]["State"] in PLACED:
            placed.setdefault(task["NodeID"], []).append(task)
    usage = []
    for node in nodes:
        mine = placed.get(node["ID"], [])
        labels = [t["Spec"].get("ContainerSpec", {}).get("Labels") or {} for t in mine]
        usage.append(
            NodeUsage(
                hostname=node["Description"]["Hostname"],
                state=node["Status"]["State"],
                availability=node["Spec"].get("Availability", ""),
                gpus=_units(node["Description"].get("Resources", {}).get("GenericResources"), kind),
                gpus_reserved=sum(
                    len([d for d in lb.get(GPUS_LABEL, "").split(",") if d]) for lb in labels
                ),
                users=tuple(sorted({lb[USER_LABEL] for lb in labels if USER_LABEL in lb})),
            )
        )
    return sorted(usage, key=lambda n: n.hostname)


# --- home records --------------------------------------------------------------------


@dataclass(frozen=True)
class HomeRecords:
    """The folder of home records (cluster.home_nodes_dir)."""

    folder: Path

    def _path(self, user: str) -> Path:
        return self.folder / check_username(user)

    def read(self, user: str) -> str:
        """The node with the user's home ('' none yet; `moving ...` during a move)."""
        path = self._path(user)
        return path.read_text().strip() if path.exists() else ""

    def write(self, user: str, value: str) -> None:
        partial = self._path(user).with_suffix(".partial")
        partial.write_text(value + "\n")
        partial.rename(self._path(user))

    def forget(self, user: str) -> None:
        self._path(user).unlink(missing_ok=True)

    def all(self) -> dict[str, str]:
        return {
            p.name: p.read_text().strip()
            for p in self.folder.iterdir()
            if p.is_file() and not p.name.endswith(".partial")
        }


def moving_message(record: str) -> str:
    return (
        "Your files are being moved to another node ("
        + record.removeprefix(MOVING).strip()
        + "): try again in a few minutes."
    )


# --- Swarm helpers (the docker SDK's low-level client) -------------------------------


def server_nodes(client: docker.APIClient, servers_label: str) -> list[str]:
    """Hostnames of ready, active nodes labelled to run user servers."""
    nodes = client.nodes(filters={"node.label": f"{servers_label}=true"})
    return sorted(
        n["Description"]["Hostname"]
        for n in nodes
        if n["Status"]["State"] == "ready" and n["Spec"].get("Availability") == "active"
    )


def registry_image(client: docker.APIClient, registry: str, image: str) -> str:
    """`image` (a local tag on the hub host) as the registry's digest reference."""
    for digest in client.inspect_image(image).get("RepoDigests") or []:
        if digest.startswith(registry + "/"):
            return digest
    raise ClusterError(
        f"Image {image} is not in the cluster's registry {registry}: ask an admin to re-run "
        "site.yml."
    )


def remove_service(client: docker.APIClient, name: str) -> None:
    for service in client.services(filters={"name": name}):
        if service["Spec"]["Name"] == name:
            client.remove_service(service["ID"])


def one_shot(
    client: docker.APIClient,
    name: str,
    spec: ContainerSpec,
    node: str,
    purpose: str,
    networks: list[str] | None = None,
    timeout: float = 600,
    wait: bool = True,
) -> str:
    """Run `spec` once on `node` as service `name`; with `wait`, until its task ended
    (ClusterError unless it completed) and then remove it (else `finish` does that).
    Returns the service's ID."""
    remove_service(client, name)
    task = TaskTemplate(
        container_spec=spec,
        restart_policy=RestartPolicy(condition="none"),
        placement=Placement(constraints=[f"node.hostname=={node}"]),
        networks=networks,
    )
    # DNS round robin: the name resolves to the task itself (no virtual IP, no IPVS).
    service = client.create_service(
        task,
        name=name,
        labels={ONE_SHOT_LABEL: purpose},
        endpoint_spec=EndpointSpec(mode="dnsrr"),
    )["ID"]
    if wait:
        finish(client, name, service, f"{purpose} on node {node}", timeout)
    return service


def finish(
    client: docker.APIClient, name: str, service: str, purpose: str, timeout: float = 600
) -> None:
    """Wait until one-shot `service` (named `name`) ended, remove it, and raise
    ClusterError unless it completed."""
    try:
        state, error = wait_task(client, service, ENDED, timeout)
    finally:
        remove_service(client, name)
    if state != "complete":
        raise ClusterError(f"{purpose}: {error or state}")


def root_spec(
    image: str, command: list[str], mounts: list[Mount], caps: list[str]
) -> ContainerSpec:
    """A one-shot's container: `python3 -m <command>` of the hub image (`image`, by the
    registry's digest) as root with only the capabilities `caps`."""
    return ContainerSpec(
        image=image,
        command=["python3", "-m", *command],
        user="0:0",
        mounts=mounts,
        cap_drop=["ALL"],
        cap_add=caps,
    )


def bind(source: str, target: str = "", read_only: bool = False) -> Mount:
    return Mount(target=target or source, source=source, type="bind", read_only=read_only)


class Unplaced(ClusterError):
    """Swarm found no node for the task within the wait; the message is Swarm's reason."""


def wait_task(
    client: docker.APIClient,
    service: str,
    done: set[str],
    timeout: float,
    placement_wait: float = 0,
) -> tuple[str, str]:
    """Poll the newest task of service ID `service` (by ID: a removed service of the same
    name may still be going away) until its state is in `done` or has ended; with
    `placement_wait`, Unplaced once it has been pending longer than that. Polled as
    often as polling.py says: a server's start waits on this, and each moment a task
    runs unseen is a moment added to the spawn."""
    start = time.monotonic()
    state, error = "new", ""
    while True:
        tasks = client.tasks(filters={"service": service})
        tasks = [t for t in tasks if t.get("ServiceID") == service]
        if tasks:
            newest = max(tasks, key=lambda t: t.get("CreatedAt", ""))
            state, error = newest["Status"]["State"], newest["Status"].get("Err", "")
            if state in done or state in ENDED:
                return state, error
        waited = time.monotonic() - start
        if placement_wait and state == "pending" and waited > placement_wait:
            raise Unplaced(error)
        if waited > timeout:
            return state, error or f"not done after {timeout:.0f} s"
        time.sleep(next_step(waited))


def wait_gone(client: docker.APIClient, service: str, timeout: float) -> bool:
    """Wait until a removed service (by ID) has no task left; False after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Every task, filtered here: Docker refuses a filter naming a removed service.
        if not [t for t in client.tasks() if t.get("ServiceID") == service]:
            return True
        time.sleep(0.5)
    return False


# --- each user's own network ----------------------------------------------------------

NETWORK_LABEL = "gpuhub.network-of"  # a user's own overlay network: whose it is


def user_network(
    client: docker.APIClient,
    name: str,
    user: str,
    template: str,
    members: tuple[str, ...],
    create: bool = True,
) -> bool:
    """Connect `members` (the hub host's hub and proxy containers) to `user`'s own
    overlay network `name`, made first (when `create`) like `template`, the shared users
    network: attachable, and encrypted when that one is. A user's servers join only this
    network, so they reach the hub and are reached by the proxy, never another user's
    server. False when there is no such network (and `create` is false)."""
    for _ in range(20):
        try:
            return _join_network(client, name, user, template, members, create)
        except docker.errors.APIError as err:
            if "not found" not in str(err).lower():
                raise
            time.sleep(0.5)  # the engine still knew a network that was being removed
    raise ClusterError(f"The network {name} could not be made now: try again in a minute.")


def _join_network(
    client: docker.APIClient,
    name: str,
    user: str,
    template: str,
    members: tuple[str, ...],
    create: bool,
) -> bool:
    try:
        network = client.inspect_network(name)
    except docker.errors.NotFound:
        if not create:
            return False
        options = client.inspect_network(template).get("Options") or {}
        client.create_network(
            name,
            driver="overlay",
            options={k: v for k, v in options.items() if k == "encrypted"} or None,
            attachable=True,
            labels={NETWORK_LABEL: user},
            check_duplicate=True,
        )
        network = client.inspect_network(name)
    attached = _attached(network)
    for member in members:
        if member not in attached:
            client.connect_container_to_network(member, network["Id"])
    return True


def _attached(network: dict[str, Any]) -> set[str]:
    """Names of this host's containers on `network` (its inspect record)."""
    return {c.get("Name", "") for c in (network.get("Containers") or {}).values()}


def drop_user_network(
    client: docker.APIClient, name: str, user: str, members: tuple[str, ...]
) -> bool:
    """Remove `user`'s own network once no service of theirs is left."""
    if client.services(filters={"label": f"{USER_LABEL}={user}"}):
        return False
    try:
        network = client.inspect_network(name)
    except docker.errors.NotFound:
        return False
    for member in set(members) & _attached(network):
        client.disconnect_container_from_network(member, network["Id"], force=True)
    _remove_network(client, name)
    return True


# --- moving a home --------------------------------------------------------------------

TRANSFER_PORT = 8765


def move_home(
    client: docker.APIClient,
    records: HomeRecords,
    home_root: str,
    image: str,
    servers_label: str,
    user: str,
    to: str,
) -> dict[str, str]:
    """Move a stopped user's home to node `to`: copy, verify, switch the record, and only
    then delete the old copy (gpuhub_hub.transfer, run from `image`: the hub image by its
    registry digest). The caller checks that no server of the user runs."""
    source = records.read(user)
    if not source:
        raise ClusterError(f"{user} has no home on any node yet (it is made at their first start)")
    if source.startswith(MOVING):
        raise ClusterError(f"{user}'s home is being moved already ({source})")
    if source == to:
        return {"user": user, "node": to, "moved": ""}
    up = server_nodes(client, servers_label)
    for node in (source, to):
        if node not in up:
            raise ClusterError(
                f"node {node} is not a ready node for user servers ({', '.join(up)})"
            )
    records.write(user, f"{MOVING} {source} {to}")
    network = f"gpuhub-move-{user}"
    sender = f"gpuhub-move-{user}-from"
    try:
        client.create_network(network, driver="overlay", labels={ONE_SHOT_LABEL: "move"})
        send = root_spec(
            image,
            ["gpuhub_hub.transfer", "send", "/home-src", str(TRANSFER_PORT)],
            [bind(f"{home_root}/{user}", "/home-src", read_only=True)],
            ["CAP_DAC_READ_SEARCH"],
        )
        one_shot(client, sender, send, source, "move: send", [network], wait=False)
        receive = root_spec(
            image,
            ["gpuhub_hub.transfer", "receive", f"http://{sender}:{TRANSFER_PORT}", "/homes", user],
            [bind(home_root, "/homes")],
            ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID"],
        )
        one_shot(client, f"gpuhub-move-{user}-to", receive, to, "move: receive", [network])
    except BaseException:
        records.write(user, source)
        raise
    finally:
        remove_service(client, sender)
        _remove_network(client, network)
    records.write(user, to)
    remove = root_spec(
        image,
        ["gpuhub_hub.transfer", "remove", "/homes", user],
        [bind(home_root, "/homes")],
        ["CAP_DAC_OVERRIDE", "CAP_FOWNER"],
    )
    one_shot(client, f"gpuhub-move-{user}-clean", remove, source, "move: remove the old copy")
    return {"user": user, "node": to, "moved": source}


# --- removing a user's home ---------------------------------------------------------------


def home_node_up(
    client: docker.APIClient, records: HomeRecords, servers_label: str, user: str
) -> str:
    """The node keeping `user`'s home ('' when none), which must be up to change it."""
    node = records.read(user)
    if node.startswith(MOVING):
        raise ClusterError(moving_message(node))
    if node and node not in server_nodes(client, servers_label):
        raise ClusterError(f"{user}'s home is on node {node}, which is down or drained now")
    return node


def retire_home(
    client: docker.APIClient,
    records: HomeRecords,
    roots: tuple[str, str],
    image: str,
    node: str,
    user: str,
    stamp: str = "",
) -> None:
    """On `node`, archive `user`'s home into `<archive root>/<user>/<stamp>.tar.gz`, or
    with no stamp delete it and its archives (homes.main), then forget its record."""
    home_root, archive_root = roots
    action = (
        ["archive", "/homes", "/archive", user, stamp]
        if stamp
        else ["purge", "/homes", "/archive", user]
    )
    spec = root_spec(
        image,
        ["gpuhub_hub.homes", *action],
        [bind(home_root, "/homes"), bind(archive_root, "/archive")],
        ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER"],
    )
    one_shot(client, f"gpuhub-home-{action[0]}-{user}", spec, node, f"{action[0]} {user}'s home")
    records.forget(user)


def _remove_network(client: docker.APIClient, name: str) -> None:
    for _ in range(20):
        try:
            client.remove_network(name)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            time.sleep(1)  # its tasks are still going away


# --- the shared folder on the nodes --------------------------------------------------

SHARED_PORT = 8766


def sync_shared(
    client: docker.APIClient,
    image: str,
    shared_dir: str,
    records: Path,
    servers_label: str,
    dry_run: bool = False,
) -> dict[str, str]:
    """Make each ready server node's copy of the shared folder (`shared_dir`, the same
    path on every host) a verified copy of the hub host's: 'updated', 'unchanged' or
    'would update' per node. A node whose copy was made from the same content (by the
    folder's quick manifest, kept in `records`) is left alone; a node that is down is
    synced at the next run."""
    current = manifest(shared_dir, contents=False)
    synced: dict[str, str] = json.loads(records.read_text()) if records.exists() else {}
    nodes = server_nodes(client, servers_label)
    result = {n: "unchanged" if synced.get(n) == current else "would update" for n in nodes}
    stale = [n for n, state in result.items() if state != "unchanged"]
    if dry_run or not stale:
        return result
    hub_node = client.inspect_node(client.info()["Swarm"]["NodeID"])["Description"]["Hostname"]
    root, name = os.path.split(shared_dir.rstrip("/"))
    network, sender = "gpuhub-shared-sync", "gpuhub-shared-from"
    try:
        client.create_network(network, driver="overlay", labels={ONE_SHOT_LABEL: "shared"})
        send = root_spec(
            image,
            ["gpuhub_hub.transfer", "send", "/shared-src", str(SHARED_PORT)],
            [bind(shared_dir, "/shared-src", read_only=True)],
            ["CAP_DAC_READ_SEARCH"],
        )
        one_shot(client, sender, send, hub_node, "shared: send", [network], wait=False)
        url = f"http://{sender}:{SHARED_PORT}"
        receive = root_spec(
            image,
            ["gpuhub_hub.transfer", "replace", url, "/shared-root", name],
            [bind(root, "/shared-root")],
            ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID"],
        )
        # Every stale node at once (the sender serves them in parallel).
        started = {
            node: one_shot(
                client, f"gpuhub-shared-to-{node}", receive, node, "shared", [network], wait=False
            )
            for node in stale
        }
        for node, service in started.items():
            finish(client, f"gpuhub-shared-to-{node}", service, f"shared: receive on node {node}")
            synced[node] = current
            partial = records.with_suffix(".partial")
            partial.write_text(json.dumps(synced, indent=1, sort_keys=True) + "\n")
            partial.rename(records)
            result[node] = "updated"
    finally:
        for service in [sender, *(f"gpuhub-shared-to-{node}" for node in stale)]:
            remove_service(client, service)
        _remove_network(client, network)
    return result
