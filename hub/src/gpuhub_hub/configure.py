"""Turn the settings file into JupyterHub, authenticator and spawner configuration."""

from __future__ import annotations

import logging
import os
import secrets
import ssl
import sys
from pathlib import Path
from typing import Any

from . import culling, database
from .names import USERNAME
from .settings import Auth, Ldap, Oidc, Settings, extra_config_filename, load

SETTINGS_VARIABLE = "GPUHUB_SETTINGS"  # the settings file's path (the hub container sets it)
WORKSHOP_WARNING = (
    "WORKSHOP MODE: any user name logs in WITHOUT A PASSWORD and gets a server; no user is "
    "an admin. Use it only for a short event on a network you trust, then switch auth.mode "
    "back to native."
)
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
# The management CLI (gpuhub-admin) runs as this service. It grants and revokes admin,
# which JupyterHub allows only to admins, so the service is one (`admin: True`; its
# token lives only in the state directory, root 0600).
ADMIN_SERVICE = "gpuhub-admin"
# A scraper (Prometheus) reads /hub/metrics with this service's token: it can do nothing else.
METRICS_SERVICE = "gpuhub-metrics"
# On a host with GPUs: reports servers whose GPU works as active (gpuactivity.py).
GPU_ACTIVITY_SERVICE = "gpu-activity"

log = logging.getLogger("gpuhub")


def _secret(path: str) -> str:
    try:
        value = Path(path).read_text().strip()
    except OSError as err:
        raise RuntimeError(f"cannot read secret {path}: {err.strerror}") from None
    if not value:
        raise RuntimeError(f"secret {path} is empty")
    return value


def _ldap(c: Any, ldap: Ldap, auth: Auth) -> None:  # noqa: ANN401
    """The directory: ldapauthenticator, with the person's groups as hub groups."""
    c.JupyterHub.authenticator_class = "gpuhub_hub.signin.GpuhubLDAPAuthenticator"
    a = c.GpuhubLDAPAuthenticator
    a.server_address = ldap.server_address
    a.server_port = ldap.server_port or (636 if ldap.use_ssl else 389)
    # ldaps: TLS from the first byte; otherwise StartTLS before the bind (Ldap refuses none).
    a.tls_strategy = "on_connect" if ldap.use_ssl else "before_bind"
    # ldap3 checks no certificate unless told to (its Tls defaults to CERT_NONE).
    a.tls_kwargs = {"validate": ssl.CERT_REQUIRED} | (
        {"ca_certs_file": ldap.ca_file} if ldap.ca_file else {}
    )
    a.bind_dn_template = list(ldap.bind_dn_template)
    a.lookup_dn = ldap.lookup_dn
    a.user_search_base = ldap.user_search_base
    a.user_attribute = ldap.user_attribute
    a.lookup_dn_user_dn_attribute = ldap.user_attribute
    a.lookup_dn_search_user = ldap.search_user or None
    if ldap.search_password_file:
        a.lookup_dn_search_password = _secret(ldap.search_password_file)
    # The login name stays what the person typed (lowercased by JupyterHub), not the
    # directory's spelling of it.
    a.use_lookup_dn_username = False
    a.group_search_base = ldap.group_search_base
    a.group_filter = ldap.group_filter
    a.group_name_attribute = ldap.group_name_attribute
    a.gpuhub_allowed_groups = set(auth.allowed_groups)
    a.gpuhub_admin_groups = set(auth.admin_groups)
    a.allow_all = not auth.allowed_groups  # JupyterHub asks check_allowed only when off
    c.Authenticator.manage_groups = True


def _oidc(c: Any, oidc: Oidc, auth: Auth) -> None:  # noqa: ANN401
    """Single sign-on: GenericOAuthenticator, groups from the token's groups claim."""
    c.JupyterHub.authenticator_class = "generic-oauth"
    a = c.GenericOAuthenticator
    a.login_service = oidc.login_service
    a.client_id = oidc.client_id
    a.client_secret = _secret(oidc.client_secret_file)
    a.oauth_callback_url = oidc.callback_url
    a.authorize_url = oidc.authorize_url
    a.token_url = oidc.token_url
    a.userdata_url = oidc.userdata_url
    a.scope = list(oidc.scopes)
    a.username_claim = oidc.username_claim
    a.enable_pkce = True
    # Some providers (Glewlwyd) refuse an openid request without a nonce; oauthenticator
    # sends none. The hub reads the person from the userinfo endpoint with the code's
    # access token (state and PKCE protect that exchange), not from an ID token, so this
    # nonce (new at every hub start) only satisfies such providers.
    a.extra_authorize_params = {"nonce": secrets.token_urlsafe(16)}
    a.validate_server_cert = True
    if oidc.ca_file:
        a.http_request_kwargs = {"ca_certs": oidc.ca_file}
    c.Authenticator.manage_groups = True
    a.auth_state_groups_key = f"oauth_user.{oidc.groups_claim}"
    a.allowed_groups = set(auth.allowed_groups)
    a.admin_groups = set(auth.admin_groups)
    # Everyone the provider signs in, unless allowed groups narrow it (the oauthenticator
    # lets allow_all win over them).
    a.allow_all = not auth.allowed_groups


