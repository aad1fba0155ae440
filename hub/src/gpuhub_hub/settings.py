"""The hub settings file: a typed, validated view of the YAML Ansible renders.

Every key is checked: a wrong type, an unknown key or a bad value raises SettingsError
naming the key's full path, so a typo fails the hub's start with a clear message
instead of being silently ignored.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from .gpus import Gpu, GpuPolicy
from .names import USERNAME, group_problem

BYTES = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class SettingsError(ValueError):
    """A settings file that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Limits:
    mem_limit: str | None = None
    cpu_limit: float | None = None

    def __post_init__(self) -> None:
        if self.mem_limit is not None and not BYTES.match(self.mem_limit):
            raise SettingsError(
                f"mem_limit: {self.mem_limit!r} is not a size like 512M, 2G or 1.5G"
            )
        if self.cpu_limit is not None and self.cpu_limit <= 0:
            raise SettingsError(f"cpu_limit: {self.cpu_limit} must be greater than 0")


@dataclass(frozen=True)
class Profile:
    slug: str
    display_name: str
    image: str
    description: str = ""
    limits: Limits = field(default_factory=Limits)
    groups: tuple[str, ...] = ()  # empty: every user may choose it
    gpu: GpuPolicy = field(default_factory=GpuPolicy)

    def __post_init__(self) -> None:
        if not SLUG.match(self.slug):
            raise SettingsError(f"slug: {self.slug!r} must be lowercase letters, digits and '-'")
        if not self.image:
            raise SettingsError("image: must not be empty")
        if self.gpu.count < 1:
            raise SettingsError(f"gpu.count: {self.gpu.count} must be 1 or more")
        if self.gpu.mode == "mig" and not self.gpu.mig_profile:
            raise SettingsError("gpu.mig_profile: a mig profile names its slice, e.g. 1g.10gb")


def extra_config_filename(name: str) -> str:
    """The file name tracebacks give for an extra configuration snippet."""
    return f"<jupyterhub_extra_config {name}>"


@dataclass(frozen=True)
class Hub:
    # How the hub, the proxy and user servers reach each other: Ansible renders them from
    # the shared facts (gpuhub role), so they have no second default here.
    proxy_api_url: str
    hub_bind_url: str
    hub_connect_url: str
    # Where the hub keeps its state (under gpuhub_root on the host): rendered, no default.
    db_url: str
    cookie_secret_file: str
    crypt_key_file: str
    proxy_token_file: str
    # The token of the gpuhub-admin service (the management CLI), read by hub and CLI.
    admin_token_file: str
    base_url: str = "/"
    admin_users: tuple[str, ...] = ()
    # The token of the gpuhub-metrics service (only read:metrics); empty: no such service.
    metrics_token_file: str = ""
    # Groups users may be put in (created on first use by the management CLI).
    groups: tuple[str, ...] = ()
    concurrent_spawn_limit: int = 10
    active_server_limit: int = 0
    named_servers: bool = True
    named_server_limit_per_user: int = 2
    last_activity_interval: int = 300
    upgrade_db: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Shown on every hub page (HTML allowed: admins write it); empty: none.
    announcement: str = ""
    # Logging out of the hub stops the user's servers too.
    shutdown_on_logout: bool = False
    # Python snippets run after gpuhub's own configuration, by name in name order, with
    # `c` (JupyterHub's config) in scope: for what gpuhub does not model.
    extra_config: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, code in self.extra_config.items():
            try:
                compile(code, extra_config_filename(name), "exec")
            except SyntaxError as err:
                raise SettingsError(
                    f"extra_config ({name}): does not compile: {err.msg} (line {err.lineno})"
                ) from None
        if not (self.base_url.startswith("/") and self.base_url.endswith("/")):
            raise SettingsError(f"base_url: {self.base_url!r} must start and end with '/'")
        for name in self.admin_users:
            if not USERNAME.match(name):
                raise SettingsError(f"admin_users: {name!r} is not a valid user name")
        for name in self.groups:
            problem = group_problem(name)
            if problem:
                raise SettingsError(f"groups: {problem}")
        for key in ("concurrent_spawn_limit", "active_server_limit", "named_server_limit_per_user"):
            if getattr(self, key) < 0:
                raise SettingsError(f"{key}: must be 0 (no limit) or more")
        if self.last_activity_interval <= 0:
            raise SettingsError("last_activity_interval: must be greater than 0 seconds")


