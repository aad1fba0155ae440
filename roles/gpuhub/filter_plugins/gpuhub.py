"""Filters that apply gpuhub's shared rules in Ansible with the same code the hub runs
(hub/src/gpuhub_hub) or, for addresses, Python's ipaddress, so no rule has a second copy.

- `'' | gpuhub_labels`: the Docker labels the hub puts on user containers, services, token
  secrets and users' networks, by what they mark (user, gpus, gpus_description, token,
  network).
- `name | gpuhub_username_problem`: '' or why `name` cannot be a user name;
  `name | gpuhub_group_problem`: the same for a group name.
- `subnet | gpuhub_users_network`: the users network's addresses (gateway, hub, proxy, the
  containers' range); `subnet | gpuhub_users_network_problem`: '' or what is wrong.
- `repository | gpuhub_image[('previous')]`: the image the hub runs, `<repository>:current`
  (or the build before it, which a rollback returns to: `<repository>:previous`);
  `images | gpuhub_stale_image_tags(repositories, containers)`: the tags of builds that are
  neither of those nor used by a container (image retention);
  `variant | gpuhub_singleuser_image(name[, tag=False])`: `<name>-<variant>[:current]`.
- `hosts | gpuhub_cluster_addresses(hostvars)`: {host: the address other cluster hosts
  reach it at}: its inventory's gpuhub_cluster_address, else its gathered default IPv4, else ''.
- `hosts | gpuhub_hosts_gpus(hostvars)`: {host: its GPUs}: its inventory's gpuhub_gpus, else
  the gpu_facts role's fact (what the gpuhub_gpus default reads on the host itself);
  `that | gpuhub_gpus_on_nodes(hostvars)`: all of them in one list, each with its `node`.
- `nodes | gpuhub_swarm_status(tasks, kind)`: a line per swarm node (state, GPUs its
  servers hold of those it advertises, whose servers run there), by cluster.node_usage.
- `limits | gpuhub_group_quotas`: jupyterhub_group_limits split into the settings file's
  limits and the GPU quotas (their own file); `quotas | gpuhub_gpu_quotas_problem`: '' or
  why the hub's quota loader refuses them.
- `settings | gpuhub_settings_problem`: the hub's own settings loader, run on the control
  node; '' or its message, led by the jupyterhub_* variable the failing setting is rendered
  from (per __jupyterhub_settings in roles/jupyterhub/vars/main.yml).
- `packages | gpuhub_packages_missing(gpuhub_dpkg_status | default(none))`: the packages of
  an `apt` task that the preflight play's one `dpkg-query` (registered as gpuhub_dpkg_status)
  did not find installed; every one of them where there is no such answer (a role applied
  alone) or the name is not a bare package name (`name=version`, `name>=version`).
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

ROLES = Path(__file__).resolve().parents[2]
HUB_SRC = ROLES.parent / "hub" / "src"
SETTINGS_TEMPLATE = ROLES / "jupyterhub" / "vars" / "main.yml"
SEGMENT = re.compile(r"([A-Za-z_]+)(?:\[\d+\])?")
VARIABLE = re.compile(r"\bjupyterhub_[a-z0-9_]+")
# The images role builds <repository>:<hash of its inputs> and moves this tag to the newest.
CURRENT = "current"
# The build `current` pointed at before the last rebuild: kept, so that a rollback has it.
PREVIOUS = "previous"


def _hub() -> None:
    if str(HUB_SRC) not in sys.path:
        sys.path.insert(0, str(HUB_SRC))


def gpuhub_labels(_: object) -> dict[str, str]:
    """The Docker labels the hub puts on what it makes, by what they mark (the hub's own
    constants): playbooks find user containers, services, secrets and networks by them."""
    _hub()
    from gpuhub_hub.cluster import NETWORK_LABEL, SECRET_LABEL
    from gpuhub_hub.gpus import DESCRIPTION_LABEL, LABEL, USER_LABEL

    return {
        "user": USER_LABEL,
        "gpus": LABEL,
        "gpus_description": DESCRIPTION_LABEL,
        "token": SECRET_LABEL,
        "network": NETWORK_LABEL,
    }


def gpuhub_username_problem(name: object) -> str:
    _hub()
    from gpuhub_hub.names import username_problem

    return username_problem(name) or ""


def gpuhub_group_problem(name: object) -> str:
    _hub()
    from gpuhub_hub.names import group_problem

    return group_problem(name) or ""


def _network(subnet: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(str(subnet))
    except ValueError as err:
        raise ValueError(f"gpuhub_users_subnet: {subnet!r} is not an IPv4 network: {err}") from None
    if not 16 <= network.prefixlen <= 24:
        raise ValueError(f"gpuhub_users_subnet: {subnet} must have a /16 to /24 prefix")
    return network


def gpuhub_users_network_problem(subnet: str) -> str:
    try:
        _network(subnet)
    except ValueError as err:
        return str(err)
    return ""


def gpuhub_users_network(subnet: str) -> dict[str, str]:
    """The hub has the subnet's .2, the proxy .3, the gateway .1; Docker gives containers
    addresses from the upper half only."""
    try:
        network = _network(subnet)
    except ValueError as err:
        raise AnsibleFilterError(str(err)) from None
    upper = list(network.subnets(prefixlen_diff=1))[1]
    return {
        "subnet": str(network),
        "gateway": str(network[1]),
        "hub": str(network[2]),
        "proxy": str(network[3]),
        "dynamic_range": str(upper),
    }


def gpuhub_image(repository: str, which: str = CURRENT) -> str:
    if which not in (CURRENT, PREVIOUS):
        raise AnsibleFilterError(f"gpuhub_image: {which!r} is neither {CURRENT} nor {PREVIOUS}")
    return f"{repository}:{which}"


def gpuhub_stale_image_tags(
    images: list[dict[str, Any]], repositories: list[str], containers: list[dict[str, Any]]
) -> list[str]:
    """The tags in `repositories` to remove: every tag of an image that is neither the
    current nor the previous build of one of them (tagged so) nor used by a container.
    `images` and `containers` as Docker lists them (Id and RepoTags; ImageID)."""
    ours = set(repositories)
    keep = {gpuhub_image(r, which) for r in ours for which in (CURRENT, PREVIOUS)}
    in_use = {c.get("ImageID") for c in containers}
    stale = []
    for image in images:
        tags = [t for t in image.get("RepoTags") or [] if t.rpartition(":")[0] in ours]
        if tags and image["Id"] not in in_use and not keep.intersection(tags):
            stale.extend(tags)
    return sorted(stale)


def gpuhub_singleuser_image(variant: str, name: str, tag: bool = True) -> str:
    repository = f"{name}-{variant}"
    return gpuhub_image(repository) if tag else repository


def _variable(path: str) -> str | None:
    node: Any = yaml.safe_load(SETTINGS_TEMPLATE.read_text())["__jupyterhub_settings"]
    for segment in path.split(" ")[0].split("."):
        match = SEGMENT.fullmatch(segment)
        if not isinstance(node, dict) or not match or match.group(1) not in node:
            break
        node = node[match.group(1)]
        if isinstance(node, str):
            break
    found = VARIABLE.findall(node) if isinstance(node, str) else []
    return found[0] if found else None


def gpuhub_group_quotas(limits: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """jupyterhub_group_limits, split: {'limits': what the settings file takes (memory,
    CPU), 'quotas': the GPU quotas (their own file, read at each GPU spawn)}; groups with
    nothing on one side are left out of it."""
    _hub()
    from gpuhub_hub.quotas import QUOTA_KEYS

    split: dict[str, dict[str, Any]] = {"limits": {}, "quotas": {}}
    for group, values in (limits or {}).items():
        if not isinstance(values, dict):
            split["limits"][group] = values  # the settings loader names the problem
            continue
        for side, keep in (("limits", False), ("quotas", True)):
            part = {k: v for k, v in values.items() if (k in QUOTA_KEYS) == keep}
            if part:
                split[side][group] = part
    return split


def gpuhub_gpu_quotas_problem(quotas: dict[str, Any]) -> str:
    """'' or what is wrong with the GPU quotas, named as jupyterhub_group_limits.<group>.<key>."""
    _hub()
    from gpuhub_hub.quotas import parse
    from gpuhub_hub.settings import SettingsError

    try:
        parse(json.loads(json.dumps(quotas)), "jupyterhub_group_limits")
    except SettingsError as err:
        return str(err)
    return ""


def gpuhub_settings_problem(settings: dict[str, Any]) -> str:
    _hub()
    from gpuhub_hub.settings import Settings, SettingsError, build

    try:
        build(Settings, json.loads(json.dumps(settings)))
    except SettingsError as err:
        path, _, problem = str(err).removeprefix("settings.").partition(": ")
        variable = _variable(path)
        where = f"{variable} (hub setting {path})" if variable else f"hub setting {path}"
        return f"{where}: {problem}"
    return ""


def gpuhub_cluster_addresses(hosts: list[str], hostvars: Any) -> dict[str, str]:  # noqa: ANN401
    """'' for a host with neither (playbooks that gather no facts for it and need no
    address); the swarm role's preflight refuses that in site.yml, naming the host."""
    addresses = {}
    for host in hosts:
        own = hostvars[host].get("gpuhub_cluster_address")
        facts = hostvars[host].get("ansible_facts", {})
        addresses[host] = str(own or facts.get("default_ipv4", {}).get("address", ""))
    return addresses


