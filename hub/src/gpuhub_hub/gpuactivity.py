"""GPU utilisation as activity: a hub-managed service (configure.py starts it on a host
with GPUs) that reads every GPU's utilisation with nvidia-smi every `--every` seconds and
reports each server holding a GPU busier than `--busy-percent` as active to the hub
(POST /hub/api/users/<name>/activity, scope users:activity). A training run that prints
nothing, or one started from a terminal, keeps its server from the idle culler.

It runs in the hub container, which the toolkit gives nvidia-smi and NVML only (device
request with the `utility` capability): the user's container is never asked. A server's
GPUs are the ones its container's labels say it holds exclusively (gpus.py). Not counted:
shared GPUs (no one holds them) and MIG devices (nvidia-smi reports no utilisation for
them, `[N/A]`); there a busy kernel is still activity.

    python -m gpuhub_hub.gpuactivity --every 60 --busy-percent 10
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import docker
import requests

from .gpus import LABEL, SERVER_LABEL, USER_LABEL, devices_held

QUERY = ("--query-gpu=uuid,utilization.gpu", "--format=csv,noheader,nounits")
log = logging.getLogger("gpuhub.gpuactivity")


def parse_utilization(text: str) -> dict[str, int]:
    """Device UUID -> utilisation (%) from nvidia-smi's `uuid,utilization.gpu[,...]` CSV;
    devices without a reading (`[N/A]`, `[Not Supported]`) are left out."""
    readings = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 2 or not parts[0]:
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        if parts[1].isdigit():
            readings[parts[0]] = int(parts[1])
    return readings


def busy_servers(
    readings: dict[str, int], containers: Sequence[dict[str, Any]], busy_percent: int
) -> dict[str, dict[str, int]]:
    """user -> {server name: its busiest GPU's %} for running containers holding a GPU at
    or above `busy_percent` (containers: the Docker API's `ps` records)."""
    busy: dict[str, dict[str, int]] = {}
    for container in containers:
        labels = container.get("Labels") or {}
        user = labels.get(USER_LABEL)
        if not user or container.get("State") != "running":
            continue
        busiest = max((readings[d] for d in devices_held(labels) if d in readings), default=-1)
        if busiest >= busy_percent:
            busy.setdefault(user, {})[labels.get(SERVER_LABEL, "")] = busiest
    return busy


def activity(servers: Sequence[str], now: datetime) -> dict[str, Any]:
    """The body of the hub's activity API for these servers of one user."""
    stamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"last_activity": stamp, "servers": {name: {"last_activity": stamp} for name in servers}}


def read_utilization(nvidia_smi: str) -> dict[str, int]:
    result = subprocess.run(
        [nvidia_smi, *QUERY], capture_output=True, text=True, timeout=30, check=True
    )
    return parse_utilization(result.stdout)


class Reporter:
    """One round: read, match, report. The hub's API from the service's environment."""

    def __init__(
        self,
        list_containers: Callable[[], list[dict[str, Any]]],
        nvidia_smi: str = "nvidia-smi",
        busy_percent: int = 10,
    ) -> None:
        self.list_containers = list_containers
        self.nvidia_smi = nvidia_smi
        self.busy_percent = busy_percent
        self.api = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {os.environ['JUPYTERHUB_API_TOKEN']}"

    def round(self, now: datetime | None = None) -> dict[str, dict[str, int]]:
        busy = busy_servers(
            read_utilization(self.nvidia_smi), self.list_containers(), self.busy_percent
        )
        for user, servers in sorted(busy.items()):
            body = activity(sorted(servers), now or datetime.now(UTC))
            reply = self.session.post(
                f"{self.api}/users/{quote(user)}/activity", json=body, timeout=30
            )
            if reply.ok:
                log.info("GPU activity of %s: %s", user, servers)
            else:
                log.warning(
                    "GPU activity of %s refused: %s %s", user, reply.status_code, reply.text
                )
        return busy


def gpu_containers(client: docker.APIClient) -> Callable[[], list[dict[str, Any]]]:
    """The running containers holding GPUs, from this engine (one client for every round)."""
    return lambda: list(client.containers(filters={"label": LABEL, "status": "running"}))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=float, default=60, help="seconds between readings")
    parser.add_argument("--busy-percent", type=int, default=10, help="busy from this %% on")
    parser.add_argument("--nvidia-smi", default="nvidia-smi", help="the nvidia-smi to run")
    parser.add_argument("--once", action="store_true", help="one round, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s gpu-activity] %(message)s"
    )
    client = docker.APIClient(**docker.utils.kwargs_from_env())
    reporter = Reporter(gpu_containers(client), args.nvidia_smi, args.busy_percent)
    failing = ""
    while True:
        try:
            reporter.round()
            failing = ""
        except (
            OSError,
            ValueError,
            subprocess.SubprocessError,
            requests.RequestException,
            docker.errors.DockerException,
        ) as err:
            if str(err) != failing:  # once per kind of failure, not every round
                log.error("GPU activity not read: %s", err)
            failing = str(err)
        if args.once:
            return
        time.sleep(args.every)


if __name__ == "__main__":
    main()