@dataclass(frozen=True)
class Ldap:
    """A directory (ldapauthenticator): who may log in, with which password, in which groups."""

    server_address: str
    server_port: int = 0  # 0: 636 with use_ssl, else 389
    # ldaps:// (TLS from the first byte); otherwise StartTLS before any bind, unless the
    # admin turned it off knowingly (insecure: passwords cross the network in clear).
    use_ssl: bool = False
    start_tls: bool = True
    ca_file: str = ""  # PEM bundle the directory's certificate is checked against; "": system's
    # Bind as the person: DN templates tried in order ({username} is the login name) ...
    bind_dn_template: tuple[str, ...] = ()
    # ... or find the person's DN first (user_attribute = login name under user_search_base),
    # with a service account when the directory does not allow anonymous searches.
    lookup_dn: bool = False
    user_search_base: str = ""
    user_attribute: str = "uid"
    search_user: str = ""  # the service account's DN
    search_password_file: str = ""  # its password (root 0600), never in this file
    # The person's groups (they become hub groups): entries under group_search_base
    # matching group_filter ({userdn}: the person's DN, {uid}: the login name), named by
    # group_name_attribute.
    group_search_base: str = ""
    group_filter: str = "(|(member={userdn})(uniqueMember={userdn})(memberUid={uid}))"
    group_name_attribute: str = "cn"

    def __post_init__(self) -> None:
        if not self.server_address or "://" in self.server_address:
            raise SettingsError(
                f"server_address: {self.server_address!r} must be a host name (TLS: use_ssl)"
            )
        if not (self.use_ssl or self.start_tls):
            raise SettingsError(
                "start_tls: a plain ldap:// connection without StartTLS sends passwords in clear"
            )
        if not (self.bind_dn_template or self.lookup_dn):
            raise SettingsError("bind_dn_template: give one, or turn lookup_dn on")
        for template in self.bind_dn_template:
            if "{username}" not in template:
                raise SettingsError(f"bind_dn_template: {template!r} lacks {{username}}")
        if self.lookup_dn and not self.user_search_base:
            raise SettingsError("user_search_base: lookup_dn needs where to search")
        if bool(self.search_user) != bool(self.search_password_file):
            raise SettingsError("search_password_file: the search user needs its password file")
        if not 0 <= self.server_port <= 65535:
            raise SettingsError(f"server_port: {self.server_port} is not a port")


@dataclass(frozen=True)
class Oidc:
    """An OpenID Connect provider (oauthenticator's GenericOAuthenticator). Its endpoints
    come from the issuer's discovery document, read by Ansible at converge."""

    issuer: str
    authorize_url: str
    token_url: str
    userdata_url: str
    client_id: str
    client_secret_file: str  # root 0600, never in this file
    callback_url: str  # https://<hub>/hub/oauth_callback, registered with the provider
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    ca_file: str = ""  # PEM bundle the provider's certificate is checked against
    login_service: str = "single sign-on"  # the login button: "Sign in with ..."

    def __post_init__(self) -> None:
        for key in ("issuer", "authorize_url", "token_url", "userdata_url", "callback_url"):
            if not getattr(self, key).startswith("https://"):
                raise SettingsError(f"{key}: {getattr(self, key)!r} must be an https:// URL")
        for key in ("client_id", "client_secret_file", "username_claim"):
            if not getattr(self, key):
                raise SettingsError(f"{key}: must not be empty")
        if "openid" not in self.scopes:
            raise SettingsError("scopes: must include openid")


@dataclass(frozen=True)
class Auth:
    mode: Literal["native", "workshop", "ldap", "oidc"] = "native"
    # ldap and oidc: the directory's or token's groups become hub groups at each login.
    # Only members of allowed_groups may log in (empty: everyone the directory or provider
    # accepts); members of admin_groups are hub admins (and lose it when they leave).
    allowed_groups: tuple[str, ...] = ()
    admin_groups: tuple[str, ...] = ()
    ldap: Ldap | None = None
    oidc: Oidc | None = None
    # ldap and oidc: groups users.yml gives, added to the directory's at each login
    # (localgroups.py); "": none.
    local_groups_file: str = ""
    # Off: accounts are made by gpuhub-admin (users.yml); on: visitors sign up and an
    # admin approves them.
    enable_signup: bool = False
    # <dir>/<admin name>: each admin's first password (root 0600), used at hub start for
    # an admin with no account yet; empty: admins get no account at start.
    initial_admin_password_dir: str = ""
    minimum_password_length: int = 10
    check_common_password: bool = True
    allowed_failed_logins: int = 5
    seconds_before_next_try: int = 600

    def __post_init__(self) -> None:
        if self.mode == "ldap" and self.ldap is None:
            raise SettingsError("ldap: mode ldap needs the directory's settings")
        if self.mode == "oidc" and self.oidc is None:
            raise SettingsError("oidc: mode oidc needs the provider's settings")
        for key in ("allowed_groups", "admin_groups"):
            for name in getattr(self, key):
                problem = group_problem(name)
                if problem:
                    raise SettingsError(f"{key}: {problem}")


