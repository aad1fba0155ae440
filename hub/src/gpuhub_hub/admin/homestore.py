"""Where gpuhub-admin archives and deletes a removed user's files: on this host (one host,
or cluster homes on NFS, made in the exported folder here), or, in cluster mode with homes
`local`, on the nodes, by one-shot services of the hub image there (gpuhub_hub.cluster)."""

from __future__ import annotations

from pathlib import Path

import docker

from .. import cluster as c
from ..homes import archive_home, home_path, purge_user_files
from ..settings import Cluster, Settings, Spawner


class HomesError(ValueError):
    """A home that cannot be reached now; nothing was changed."""


class HostHomes:
    """Homes and archives under this host's home root and archive folder."""

    def __init__(self, spawner: Spawner) -> None:
        self.spawner = spawner

    def check(self, name: str) -> None:
        """Raise HomesError when `name`'s files cannot be changed now."""

    def exists(self, name: str) -> bool:
        roots = (self.spawner.home_root, self.spawner.archive_dir)
        return any(home_path(root, name).exists() for root in roots)

    def archive(self, name: str, stamp: str) -> str:
        """Pack the home into an archive and remove it; the archive ('' when no home)."""
        archive = archive_home(self.spawner.home_root, self.spawner.archive_dir, name, stamp)
        return str(archive or "")

    def purge(self, name: str) -> bool:
        """Delete the home and its archives; whether there was anything."""
        return bool(purge_user_files(self.spawner.home_root, self.spawner.archive_dir, name))


class NodeHomes(HostHomes):
    """Cluster mode, homes `local`: the home is on the node its record names; its archives
    stay on that node. Purging looks on every node (archives outlive their record)."""

    def __init__(self, spawner: Spawner, cluster: Cluster) -> None:
        super().__init__(spawner)
        self.cluster = cluster
        self.records = c.HomeRecords(Path(cluster.home_nodes_dir))
        self._client: docker.APIClient | None = None

    @property
    def client(self) -> docker.APIClient:
        if self._client is None:
            self._client = docker.APIClient(version="auto")
        return self._client

    def _image(self) -> str:
        return c.registry_image(self.client, self.cluster.registry, self.cluster.hub_image)

    @property
    def _roots(self) -> tuple[str, str]:
        return self.spawner.home_root, self.spawner.archive_dir

    def _node(self, name: str) -> str:
        try:
            return c.home_node_up(self.client, self.records, self.cluster.servers_label, name)
        except c.ClusterError as err:
            raise HomesError(f"{err}: nothing was changed, try again once it is back") from None

    def check(self, name: str) -> None:
        self._node(name)

    def exists(self, name: str) -> bool:
        return bool(self.records.read(name))

    def archive(self, name: str, stamp: str) -> str:
        node = self._node(name)
        if not node:
            return ""
        c.retire_home(self.client, self.records, self._roots, self._image(), node, name, stamp)
        return f"{node}:{home_path(self.spawner.archive_dir, name)}/{stamp}.tar.gz"

    def purge(self, name: str) -> bool:
        had = self.exists(name)
        self._node(name)
        image = self._image()
        for node in c.server_nodes(self.client, self.cluster.servers_label):
            c.retire_home(self.client, self.records, self._roots, image, node, name)
        return had


def homes_for(settings: Settings) -> HostHomes:
    cluster = settings.cluster
    if cluster is not None and cluster.homes_mode == "local":
        return NodeHomes(settings.spawner, cluster)
    return HostHomes(settings.spawner)
