"""What every user container gets, whatever its profile or image.

- It runs as the settings' uid:gid (1000:100), never as the image's USER, with every
  capability dropped, `no-new-privileges` and a pids limit (a fork bomb stops there).
- It survives a Docker daemon restart (live-restore), so it is not an AutoRemove container.
- Its JupyterHub API token is not in the container's configuration: `docker inspect`
  would show an environment variable to anyone who can read the Docker API. The hub
  writes the token to a file (owner uid, mode 0400) that is bind-mounted read-only, and
  a small entrypoint exports it before it runs the image's own entrypoint and command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TOKEN_MOUNT = "/run/secrets/jupyterhub_api_token"  # noqa: S105 (a path, not a secret)
TOKEN_VARIABLES = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")
# `sh -c SCRIPT NAME ARG...` runs SCRIPT with $0=NAME and "$@"=ARG...: the image's own
# entrypoint and command. Without a readable token file the server does not start.
ENTRYPOINT = [
    "/bin/sh",
    "-c",
    f'JUPYTERHUB_API_TOKEN="$(cat {TOKEN_MOUNT})" && export JUPYTERHUB_API_TOKEN && exec "$@"',
    "gpuhub-start",
]


def host_config(pids_limit: int) -> dict[str, Any]:
    """Docker HostConfig keys (docker SDK names) that confine a user container."""
    return {
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": pids_limit,
        # Docker 20.10 deletes AutoRemove containers when its daemon restarts, even with
        # live-restore. DockerSpawner (remove=True) removes a stopped server itself.
        "auto_remove": False,
    }


def without_token(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in TOKEN_VARIABLES}


def write_token(path: Path, token: str, uid: int, gid: int) -> None:
    """Write `token` to `path` in place (a running container keeps the same inode
    mounted; a reused container reads the new token when it starts again)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o400)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o400)
        os.write(fd, token.encode())
    finally:
        os.close(fd)