@dataclass(frozen=True)
class Culler:
    enabled: bool = True
    timeout: int = 3600
    every: int = 600
    cull_users: bool = False
    max_age: int = 0
    # Servers of GPU profiles: their own idle timeout, and a maximum age (0: none).
    gpu_timeout: int = 1800
    gpu_max_age: int = 0
    # Users see a warning (home page, JupyterLab) this long before a cull (0: none).
    warning: int = 600
    # On a host with GPUs (the role decides, and gives the hub container nvidia-smi): a
    # server whose GPU works at gpu_busy_percent or more is active (read every gpu_every
    # seconds, gpuactivity.py).
    gpu_activity: bool = False
    gpu_busy_percent: int = 10
    gpu_every: int = 60

    def __post_init__(self) -> None:
        if self.enabled and min(self.timeout, self.every, self.gpu_timeout, self.gpu_every) <= 0:
            raise SettingsError(
                "timeout, every, gpu_timeout and gpu_every: must be greater than 0 seconds"
            )
        if min(self.max_age, self.gpu_max_age, self.warning) < 0:
            raise SettingsError(
                "max_age, gpu_max_age and warning: must be 0 (none) or more seconds"
            )
        if not 1 <= self.gpu_busy_percent <= 100:
            raise SettingsError("gpu_busy_percent: must be from 1 to 100")


@dataclass(frozen=True)
class Spawner:
    network: str  # the users network (gpuhub_users_network)
    # Under gpuhub_root on the host: homes, archives of removed users' homes, and the
    # servers' API token files (see hardening.py). Rendered, no default.
    home_root: str
    archive_dir: str
    tokens_dir: str
    # One file per home still in the layout mounted at ~/work only (see homes.py).
    legacy_homes_dir: str
    profiles: tuple[Profile, ...] = ()
    default_limits: Limits = field(default_factory=Limits)
    group_limits: dict[str, Limits] = field(default_factory=dict)
    # Where a home is mounted in the container, and where JupyterLab opens.
    notebook_dir: str = "/home/jovyan"
    shared_dir: str = ""
    shared_mount: str = "/home/jovyan/shared"
    packages_dir: str = ""
    packages_mount: str = "/opt/gpuhub/packages"
    user_uid: int = 1000
    user_gid: int = 100
    start_timeout: int = 300
    http_timeout: int = 120
    remove: bool = True
    # Processes and threads one server may have (bounds a fork bomb).
    pids_limit: int = 2048
    # The host's GPUs (from the gpu_facts role); empty on a GPU-less host.
    gpus: tuple[Gpu, ...] = ()
    # Group GPU quotas (quotas.py), read at each GPU spawn; '' or no file: none.
    gpu_quotas_file: str = ""
    # The usage ledger (usage.py): a line per server start and stop; '' keeps none.
    usage_file: str = ""

    def __post_init__(self) -> None:
        if self.pids_limit < 64:
            raise SettingsError(f"pids_limit: {self.pids_limit} is too small (64 or more)")
        if not self.profiles:
            raise SettingsError("profiles: at least one profile is needed")
        for profile in self.profiles:
            if profile.gpu.mode != "none" and not self.gpus:
                raise SettingsError(
                    f"profiles ({profile.slug}): gpu mode {profile.gpu.mode}, but the host has no "
                    "GPU (the gpu_facts role found none): give GPU profiles only to GPU hosts, "
                    "or check the driver with playbooks/gpu-check.yml"
                )
            models = sorted({g.name for g in self.gpus})
            if profile.gpu.model and profile.gpu.model not in models:
                raise SettingsError(
                    f"profiles ({profile.slug}): no {profile.gpu.model} GPU here (the GPUs "
                    f"found are: {', '.join(models) or 'none'}); name one of those models"
                )
            slices = {m.profile for g in self.gpus for m in g.mig_devices}
            if profile.gpu.mode == "mig" and profile.gpu.mig_profile not in slices:
                raise SettingsError(
                    f"profiles ({profile.slug}): no MIG {profile.gpu.mig_profile} slices on this "
                    f"host (it has: {', '.join(sorted(slices)) or 'none'})"
                )
        slugs = [p.slug for p in self.profiles]
        if len(set(slugs)) != len(slugs):
            raise SettingsError(f"profiles: slugs must be unique, got {slugs}")
        if not any(not p.groups and p.gpu.mode == "none" for p in self.profiles):
            raise SettingsError(
                "profiles: at least one CPU-only profile must be open to every user"
            )