def gpuhub_hosts_gpus(hosts: list[str], hostvars: Any) -> dict[str, list[dict[str, Any]]]:  # noqa: ANN401
    found = {}
    for host in hosts:
        own = hostvars[host].get("gpuhub_gpus")
        facts = hostvars[host].get("ansible_facts", {})
        found[host] = list(
            own
            if own is not None
            else facts.get("ansible_local", {}).get("gpu", {}).get("gpus", [])
        )
    return found


def gpuhub_gpus_on_nodes(
    by_host: dict[str, list[dict[str, Any]]],
    hostvars: Any,  # noqa: ANN401
) -> list[dict[str, Any]]:
    """Every node's GPUs in one list, each with `node`: the node's Swarm hostname (its
    nodename fact; the inventory name before facts are gathered)."""
    found = []
    for host, gpus in by_host.items():
        node = hostvars[host].get("ansible_facts", {}).get("nodename") or host
        found += [{**gpu, "node": node} for gpu in gpus]
    return found


def gpuhub_swarm_status(
    nodes: list[dict[str, Any]], tasks: list[dict[str, Any]], kind: str
) -> list[str]:
    _hub()
    from gpuhub_hub.cluster import node_usage

    return [
        f"{n.hostname}: {n.state}, {n.availability}; GPUs {n.gpus_reserved} of {n.gpus} reserved; "
        f"servers: {', '.join(n.users) or 'none'}"
        for n in node_usage(json.loads(json.dumps(nodes)), json.loads(json.dumps(tasks)), kind)
    ]