def configure(c: Any, settings: Settings) -> None:  # noqa: ANN401
    """Set traitlets on JupyterHub's config object `c` from `settings`."""
    hub, auth, culler, spawner = settings.hub, settings.auth, settings.culler, settings.spawner
    rules = culling.CullRules(
        frozenset(p.slug for p in spawner.profiles if p.gpu.mode != "none"),
        gpu_timeout=culler.gpu_timeout,
        gpu_max_age=culler.gpu_max_age,
        timeout=culler.timeout,
        max_age=culler.max_age,
        warning=culler.warning,
    )

    c.JupyterHub.base_url = hub.base_url
    c.JupyterHub.hub_bind_url = hub.hub_bind_url
    c.JupyterHub.hub_connect_url = hub.hub_connect_url
    c.JupyterHub.db_url = hub.db_url
    if hub.db_url.startswith("sqlite:"):
        database.use_write_ahead_log()
    # A newer JupyterHub migrates the schema at start; for SQLite it first copies the
    # database file next to it (jupyterhub.sqlite.<timestamp>).
    c.JupyterHub.upgrade_db = hub.upgrade_db
    c.JupyterHub.cookie_secret_file = hub.cookie_secret_file
    c.JupyterHub.log_level = hub.log_level
    c.JupyterHub.shutdown_on_logout = hub.shutdown_on_logout
    # JupyterHub's page templates show the announcement on every page; the home page
    # shows, instead, a user's cull warnings before it (culling.py).
    template_vars: dict[str, Any] = {"announcement": hub.announcement} if hub.announcement else {}
    if culler.enabled and culler.warning:
        from . import cullwarning  # imports JupyterHub's handlers: only in the hub

        template_vars["announcement_home"] = cullwarning.home_warnings(rules, hub.announcement)
        # JupyterLab asks here (through the user's server). JupyterHub calls extra_handlers
        # deprecated (services are its way for new endpoints) and logs so at start, but
        # this one must read the hub's own view of a server, as the home page does.
        c.JupyterHub.extra_handlers = [
            (cullwarning.ROUTE, cullwarning.CullWarningHandler, {"rules": rules})
        ]
    c.JupyterHub.template_vars = template_vars
    c.JupyterHub.last_activity_interval = hub.last_activity_interval
    # The hub's own HTTP client (aiohttp since JupyterHub 6) must look names up afresh: in
    # cluster mode a server's name (its Swarm service, dnsrr) moves to a new address at
    # each start, and a cached old one made the hub wait for a server that had moved.
    c.JupyterHubHTTPClient.connector_options = {"use_dns_cache": False}
    fresh_name_lookups()
    # The proxy runs in its own container: restarting the hub drops no connection and
    # keeps every user server running.
    c.JupyterHub.cleanup_servers = False
    c.ConfigurableHTTPProxy.should_start = False
    c.ConfigurableHTTPProxy.api_url = hub.proxy_api_url
    c.ConfigurableHTTPProxy.auth_token = _secret(hub.proxy_token_file)
    c.CryptKeeper.keys = [_secret(hub.crypt_key_file)]
    c.JupyterHub.concurrent_spawn_limit = hub.concurrent_spawn_limit
    c.JupyterHub.active_server_limit = hub.active_server_limit
    c.JupyterHub.allow_named_servers = hub.named_servers
    c.JupyterHub.named_server_limit_per_user = hub.named_server_limit_per_user

    # Sign-up and login (and JupyterHub's users API) accept only names of gpuhub's rule.
    c.Authenticator.username_pattern = USERNAME.pattern
    # Who may log in is the authenticator's business: anyone in workshop mode, approved
    # accounts in native mode (NativeAuthenticator refuses the others itself), the
    # directory's or provider's people in ldap and oidc modes, narrowed by allowed groups
    # (signin.py; the oauthenticator has its own allow_all, set below).
    c.Authenticator.allow_all = True
    services: list[dict[str, Any]] = [
        {"name": ADMIN_SERVICE, "api_token": _secret(hub.admin_token_file), "admin": True}
    ]
    roles: list[dict[str, Any]] = []
    if auth.mode == "workshop":
        log.warning(WORKSHOP_WARNING)
        c.JupyterHub.authenticator_class = "dummy"
        # Anyone can type any name, so no name may be an admin: admin_users stays empty
        # and the admin role is given to no user (JupyterHub revokes it from users who
        # were admins in native mode; admin_users get it back when native mode returns).
        c.Authenticator.admin_users = set()
        roles.append({"name": "admin", "users": []})
    else:
        c.Authenticator.admin_users = set(hub.admin_users)
    if auth.mode == "ldap" and auth.ldap:  # Auth makes sure it is there
        _ldap(c, auth.ldap, auth)
    elif auth.mode == "oidc" and auth.oidc:
        _oidc(c, auth.oidc, auth)
    if auth.mode in ("ldap", "oidc") and auth.local_groups_file:
        from .signin import local_groups_hook  # imports ldap3: only in these modes

        c.Authenticator.post_auth_hook = local_groups_hook(auth.local_groups_file)
    elif auth.mode == "native":
        c.JupyterHub.authenticator_class = "gpuhub_hub.accounts.GpuhubAuthenticator"
        c.GpuhubAuthenticator.initial_password_dir = auth.initial_admin_password_dir
        c.NativeAuthenticator.open_signup = False
        c.NativeAuthenticator.enable_signup = auth.enable_signup
        c.NativeAuthenticator.minimum_password_length = auth.minimum_password_length
        c.NativeAuthenticator.check_common_password = auth.check_common_password
        c.NativeAuthenticator.allowed_failed_logins = auth.allowed_failed_logins
        c.NativeAuthenticator.seconds_before_next_try = auth.seconds_before_next_try

    # /hub/metrics needs the read:metrics scope (403 otherwise), which no user role has.
    c.JupyterHub.authenticate_prometheus = True
    if hub.metrics_token_file:
        services.append({"name": METRICS_SERVICE, "api_token": _secret(hub.metrics_token_file)})
        roles.append({"name": "metrics", "scopes": ["read:metrics"], "services": [METRICS_SERVICE]})
    if culler.enabled:
        command = [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={culler.timeout}",
            f"--cull-every={culler.every}",
            f"--max-age={culler.max_age}",
            f"--config={Path(culling.__file__).with_name('culler_config.py')}",
        ]
        scopes = list(CULLER_SCOPES)
        if culler.cull_users:
            # The culler's options take a value (`--cull-users` alone stops it at start),
            # and it would delete idle admins too unless told not to.
            command += ["--cull-users=true", "--cull-admin-users=false"]
            scopes.append("admin:users")
        services.append(
            {
                "name": "idle-culler",
                "command": command,
                "environment": {culling.RULES_VARIABLE: rules.to_json()},
            }
        )
        roles.append({"name": "idle-culler", "scopes": scopes, "services": ["idle-culler"]})
    if culler.enabled and culler.gpu_activity:
        # GPU utilisation as activity, read on this host.
        services.append(
            {
                "name": GPU_ACTIVITY_SERVICE,
                "command": [
                    sys.executable,
                    "-m",
                    "gpuhub_hub.gpuactivity",
                    f"--every={culler.gpu_every}",
                    f"--busy-percent={culler.gpu_busy_percent}",
                ],
            }
        )
        roles.append(
            {
                "name": "gpu-activity",
                "scopes": ["users:activity"],
                "services": [GPU_ACTIVITY_SERVICE],
            }
        )
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles

    # One host: containers on this Docker engine; cluster mode: Swarm services on the nodes.
    c.JupyterHub.spawner_class = (
        "gpuhub_hub.swarm.GpuhubSwarmSpawner"
        if settings.cluster
        else "gpuhub_hub.spawner.GpuhubSpawner"
    )
    c.GpuhubSpawner.gpuhub_settings = settings
    c.DockerSpawner.network_name = spawner.network
    c.DockerSpawner.use_internal_ip = True
    c.DockerSpawner.remove = spawner.remove
    c.DockerSpawner.pull_policy = "never"  # images are built on the host, never pulled
    c.DockerSpawner.notebook_dir = spawner.notebook_dir
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = spawner.start_timeout
    c.Spawner.http_timeout = spawner.http_timeout


