"""The converged test host the end-to-end tests run against."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import yaml
from hubclient import HubClient

REPO = Path(__file__).resolve().parents[2]
RECAP = re.compile(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", re.M)
UserFactory = Callable[..., HubClient]
ADMIN_PASSWORDS = "/srv/jupyterhub/state/admin-passwords"
# The secrets the jupyterhub role generates into /srv/jupyterhub/state (root, 0600).
SECRETS = (
    "jupyterhub_cookie_secret",
    "crypt_key",
    "proxy_auth_token",
    "gpuhub_admin_token",
    "metrics_token",
)


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

    def add_user(self, name: str, password: str, *options: str) -> str:
        """Add an approved user with `password` the way an admin does (gpuhub-admin; the
        password travels on stdin, never on a command line)."""
        command = " ".join(["gpuhub-admin", "user", "add", name, "--password-stdin", *options])
        return self.run(
            "sh",
            "-c",
            f'printf "%s\\n" "$PW" | docker exec -i jupyterhub {command}',
            env={"PW": password},
        )

    def admin_password(self, name: str = "admin") -> str:
        """An admin's first password, as site.yml generated it (root 0600 on the host)."""
        return self.run("cat", f"{ADMIN_PASSWORDS}/{name}").strip()

    def scenario_var(self, name: str) -> Any:  # noqa: ANN401 (YAML)
        """A variable the Molecule scenario set for this host (its inventory host_vars):
        what the test asked for, not what the stack rendered from it."""
        path = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / "host_vars" / self.name
        return yaml.safe_load(path.read_text())[name]

    def user_ids(self) -> tuple[str, str]:
        """The uid and gid user containers run as, as the scenario set them."""
        return (
            str(self.scenario_var("jupyterhub_storage_user_uid")),
            str(self.scenario_var("jupyterhub_storage_user_gid")),
        )

    def settings(self) -> dict[str, Any]:
        return yaml.safe_load(self.run("cat", "/srv/jupyterhub/config/settings.yaml"))

    def converge(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the scenario's converge again (Molecule's own inventory and settings)."""
        return self.playbook("molecule/default/converge.yml", *args)

    def playbook(self, path: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a playbook of the repository against this host, as an admin would."""
        inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
        return subprocess.run(
            ["ansible-playbook", "-i", str(inventory), path, *args],
            cwd=REPO,
            # Plain text whatever Molecule set, so tests can read the output.
            env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
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


def size_in_bytes(size: str) -> int:
    """A size as the settings write it (768M, 2G) in bytes."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    return int(float(size[:-1]) * units[size[-1]])


def new_password() -> str:
    return "e2e-" + secrets.token_urlsafe(12)
