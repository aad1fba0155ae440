"""The converged test host the end-to-end tests run against."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests
import yaml
from gpuhub_hub.client import HubError
from hubclient import HubClient
from shared_facts import REPO, default, hub_image, jupyterhub_var

RECAP = re.compile(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", re.M)
UserFactory = Callable[..., HubClient]
# The secrets the jupyterhub role generates into <root>/state (root, 0600).
SECRETS = (
    "jupyterhub_cookie_secret",
    "crypt_key",
    "proxy_auth_token",
    "gpuhub_admin_token",
    "metrics_token",
)
BACKUP_CRON_FILE = "/etc/cron.d/gpuhub-backup"
RESTIC = "/usr/local/sbin/gpuhub-restic"  # restic with the host's repository (backup role)
BACKUP_ENV = "/etc/gpuhub-backup/env"  # its environment: repository, password, CA
BACKUP_PASSWORD_FILE = "/etc/gpuhub-backup/restic-password"  # noqa: S105 (a path, not a secret)


# The culler test's busy user: a server whose kernel runs a silent cell (conftest, test_hub).
BUSY = "busy"


class TestHost:
    """The systemd test-host container the stack was converged into."""

    def __init__(self, name: str) -> None:
        self.container = docker.from_env().containers.get(name)
        self.name = name

    @property
    def address(self) -> str:
        networks = self.container.attrs["NetworkSettings"]["Networks"]
        return next(iter(networks.values()))["IPAddress"]

    def run(self, *command: str, check: bool = True, env: dict[str, str] | None = None) -> str:
        code, output = self.container.exec_run(list(command), environment=env)
        text = output.decode(errors="replace")
        if check and code != 0:
            raise AssertionError(f"{command} exited {code}: {text}")
        return text

    def put_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write `text` to `path` on the host (root's), making its folder."""
        data = text.encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            entry = tarfile.TarInfo(Path(path).name)
            entry.size, entry.mode = len(data), mode
            tar.addfile(entry, io.BytesIO(data))
        self.run("mkdir", "-p", str(Path(path).parent))
        assert self.container.put_archive(str(Path(path).parent), archive.getvalue())

    @property
    def enter(self) -> list[str]:
        """A command prefix that runs a program of this machine inside the host's network
        (the servers the sign-in tests stand up: the hub reaches them at the host's address)."""
        self.container.reload()
        return ["nsenter", "-t", str(self.container.attrs["State"]["Pid"]), "-n"]

    def backup_command(self) -> str:
        """The command of the nightly backup's cron entry, exactly as cron runs it (root)."""
        (line,) = [
            line
            for line in self.run("cat", BACKUP_CRON_FILE).splitlines()
            if line and line[0].isdigit()
        ]
        fields = line.split()
        assert fields[5] == "root", line
        return " ".join(fields[6:])

    def fact(self, name: str) -> Any:  # noqa: ANN401 (YAML)
        """A shared fact or jupyterhub role variable as this scenario has it: the scenario's
        own value where it sets one, the role's default otherwise (tests/shared_facts.py)."""
        host_vars = self.host_vars()
        return host_vars[name] if name in host_vars else default(name)

    @property
    def root(self) -> str:
        """Where gpuhub keeps everything on the host (homes, state, config, archives)."""
        return str(self.fact("gpuhub_root"))

    def path(self, *parts: str) -> str:
        """A path under the root: host.path("home", "alice")."""
        return "/".join([self.root, *parts])

    @property
    def hub(self) -> str:
        """The hub's container."""
        return str(self.fact("gpuhub_hub_container"))

    @property
    def proxy(self) -> str:
        """The proxy's container."""
        return str(self.fact("gpuhub_proxy_container"))

    @property
    def hub_api(self) -> str:
        """host:port where containers on the users network reach the hub."""
        return f"{self.hub}:{self.fact('gpuhub_hub_port')}"

    @property
    def proxy_api(self) -> str:
        """host:port of the proxy's REST API (the hub's only)."""
        return f"{self.proxy}:{jupyterhub_var('__jupyterhub_proxy_api_port')}"

    @property
    def users_network(self) -> str:
        """The user containers' Docker network."""
        return str(self.fact("gpuhub_users_network"))

    @property
    def hub_image(self) -> str:
        """The hub image tag the hub container runs."""
        return hub_image(self.fact("gpuhub_hub_image_name"))

    def server_of(self, user: str) -> str:
        """The container of `user`'s running default server ('' when none runs)."""
        return self.run(
            "docker", "ps", "--filter", f"label=gpuhub.user={user}", "--format", "{{.Names}}"
        ).strip()

    def make_home(self, user: str, files: dict[str, str]) -> None:
        """A home with `files` (path in the home: text), as the hub and the storage role
        make homes: folders 0750 and files owned by the container user."""
        home = self.path("home", user)
        uid, gid = self.user_ids()
        script = [f"install -d -m 0750 -o {uid} -g {gid} {home}"]
        for index, name in enumerate(files):
            folder = str(Path(home, name).parent)
            script += [
                f"install -d -o {uid} -g {gid} {folder}",
                f'printf %s "$F{index}" > {home}/{name}',
                f"chown {uid}:{gid} {home}/{name}",
            ]
        env = {f"F{index}": text for index, text in enumerate(files.values())}
        self.run("sh", "-ec", "\n".join(script), env=env)

    def add_user(self, name: str, password: str, *options: str) -> str:
        """Add an approved user with `password` the way an admin does (gpuhub-admin; the
        password travels on stdin, never on a command line)."""
        command = " ".join(["gpuhub-admin", "user", "add", name, "--password-stdin", *options])
        return self.run(
            "sh",
            "-c",
            f'printf "%s\\n" "$PW" | docker exec -i {self.hub} {command}',
            env={"PW": password},
        )

    def admin_password(self, name: str = "admin") -> str:
        """An admin's first password, as site.yml generated it (root 0600 on the host)."""
        return self.run("cat", self.path("state", "admin-passwords", name)).strip()

    def scenario_var(self, name: str) -> Any:  # noqa: ANN401 (YAML)
        """A variable the Molecule scenario set for this host (its inventory host_vars):
        what the test asked for, not what the stack rendered from it."""
        return self.host_vars()[name]

    def host_vars(self) -> dict[str, Any]:
        """The scenario's inventory variables for this host."""
        path = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "host_vars" / self.name
        return yaml.safe_load(path.read_text()) or {}

    def user_ids(self) -> tuple[str, str]:
        """The uid and gid user containers run as, as the scenario set them (or the
        defaults where it did not)."""
        return (
            str(self.fact("jupyterhub_storage_user_uid")),
            str(self.fact("jupyterhub_storage_user_gid")),
        )

    def settings(self) -> dict[str, Any]:
        return yaml.safe_load(self.run("cat", self.path("config", "settings.yaml")))

    def converge(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the scenario's converge again (Molecule's own inventory and settings)."""
        return self.playbook("molecule/default/converge.yml", *args)

    def playbook(
        self, path: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a playbook of the repository against this host, as an admin would (with
        `env` added to the environment)."""
        inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
        return subprocess.run(
            ["ansible-playbook", "-i", str(inventory), path, *args],
            cwd=REPO,
            # Plain text whatever Molecule set, so tests can read the output.
            env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", **(env or {})},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )


def recap(result: subprocess.CompletedProcess[str]) -> tuple[int, int]:
    """(changed, failed) from a playbook run's PLAY RECAP."""
    rows = RECAP.findall(result.stdout)
    assert rows, f"no PLAY RECAP in:\n{result.stdout}\n{result.stderr}"
    return sum(int(c) for c, _ in rows), sum(int(f) for _, f in rows)


def ok(result: subprocess.CompletedProcess[str], changed: int | None = None) -> str:
    """The output of a playbook run that succeeded (with `changed` changes, if given)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    if changed is not None:
        assert recap(result)[0] == changed, result.stdout[-3000:]
    return result.stdout


def flat(result: subprocess.CompletedProcess[str]) -> str:
    """A playbook run's whole output (failed tasks may print to stderr, depending on
    ANSIBLE_DISPLAY_FAILED_STDERR), every run of whitespace made one space: Ansible wraps
    long messages wherever the line width falls."""
    return " ".join((result.stdout + result.stderr).split())


def changed_tasks(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The tasks a playbook run reported as changed, for assertion messages."""
    found, task = [], ""
    for line in result.stdout.splitlines():
        if line.startswith("TASK ["):
            task = line.split("]")[0] + "]"
        elif line.startswith("changed:"):
            found.append(f"{task} {line}")
    return found


