"""Cluster mode: GpuhubSpawner's rules on Docker Swarm (DockerSpawner's SwarmSpawner).

Each server is a Swarm service on a node labelled to run user servers:

- Its image is the profile's, run by the digest the hub host's registry gave it, so every
  node runs the same bytes.
- Its memory limit is a Swarm reservation too, so Swarm never puts more memory on a node
  than it has. A server Swarm cannot place within `cluster.placement_wait` is removed and
  its user told why, never left to hang until the start timeout.
- GPUs: the hub's own allocator (gpus.py, one ledger as on one host) hands out devices
  of the node the server is pinned to (its home's node; with NFS homes the first node
  with enough free), read from the `gpuhub.gpus` labels of the servers' services; the
  service gets NVIDIA_VISIBLE_DEVICES (the nodes' default runtime is NVIDIA's). Not
  Swarm's generic-resource reservations: SwarmKit's constraint enforcer rejects a running
  task holding a named generic resource whenever its node is updated (a new network
  attachment is enough), which would kill users' GPU servers (docker/cli#1805).
- Its API token is a Swarm secret (mode 0400, owned by the user's uid), mounted where
  hardening.ENTRYPOINT reads it; the secret goes with the service.
- Confinement: every capability dropped, the pids limit, the users' uid:gid; the engine's
  own `no-new-privileges` (daemon.json) covers services too.
- Networks: each user's servers join that user's own attachable overlay network, shared
  with the hub and proxy containers only (made at the user's first start, removed when
  the user is deleted), so one user's server never reaches another's. A poll reconnects
  the hub and proxy after either was recreated.
- Homes (mode `local`): a user's home lives on one node. The first server of a user
  picks the node with the fewest homes, makes the home there with the hub image's own
  code (homes.ensure_home, as a one-shot service) and records the node; every later
  server of that user is pinned to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any, ClassVar

from docker.types import (
    DriverConfig,
    Mount,
    Placement,
    Resources,
    RestartPolicy,
    SecretReference,
)
from dockerspawner import SwarmSpawner
from tornado import web

from . import cluster as c
from . import hardening
from .cluster import SECRET_LABEL, ClusterError, node_down, pick_node
from .gpus import LABEL as GPUS_LABEL
from .gpus import (
    Allocation,
    Gpu,
    GpuPolicy,
    NoGpuFree,
    choose,
    held_devices,
    holdings,
    needed_devices,
)
from .gpus import pool as gpu_pool
from .gpus import shortage as gpu_shortage
from .quotas import Charge, QuotaExceeded
from .settings import Cluster, Profile
from .spawner import GpuhubSpawner


def placement_problem(error: str, fallback: str) -> str:
    """What a user is told when Swarm could not place their server (its task's Err)."""
    instead = f" Start the '{fallback}' profile instead, or try again later." if fallback else ""
    return f"No node can run this server now ({error or 'no suitable node'}).{instead}"


def no_gpu_message(
    policy: GpuPolicy, gpus: list[Gpu], held: dict[str, str], home: str, fallback: str
) -> str:
    """Why no node could give a server its GPUs: the cluster's count, or, when only the
    node with the user's files is full, that node's and how to use the others."""
    total, free = gpu_pool(policy, gpus, held)
    if home and len(free) >= needed_devices(policy):
        there, there_free = gpu_pool(policy, [g for g in gpus if g.node == home], held)
        more = (
            f" {len(free) - len(there_free)} are free on other nodes: an admin can move "
            "your files there (gpuhub-admin user move)."
        )
        where = f" on node {home} (where your files are)"
        return gpu_shortage(policy, there, len(there_free), fallback, where, more)
    return gpu_shortage(policy, total, len(free), fallback, " in the cluster")


class GpuhubSwarmSpawner(GpuhubSpawner, SwarmSpawner):
    """GpuhubSpawner's profiles, limits, homes and confinement as Swarm services."""

    # New homes are placed one at a time, so concurrent first spawns see each other's.
    _homes_lock: asyncio.Lock | None = None
    # A user's network is made, used and removed by one of their spawners at a time.
    _network_locks: ClassVar[dict[str, asyncio.Lock]] = {}

    @property
    def cluster(self) -> Cluster:
        cluster = self.gpuhub_settings.cluster
        if cluster is None:
            raise RuntimeError("GpuhubSwarmSpawner needs the settings' cluster section")
        return cluster

    # --- homes -------------------------------------------------------------------------

    @property
    def home_records(self) -> c.HomeRecords:
        return c.HomeRecords(Path(self.cluster.home_nodes_dir))

    @property
    def mounts(self) -> list[Mount]:
        """SwarmSpawner's bind mounts; in homes mode nfs the home (and the shared folder
        when nfs_shared_export names its export) is an NFS volume each node mounts itself
        (Docker's local volume driver)."""
        mounts = super().mounts
        if self.cluster.homes_mode != "nfs":
            return mounts
        spawner = self.gpuhub_settings.spawner
        nfs = {spawner.notebook_dir: self.nfs_home()}
        if self.cluster.nfs_shared_export and spawner.shared_dir:
            nfs[spawner.shared_mount] = self.nfs_volume(
                "gpuhub-shared", self.cluster.nfs_shared_export, spawner.shared_mount, True
            )
        return [nfs.get(m["Target"], m) for m in mounts]

    def nfs_home(self) -> Mount:
        cluster = self.cluster
        return self.nfs_volume(
            f"gpuhub-home-{self.user.name}",
            f"{cluster.nfs_export}/{self.user.name}",
            self.gpuhub_settings.spawner.notebook_dir,
        )

    def nfs_volume(self, name: str, export: str, target: str, read_only: bool = False) -> Mount:
        cluster = self.cluster
        options = {
            "type": "nfs",
            "o": f"addr={cluster.nfs_server},{cluster.nfs_options}",
            "device": f":{export}",
        }
        # Named by its options too: a node keeps a volume's options once it made it.
        tag = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
        return Mount(
            target=target,
            source=f"{name}-{tag}",
            type="volume",
            read_only=read_only,
            driver_config=DriverConfig("local", options),
        )

    async def prepare_home(self) -> None:
        """Homes mode local: pin the user's servers to the node with their home, made
        there first. Mode nfs: the home is made here, in the exported folder (the hub
        host's home root is that folder), and any node can run the server."""
        if self.cluster.homes_mode == "nfs":
            await GpuhubSpawner.prepare_home(self)
            return
        if GpuhubSwarmSpawner._homes_lock is None:
            GpuhubSwarmSpawner._homes_lock = asyncio.Lock()
        async with GpuhubSwarmSpawner._homes_lock:
            records = self.home_records
            node = await asyncio.to_thread(records.read, self.user.name)
            up = await asyncio.to_thread(c.server_nodes, self.client, self.cluster.servers_label)
            if node.startswith(c.MOVING):
                raise web.HTTPError(503, c.moving_message(node))
            if not node:
                homes = await asyncio.to_thread(records.all)
                try:
                    node = pick_node(up, homes)
                    await self._make_home(node)
                except ClusterError as err:
                    raise web.HTTPError(503, str(err)) from None
                await asyncio.to_thread(records.write, self.user.name, node)
                self.log.info("%s: home made on node %s", self.user.name, node)
            elif node not in up:
                raise web.HTTPError(503, node_down(node))
        self.home_node = node

    async def _make_home(self, node: str) -> None:
        """Run homes.ensure_home on `node` as a one-shot service of the hub image."""
        spawner = self.gpuhub_settings.spawner
        root = spawner.home_root
        command = ["gpuhub_hub.homes", "ensure", root, self.user.name]
        command += [str(spawner.user_uid), str(spawner.user_gid), *self.inner_mount_points()]
        spec = c.root_spec(
            await self._registry_image(self.cluster.hub_image),
            command,
            [c.bind(root)],
            ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER"],
        )
        name = f"{self.service_name}-home"
        await asyncio.to_thread(
            c.one_shot, self.client, name, spec, node, "make the home", None, 120
        )

    # --- the user's own network ---------------------------------------------------------

    @property
    def user_network(self) -> str:
        return f"{self.gpuhub_settings.spawner.network}-{self.escaped_name}"

    def _network_lock(self) -> asyncio.Lock:
        return GpuhubSwarmSpawner._network_locks.setdefault(self.user.name, asyncio.Lock())

    async def _join_network(self, create: bool) -> bool:
        return await asyncio.to_thread(
            c.user_network,
            self.client,
            self.user_network,
            self.user.name,
            self.gpuhub_settings.spawner.network,
            self.cluster.hub_containers,
            create,
        )

    async def create_object(self) -> Any:  # noqa: ANN401
        """The service, on its user's own network (made now if missing); a GPU profile's
        devices are taken from the ledger until the service exists with its label."""
        async with self._network_lock():
            await self._join_network(create=True)
            policy = self._gpu_policy
            if policy is None or policy.mode == "none":
                return await super().create_object()
            async with self.gpu_allocator.lock:
                allocation, node = await self._allocate(policy)
                self.apply_gpus(allocation)
                self.log.info(
                    "%s gets GPUs %s on %s", self.user.name, ",".join(allocation.device_ids), node
                )
                # The devices' node (in homes mode local, the home's, already pinned).
                constraints = self.extra_task_spec["placement"].get("Constraints") or []
                pinned = {*constraints, f"node.hostname=={node}"}
                self.extra_task_spec["placement"] = Placement(constraints=sorted(pinned))
                return await super().create_object()

    async def _drop_network(self) -> None:
        async with self._network_lock():
            await asyncio.to_thread(
                c.drop_user_network,
                self.client,
                self.user_network,
                self.user.name,
                self.cluster.hub_containers,
            )

    async def poll(self) -> Any:  # noqa: ANN401
        status = await super().poll()
        if status is None:
            await self._join_network(create=False)
        return status

    # --- GPUs ----------------------------------------------------------------------------

    _gpu_policy: GpuPolicy | None = None
    _gpu_charge: Charge | None = None

    async def _gpu_services(self) -> list[dict[str, Any]]:
        """The servers' services holding GPUs, as the ledger (held_devices) reads them."""
        services = await self.docker("services", filters={"label": GPUS_LABEL})
        return [
            {
                "Labels": s["Spec"].get("Labels") or {},
                "State": "running",
                "Names": [s["Spec"]["Name"]],
            }
            for s in services
        ]

    async def _allocate(self, policy: GpuPolicy) -> tuple[Allocation, str]:
        """Inside the allocator's lock: the devices and their node. Homes mode local: the
        node of the user's home; nfs: the first node with enough free."""
        gpus = list(self.gpu_allocator.gpus)
        services = await self._gpu_services()
        if self._gpu_charge is not None and policy.mode in ("exclusive", "mig"):
            self._gpu_charge.check(needed_devices(policy), holdings(services))
        held = held_devices(services)
        home = getattr(self, "home_node", "")
        fallback = self.cpu_fallback()
        for node in [home] if home else sorted({g.node for g in gpus}):
            try:
                return choose(policy, [g for g in gpus if g.node == node], held, fallback), node
            except NoGpuFree:
                continue
        raise NoGpuFree(no_gpu_message(policy, gpus, held, home, fallback))

    def apply_gpus(self, allocation: Allocation) -> None:
        """Labels and GPUHUB_GPUS as on one host; the devices through NVIDIA_VISIBLE_DEVICES
        (services take no device requests): "void" hides every GPU, whatever the image says."""
        super().apply_gpus(allocation)
        self.extra_host_config = {}
        self.environment["NVIDIA_VISIBLE_DEVICES"] = ",".join(allocation.device_ids) or "void"

    # --- images, token, spec ------------------------------------------------------------

    async def _registry_image(self, image: str) -> str:
        return await asyncio.to_thread(c.registry_image, self.client, self.cluster.registry, image)

    async def provide_token(self) -> None:
        """The API token as a Swarm secret of this server's service (replaced each start)."""
        await self._remove_secrets()
        name = f"{self.service_name}-token-{int(time.time())}"
        secret = await self.docker(
            "create_secret",
            name=name,
            data=self.api_token.encode(),
            labels={SECRET_LABEL: self.service_name},
        )
        self.token_secret = (secret["ID"], name)

    async def _remove_secrets(self) -> None:
        for secret in await self.docker(
            "secrets", filters={"label": f"{SECRET_LABEL}={self.service_name}"}
        ):
            await self.docker("remove_secret", secret["ID"])

    def apply_profile(self) -> Profile:
        profile = super().apply_profile()
        spawner = self.gpuhub_settings.spawner
        # The token comes as a secret, not a file of the hub host.
        self.volumes = {
            source: bind
            for source, bind in self.volumes.items()
            if bind["bind"] != hardening.TOKEN_MOUNT
        }
        labels = self.server_labels(profile)
        # Services take only their own keyword arguments (no user/entrypoint/host config).
        self.extra_create_kwargs = {"labels": labels}
        self.extra_host_config = {}
        self.mem_guarantee = self.mem_limit
        self.extra_endpoint_spec = {"mode": "dnsrr"}
        self.network_name = self.user_network
        self.extra_container_spec = {
            "command": hardening.ENTRYPOINT,
            "user": f"{spawner.user_uid}:{spawner.user_gid}",
            "cap_drop": ["ALL"],
            "labels": labels,
        }
        return profile

    def _resources(self) -> Resources:
        cpu = int(self.cpu_limit * 1e9) if self.cpu_limit else None
        # Memory is reserved as well as limited, so Swarm never puts more on a node than
        # it has; CPU time is shared (limited, not reserved), as on one host.
        resources = Resources(
            cpu_limit=cpu, mem_limit=self.mem_limit, mem_reservation=self.mem_limit
        )
        resources.setdefault("Limits", {})["Pids"] = self.gpuhub_settings.spawner.pids_limit
        return resources

    def _constraints(self, profile: Profile) -> list[str]:
        constraints = [f"node.labels.{self.cluster.servers_label}==true"]
        if profile.gpu.model:
            constraints.append(f"node.labels.{self.cluster.gpu_model_label}=={profile.gpu.model}")
        node = getattr(self, "home_node", "")
        if node:
            constraints.append(f"node.hostname=={node}")
        return constraints

    async def start_profile(self, profile: Profile) -> Any:  # noqa: ANN401
        spawner = self.gpuhub_settings.spawner
        self.image = await self._registry_image(profile.image)
        self.extra_container_spec["secrets"] = [
            SecretReference(
                *self.token_secret,
                filename=Path(hardening.TOKEN_MOUNT).name,
                uid=str(spawner.user_uid),
                gid=str(spawner.user_gid),
                mode=0o400,
            )
        ]
        self.extra_task_spec = {
            "resources": self._resources(),
            "placement": Placement(constraints=self._constraints(profile)),
            "restart_policy": RestartPolicy(condition="on-failure", max_attempts=3),
        }
        self._gpu_policy = profile.gpu
        if profile.gpu.mode != "none":
            self._gpu_charge = await self.gpu_charge()
        try:
            return await super(GpuhubSpawner, self).start()
        except Exception as err:
            await self._remove_service(self.service_name)
            await self._remove_secrets()
            if isinstance(err, QuotaExceeded):
                raise web.HTTPError(403, str(err)) from None
            if isinstance(err, ClusterError | NoGpuFree):
                raise web.HTTPError(503, str(err)) from None
            raise

    async def start_object(self) -> None:
        """Wait until the service's task runs; one Swarm cannot place within
        placement_wait is a ClusterError saying why."""
        try:
            state, error = await asyncio.to_thread(
                c.wait_task,
                self.client,
                self.service_id,
                {"running"},
                self.start_timeout,
                self.cluster.placement_wait,
            )
        except c.Unplaced as unplaced:
            raise ClusterError(placement_problem(str(unplaced), self.cpu_fallback())) from None
        if state != "running":
            raise RuntimeError(f"Service {self.service_name} not running: {state} {error}")

    async def _remove_service(self, name: str) -> None:
        await asyncio.to_thread(c.remove_service, self.client, name)

    async def stop(self, now: bool = False) -> None:
        """Remove the service and wait until its task is gone: until then Docker's DNS may
        still answer the old task's address for the service's name, and a new server of
        the same name would be unreachable by the proxy half of the time."""
        service = self.service_id
        await SwarmSpawner.stop(self, now=now)
        if service:
            await asyncio.to_thread(c.wait_gone, self.client, service, 60)
        await self._remove_secrets()

    async def delete_forever(self) -> None:
        """The user (or this named server) is deleted: the user's own network goes once no
        service of theirs is left. Stopping keeps it, so a restart need not make it again
        (and no network of the same name is still going away)."""
        await self._drop_network()