# `dpkg-query --show --showformat '${db:Status-Abbrev} ${Package}\n'`: the second letter of
# the status is the package's current state, `i` for installed.
_DPKG_INSTALLED = re.compile(r"^.i. (\S+)$")
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def gpuhub_packages_missing(
    wanted: list[str] | str, dpkg_status: dict[str, Any] | None
) -> list[str]:
    """The packages of `wanted` to hand to apt: those not installed, all where unknown."""
    names = [wanted] if isinstance(wanted, str) else list(wanted)
    lines = (dpkg_status or {}).get("stdout_lines")
    if lines is None:
        return names
    installed = {m.group(1) for line in lines if (m := _DPKG_INSTALLED.match(line))}
    return [name for name in names if not _PACKAGE_NAME.match(name) or name not in installed]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gpuhub_username_problem": gpuhub_username_problem,
            "gpuhub_group_quotas": gpuhub_group_quotas,
            "gpuhub_gpu_quotas_problem": gpuhub_gpu_quotas_problem,
            "gpuhub_group_problem": gpuhub_group_problem,
            "gpuhub_users_network": gpuhub_users_network,
            "gpuhub_users_network_problem": gpuhub_users_network_problem,
            "gpuhub_settings_problem": gpuhub_settings_problem,
            "gpuhub_image": gpuhub_image,
            "gpuhub_stale_image_tags": gpuhub_stale_image_tags,
            "gpuhub_cluster_addresses": gpuhub_cluster_addresses,
            "gpuhub_hosts_gpus": gpuhub_hosts_gpus,
            "gpuhub_swarm_status": gpuhub_swarm_status,
            "gpuhub_gpus_on_nodes": gpuhub_gpus_on_nodes,
            "gpuhub_labels": gpuhub_labels,
            "gpuhub_singleuser_image": gpuhub_singleuser_image,
            "gpuhub_packages_missing": gpuhub_packages_missing,
        }