@dataclass(frozen=True)
class Cluster:
    """Cluster mode: user servers run as Docker Swarm services on the nodes (swarm.py).
    Absent from the settings file: single-host mode (DockerSpawner on this host). Ansible
    renders every key from the shared facts (gpuhub role), so none has a default here."""

    # host:port of the hub host's registry the nodes pull images from, and the hub image
    # (its local tag: the registry's digest of it runs a new home's one-shot service).
    registry: str
    hub_image: str
    # One file per user naming the node their home is on (homes mode `local`).
    home_nodes_dir: str
    homes_mode: Literal["local", "nfs"]
    # Node labels: nodes that run user servers (value "true"), and a node's GPU model.
    servers_label: str
    gpu_model_label: str
    # Seconds a server may wait for a node with what it needs (free GPUs, a home node that
    # is up) before it is removed and its user told why.
    placement_wait: int
    # The hub host's hub and proxy containers: each user's own overlay network (made at
    # their first start, removed with the user) has these, and that user's servers.
    hub_containers: tuple[str, ...]
    # What each node's copy of the shared folder was made from (`gpuhub-admin shared
    # sync`): a JSON file {node: quick manifest of the hub host's folder}.
    shared_sync_file: str
    # Homes mode `nfs`: the server exporting the homes folder (each user's home is
    # <nfs_export>/<user> there), and mount options beyond addr=. With
    # nfs_shared_export, servers mount the shared folder from it too (read-only);
    # without, the hub host's folder is copied to each node (shared sync).
    nfs_server: str = ""
    nfs_export: str = ""
    nfs_shared_export: str = ""
    nfs_options: str = "nfsvers=4.2,hard"

    def __post_init__(self) -> None:
        if self.homes_mode == "nfs" and not (self.nfs_server and self.nfs_export.startswith("/")):
            raise SettingsError(
                "nfs_server, nfs_export: homes mode nfs needs the NFS server's address and "
                f"the absolute path it exports (got {self.nfs_server!r}, {self.nfs_export!r})"
            )
        if not re.match(r"^[A-Za-z0-9.-]+(:[0-9]+)?$", self.registry):
            raise SettingsError(f"registry: {self.registry!r} is not host[:port]")
        if self.placement_wait <= 0:
            raise SettingsError("placement_wait: must be greater than 0 seconds")


@dataclass(frozen=True)
class Settings:
    spawner: Spawner
    hub: Hub
    auth: Auth = field(default_factory=Auth)
    culler: Culler = field(default_factory=Culler)
    cluster: Cluster | None = None


T = TypeVar("T")


def _convert(tp: Any, value: Any, where: str) -> Any:  # noqa: ANN401 (YAML is untyped)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _convert(inner, value, where)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(map(str, args))
            raise SettingsError(f"{where}: {value!r} is not one of: {allowed}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        return build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str) and isinstance(value, tp) and not isinstance(value, bool):
        return value
    raise SettingsError(f"{where}: expected {tp.__name__}, got {value!r}")


def build(cls: type[T], data: Any, where: str = "settings") -> T:  # noqa: ANN401
    """Build dataclass `cls` from parsed YAML, rejecting unknown or mistyped keys."""
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")
    kwargs = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is MISSING and f.default_factory is MISSING:
            raise SettingsError(f"{where}.{f.name}: missing")
    try:
        return cls(**kwargs)
    except SettingsError as err:
        raise SettingsError(f"{where}.{err}") from None


def load(path: str | Path) -> Settings:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise SettingsError(f"cannot read settings file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise SettingsError(f"settings file {path} is not valid YAML: {err}") from None
    return build(Settings, data)