def settings_path() -> str:
    path = os.environ.get(SETTINGS_VARIABLE, "")
    if not path:
        raise RuntimeError(f"{SETTINGS_VARIABLE} is not set: it names the hub's settings file")
    return path


def fresh_name_lookups() -> None:
    """aiohttp resolves through aiodns (c-ares) when it is installed, and c-ares keeps
    answers for their TTL (Docker's DNS gives 600 s): the system resolver (threaded
    getaddrinfo) asks Docker's DNS each time. Without aiohttp (JupyterHub 5) nothing to do."""
    try:
        import aiohttp.connector
        import aiohttp.resolver
    except ImportError:
        return
    aiohttp.connector.DefaultResolver = aiohttp.resolver.ThreadedResolver  # type: ignore[misc]


def configure_from_environment(c: Any) -> Settings:  # noqa: ANN401
    """Entry point of jupyterhub_config.py: settings from $GPUHUB_SETTINGS."""
    settings = load(settings_path())
    configure(c, settings)
    run_extra_config(c, settings)
    return settings


def run_extra_config(c: Any, settings: Settings) -> None:  # noqa: ANN401
    """The admin's own snippets (hub.extra_config), after everything gpuhub sets."""
    for name in sorted(settings.hub.extra_config):
        code = compile(settings.hub.extra_config[name], extra_config_filename(name), "exec")
        exec(code, {"c": c})  # noqa: S102 (the admin's configuration, as jupyterhub_config.py)