ADDED = re.compile(r"Added to the repository: ([\d.]+) (B|KiB|MiB|GiB)")
RESTIC_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def restic_added_bytes(log: str) -> int | None:
    """What the last `restic backup` in `log` says its snapshot added to the repository.
    (Not the change in repository size: the backup command's own `forget --prune` removes
    older snapshots' data in the same run.)"""
    found = ADDED.findall(log)
    if not found:
        return None
    value, unit = found[-1]
    return int(float(value) * RESTIC_UNITS[unit])


def memory_events(host: TestHost, container: str) -> dict[str, int]:
    """The container's memory cgroup: its limit, how often usage hit that limit (only
    the cgroup's own limit counts, never a host-wide shortage) and its OOM kills."""
    script = (
        "if [ -f /sys/fs/cgroup/memory.events ]; then "
        "echo limit $(cat /sys/fs/cgroup/memory.max); "
        "sed -n 's/^oom /limit_hits /p; /^oom_kill /p' /sys/fs/cgroup/memory.events; "
        "else echo limit $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); "
        "echo limit_hits $(cat /sys/fs/cgroup/memory/memory.failcnt); "
        "grep '^oom_kill ' /sys/fs/cgroup/memory/memory.oom_control; fi"
    )
    events = host.run("docker", "exec", container, "sh", "-c", script)
    return {key: int(value) for key, value in (line.split() for line in events.splitlines())}


