"""DockerSpawner with gpuhub's profiles, limits and home directories."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path
from typing import Any

from docker.types import DeviceRequest
from dockerspawner import DockerSpawner
from tornado import web
from traitlets import Instance, default

from . import hardening, ready, usage
from .gpus import (
    DESCRIPTION_LABEL,
    GROUPS_LABEL,
    LABEL,
    SERVER_LABEL,
    SHARED_LABEL,
    USER_LABEL,
    Allocation,
    GpuAllocator,
    NoGpuFree,
    describe,
    devices_held,
)
from .homes import WORK, ensure_home, home_path, is_legacy, migrate_home
from .names import server_name_problem
from .policy import allowed_profiles, choose_profile, effective_limits
from .quotas import Charge, QuotaExceeded
from .quotas import load as load_quotas
from .settings import Profile, Settings, SettingsError

# The GPUs a server holds, as its user sees them (environment; admins: DESCRIPTION_LABEL).
GPUS_VARIABLE = "GPUHUB_GPUS"
ACTIVITY_VARIABLE = "JUPYTERHUB_ACTIVITY_INTERVAL"  # read by jupyterhub-singleuser


def device_requests(allocation: Allocation) -> list[DeviceRequest]:
    """Docker's request for the allocated devices (none for none). Here, not in gpus.py:
    the playbooks' filters import gpus.py, and the docker package would cost each of their
    tasks ~0.1 s."""
    if not allocation.device_ids:
        return []
    ids = list(allocation.device_ids)
    return [DeviceRequest(driver="nvidia", device_ids=ids, capabilities=[["gpu"]])]


class GpuhubSpawner(DockerSpawner):
    """Spawns the profile a user chose (only from the allow-list in the settings), with
    the limits of their groups and profile, into a home the hub made for them first,
    confined as gpuhub_hub.hardening describes."""

    gpuhub_settings = Instance(Settings, help="The parsed gpuhub settings file").tag(config=True)
    # One allocator (and lock) for every spawner of this hub.
    _gpu_allocator: GpuAllocator | None = None

    @property
    def group_names(self) -> list[str]:
        return sorted(group.name for group in self.user.groups)

    @default("options_form")
    def _gpuhub_options_form(self) -> Any:  # noqa: ANN401 (traitlets accepts str or callable)
        return GpuhubSpawner.render_options_form

    @default("options_from_form")
    def _gpuhub_options_from_form(self) -> Any:  # noqa: ANN401
        return GpuhubSpawner.parse_options_form

    def render_options_form(self) -> str:
        """A profile picker, or nothing (spawn at once) when only one profile is open."""
        profiles = allowed_profiles(self.gpuhub_settings.spawner, self.group_names)
        if len(profiles) < 2:
            return ""
        options = "\n".join(
            f'<option value="{html.escape(p.slug)}"{" selected" if i == 0 else ""}>'
            f"{html.escape(p.display_name)}"
            f"{' - ' + html.escape(p.description) if p.description else ''}</option>"
            for i, p in enumerate(profiles)
        )
        return (
            '<label for="profile">Server profile</label>\n'
            f'<select class="form-control" name="profile" id="profile">\n{options}\n</select>'
        )

    @staticmethod
    def parse_options_form(formdata: dict[str, list[str]]) -> dict[str, str]:
        choice = formdata.get("profile", [""])[0]
        return {"profile": choice} if choice else {}

    def apply_profile(self) -> Profile:
        """Resolve the chosen profile and set image, limits, volumes and environment.

        Anything else in user_options (an `image` sent through the REST API, say) is
        dropped: users choose among profiles, never arbitrary images.
        """
        spawner = self.gpuhub_settings.spawner
        try:
            profile = choose_profile(spawner, self.group_names, self.user_options.get("profile"))
        except PermissionError as err:
            raise web.HTTPError(403, str(err)) from None
        limits = effective_limits(spawner, self.group_names, profile)
        self.user_options = {"profile": profile.slug}
        self.image = profile.image
        self.mem_limit = limits.mem_limit
        self.cpu_limit = limits.cpu_limit
        # The server reports its activity (a busy kernel's too: the images' gpuhub_busy
        # extension) as often as the hub collects it, not every 5 minutes: the idle culler
        # must never act on a report older than its own timeout.
        interval = self.gpuhub_settings.hub.last_activity_interval
        self.environment[ACTIVITY_VARIABLE] = str(interval)
        volumes: dict[str, dict[str, str]] = {
            self.home: {"bind": spawner.notebook_dir, "mode": "rw"}
        }
        if spawner.shared_dir:
            volumes[spawner.shared_dir] = {"bind": spawner.shared_mount, "mode": "ro"}
        if spawner.packages_dir:
            volumes[spawner.packages_dir] = {"bind": spawner.packages_mount, "mode": "rw"}
            self.environment.update(
                {"PIP_TARGET": spawner.packages_mount, "PYTHONPATH": spawner.packages_mount}
            )
        volumes[str(self.token_file)] = {"bind": hardening.TOKEN_MOUNT, "mode": "ro"}
        self.volumes = volumes
        self.extra_create_kwargs.update(
            {"user": f"{spawner.user_uid}:{spawner.user_gid}", "entrypoint": hardening.ENTRYPOINT}
        )
        self.extra_host_config = {
            **self.extra_host_config,
            **hardening.host_config(spawner.pids_limit),
        }
        # Labels let playbooks (teardown, the GPU allocator) find user containers.
        labels = self.extra_create_kwargs.setdefault("labels", {})
        labels.update(self.server_labels(profile))
        self.apply_gpus(Allocation((), exclusive=False))
        return profile

    def server_labels(self, profile: Profile) -> dict[str, str]:
        """Whose server a container is (and their groups now, for the GPU quotas), and
        its profile."""
        return {
            USER_LABEL: self.user.name,
            SERVER_LABEL: self.name,
            GROUPS_LABEL: ",".join(self.group_names),
            "gpuhub.profile": profile.slug,
        }

    def apply_gpus(self, allocation: Allocation) -> None:
        """Hand the allocated devices to Docker and label the container with them."""
        labels = self.extra_create_kwargs.setdefault("labels", {})
        for key in (LABEL, SHARED_LABEL, DESCRIPTION_LABEL):
            labels.pop(key, None)
        labels.update(allocation.labels())
        host_config = {k: v for k, v in self.extra_host_config.items() if k != "device_requests"}
        self.environment.pop(GPUS_VARIABLE, None)
        if allocation.device_ids:
            host_config["device_requests"] = device_requests(allocation)
            # What the server holds, for its user (os.environ, a terminal, the Lab's
            # GPU dashboards in the gpu image) and for status.yml (the label).
            held = describe(allocation.device_ids, self.gpuhub_settings.spawner.gpus)
            self.environment[GPUS_VARIABLE] = held
            labels[DESCRIPTION_LABEL] = held
        self.extra_host_config = host_config

    @property
    def home(self) -> str:
        """The user's home on the host."""
        return str(home_path(self.gpuhub_settings.spawner.home_root, self.user.name))

    async def prepare_home(self) -> None:
        """Make the home before Docker would (see homes.py). A home in the legacy layout
        moves into its work/ folder now, unless another server of its user still has it
        mounted the old way: then this one mounts it the old way too."""
        spawner = self.gpuhub_settings.spawner
        ids = (spawner.user_uid, spawner.user_gid)
        if await asyncio.to_thread(is_legacy, spawner.legacy_homes_dir, self.user.name):
            running = await self.docker(
                "containers", filters={"label": f"{USER_LABEL}={self.user.name}"}
            )
            if running:
                self.volumes[self.home]["bind"] = f"{spawner.notebook_dir}/{WORK}"
                self.log.info("%s: legacy home mounted at ~/%s (a server runs)", self.home, WORK)
                return
            await asyncio.to_thread(
                migrate_home, spawner.home_root, spawner.legacy_homes_dir, self.user.name, *ids
            )
            self.log.info("%s: legacy home moved into its %s/ folder", self.home, WORK)
        inner = self.inner_mount_points()
        if await asyncio.to_thread(ensure_home, spawner.home_root, self.user.name, *ids, inner):
            self.log.info("Created home %s", self.home)

    def inner_mount_points(self) -> tuple[str, ...]:
        """Other mounts inside the home (shared/), relative to it: ensure_home makes them
        folders the user owns before Docker would make them root's."""
        top = self.gpuhub_settings.spawner.notebook_dir + "/"
        return tuple(
            bind["bind"].removeprefix(top)
            for source, bind in self.volumes.items()
            if source != self.home and bind["bind"].startswith(top)
        )

    @property
    def token_file(self) -> Path:
        return Path(self.gpuhub_settings.spawner.tokens_dir) / self.container_name

    def get_env(self) -> dict[str, str]:
        """The environment minus the API token: the container gets it from a file."""
        return hardening.without_token(super().get_env())

    async def get_command(self) -> list[str]:
        """The image's entrypoint and command, run by hardening.ENTRYPOINT."""
        config = (await self.docker("inspect_image", self.image))["Config"]
        command = self.cmd or config.get("Cmd") or []
        return [*(config.get("Entrypoint") or []), *command, *self.get_args()]

    @property
    def gpu_allocator(self) -> GpuAllocator:
        if GpuhubSpawner._gpu_allocator is None:
            spawner = self.gpuhub_settings.spawner
            # A container still `created` after the start timeout never started.
            GpuhubSpawner._gpu_allocator = GpuAllocator(spawner.gpus, spawner.start_timeout)
        return GpuhubSpawner._gpu_allocator

    async def _gpu_containers(self) -> list[dict[str, Any]]:
        return await self.docker("containers", all=True, filters={"label": LABEL})

    async def start(self) -> Any:  # noqa: ANN401 (whatever DockerSpawner returns)
        problem = server_name_problem(self.name)
        if problem:
            raise web.HTTPError(400, problem)
        profile = self.apply_profile()
        await self.prepare_home()
        await self.provide_token()
        started = await self.start_profile(profile)
        # Who, which server, their groups, the profile and the GPUs it holds exclusively.
        gpus = len(devices_held(self.extra_create_kwargs.get("labels") or {}))
        groups = tuple(self.group_names)
        line = usage.Event(
            usage.START, usage.now_iso(), self.user.name, self.name, groups, profile.slug, gpus
        )
        await asyncio.to_thread(self.record_usage, line)
        await self.wait_answering(started)
        return started

    async def wait_answering(self, started: Any) -> None:  # noqa: ANN401 (start's answer)
        """Return once the new server answers the /api the hub waits for, or after
        http_timeout (then the hub's own wait decides): the hub's first probe finds it up
        instead of backing off for seconds (ready.py)."""
        if not isinstance(started, tuple) or self.server is None:
            return
        ip, port = started
        url = f"http://{ip}:{port}{self.server.base_url}api"
        took = await ready.wait_answering(url, self.http_timeout)
        if took is not None:
            self.log.info("%s answers %.2f s after its start", self.container_name, took)

    def record_usage(self, line: usage.Event) -> None:
        """A line in the usage ledger (usage.py), if the hub keeps one; never fails the
        start or stop it records."""
        path = self.gpuhub_settings.spawner.usage_file
        if not path:
            return
        try:
            usage.record(path, line)
        except OSError as err:
            self.log.error("usage ledger %s: %s", path, err)

    def run_post_stop_hook(self) -> Any:  # noqa: ANN401 (whatever the hook returns)
        """After every stop (one host and cluster mode alike): the ledger's stop line."""
        self.record_usage(usage.Event(usage.STOP, usage.now_iso(), self.user.name, self.name))
        return super().run_post_stop_hook()

    async def provide_token(self) -> None:
        """The server's API token in the file the container mounts (hardening.py)."""
        spawner = self.gpuhub_settings.spawner
        await asyncio.to_thread(
            hardening.write_token,
            self.token_file,
            self.api_token,
            spawner.user_uid,
            spawner.user_gid,
        )

    def cpu_fallback(self) -> str:
        """The CPU profile a user is pointed to when no GPU is free ('' if none)."""
        spawner = self.gpuhub_settings.spawner
        cpu = next(
            (p for p in allowed_profiles(spawner, self.group_names) if p.gpu.mode == "none"), None
        )
        return cpu.display_name if cpu else ""

    async def start_profile(self, profile: Profile) -> Any:  # noqa: ANN401
        """Start the server, holding the profile's GPUs from the allocator until its
        container exists."""
        if profile.gpu.mode == "none":
            return await super().start()
        charge = await self.gpu_charge()
        try:
            async with self.gpu_allocator.reserve(
                profile.gpu, self._gpu_containers, self.cpu_fallback(), charge
            ) as allocation:
                self.apply_gpus(allocation)
                self.log.info("%s gets GPUs %s", self.user.name, ",".join(allocation.device_ids))
                # Inside the lock until the container exists with its label.
                return await super().start()
        except QuotaExceeded as err:
            self.log.info("%s refused: %s", self.user.name, err)
            raise web.HTTPError(403, str(err)) from None
        except NoGpuFree as err:
            raise web.HTTPError(503, str(err)) from None

    async def gpu_charge(self) -> Charge:
        """Who this spawn's GPUs count against, with the quotas as the file says now."""
        path = self.gpuhub_settings.spawner.gpu_quotas_file
        try:
            quotas = await asyncio.to_thread(load_quotas, path)
        except SettingsError as err:
            self.log.error("GPU quotas ignored: %s", err)
            raise web.HTTPError(500, "the hub's GPU quotas cannot be read: ask an admin") from None
        return Charge(self.user.name, tuple(self.group_names), quotas)

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        if self.remove:
            self.token_file.unlink(missing_ok=True)