def size_in_bytes(size: str) -> int:
    """A size as the settings write it (768M, 2G) in bytes."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    return int(float(size[:-1]) * units[size[-1]])


def new_password() -> str:
    return "e2e-" + secrets.token_urlsafe(12)


IDLER = "idler"  # the culler test's user
WARNING_TEXT = re.compile(r"Your server (\S+) will be stopped at ([0-9:]+ UTC)[^<]*")


@dataclass
class Idler:
    """The idle server: when it was ready, and what its user saw meanwhile (time.monotonic
    of the first home page with a cull warning, that warning, what JupyterLab's extension
    was told at that moment, when the server was gone)."""

    ready: float
    warned_at: float | None = None
    warning: str = ""
    lab_answer: dict[str, Any] | None = None
    gone_at: float | None = None

    def watch(
        self, host: TestHost, client: HubClient, every: float = 5, limit: float = 1800
    ) -> None:
        """As its user would: look at the hub's home page until the server is gone."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                page = client.session.get(
                    f"{client.url}/hub/home", verify=client.verify, timeout=30
                )
                seen = WARNING_TEXT.search(page.text)
                if seen and self.warned_at is None:
                    self.warned_at, self.warning = time.monotonic(), seen.group(0)
                    self.lab_answer = json.loads(lab_warning(host, client))
                if client.server_state(IDLER) is None:
                    self.gone_at = time.monotonic()
                    return
            except (requests.RequestException, HubError, AssertionError, ValueError):
                pass  # the hub restarting: look again
            time.sleep(every)


def lab_warning(host: TestHost, client: HubClient) -> str:
    """What JupyterLab's gpuhub-cull-warning extension gets from the idler's server (its
    GET /user/idler/gpuhub/cull, asked inside the container, not through the proxy,
    whose traffic would be activity), with the user's token."""
    code = (
        "import sys, urllib.request as u; "
        "r = u.Request(sys.argv[1], headers={'Authorization': 'token ' + sys.argv[2]}); "
        "print(u.urlopen(r, timeout=30).read().decode())"
    )
    url = f"http://127.0.0.1:8888/user/{IDLER}/gpuhub/cull"
    return host.run(
        "docker", "exec", f"jupyter-{IDLER}", "python3", "-c", code, url, client.token or ""
    )
