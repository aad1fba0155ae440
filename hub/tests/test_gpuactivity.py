"""GPU utilisation as activity (gpuhub_hub.gpuactivity): nvidia-smi outputs captured on a
real H200 (tests/fixtures/nvidia-smi/), matched to servers by their containers' labels, and
reported to a real hub with the token the hub gives its gpu-activity service."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from gpuhub_hub import gpuactivity
from gpuhub_hub.configure import GPU_ACTIVITY_SERVICE
from gpuhub_hub.gpus import LABEL, SERVER_LABEL, SHARED_LABEL, USER_LABEL
from hubsettings import CPU_PROFILE, GPU_PROFILE, SettingsFactory
from livehub import LiveHub, gpuhub_admin, live_hub
from test_config import load_hub

FIXTURES = Path(__file__).resolve().parents[2] / "tests/fixtures/nvidia-smi"
H200 = "GPU-15c292cc-b756-0f1f-c222-ead388262fde"  # the captured machine's GPU
ADMIN = {"Authorization": "token " + "t" * 64}  # livehub's gpuhub-admin token


def capture(name: str) -> str:
    return (FIXTURES / name).read_text()


def container(user: str, devices: str, server: str = "", state: str = "running") -> dict[str, Any]:
    """A record as the Docker API's container list gives it."""
    labels = {USER_LABEL: user, SERVER_LABEL: server, LABEL: devices}
    return {"Names": [f"/jupyter-{user}"], "State": state, "Labels": labels}


def test_real_readings_idle_busy_and_mig() -> None:
    assert gpuactivity.parse_utilization(capture("utilization-idle-h200.csv")) == {H200: 0}
    assert gpuactivity.parse_utilization(capture("utilization-busy-h200.csv")) == {H200: 100}
    # MIG mode: nvidia-smi has no utilisation to give ([N/A]): no reading, not busy.
    assert gpuactivity.parse_utilization(capture("utilization-a100-mig.csv")) == {}
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        gpuactivity.parse_utilization("no commas here")


def test_servers_holding_a_busy_gpu_are_busy() -> None:
    readings = {H200: 100, "GPU-idle": 3, "GPU-warm": 10}
    containers = [
        container("ada", H200),
        container("bob", "GPU-idle"),
        container("cy", "GPU-idle,GPU-warm", server="train"),  # its busiest GPU counts
        container("dee", H200, state="exited"),  # no longer running
        {"State": "running", "Labels": {USER_LABEL: "eve", SHARED_LABEL: H200}},  # shared
    ]
    busy = gpuactivity.busy_servers(readings, containers, busy_percent=10)
    assert busy == {"ada": {"": 100}, "cy": {"train": 10}}
    assert gpuactivity.busy_servers(readings, containers, busy_percent=11) == {"ada": {"": 100}}


def test_the_hub_runs_the_service_when_the_role_asks(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    gpus = {"profiles": [CPU_PROFILE, GPU_PROFILE], "gpus": [{"uuid": H200, "name": "H200"}]}
    culler = {"gpu_every": 30, "gpu_activity": True}
    app = load_hub(monkeypatch, settings_file(culler=culler, spawner=gpus))
    (service,) = [s for s in app.services if s["name"] == GPU_ACTIVITY_SERVICE]
    assert "--every=30" in service["command"]
    assert "--busy-percent=10" in service["command"]
    (role,) = [r for r in app.load_roles if r["name"] == "gpu-activity"]
    assert role["scopes"] == ["users:activity"]
    app = load_hub(monkeypatch, settings_file(spawner={"profiles": [CPU_PROFILE]}))
    assert GPU_ACTIVITY_SERVICE not in {s["name"] for s in app.services}


@pytest.fixture(scope="module")
def gpu_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    spawner = {"profiles": [CPU_PROFILE, GPU_PROFILE], "gpus": [{"uuid": H200, "name": "H200"}]}
    with live_hub(
        tmp_path_factory.mktemp("gpuhub"),
        culler={"enabled": True, "gpu_activity": True},
        spawner=spawner,
    ) as hub:
        gpuhub_admin(hub, "user", "add", "ada")
        yield hub


def server_activity(hub: LiveHub, user: str) -> datetime | None:
    model = requests.get(
        f"{hub.url}/hub/api/users/{user}",
        params={"include_stopped_servers": "1"},
        headers=ADMIN,
        timeout=10,
    ).json()
    stamp = model["servers"][""]["last_activity"]
    return stamp and datetime.fromisoformat(stamp)


def test_a_busy_gpu_is_reported_with_the_services_own_token(
    gpu_hub: LiveHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"{gpu_hub.url}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", gpu_hub.service_token("gpuhub_hub.gpuactivity"))
    smi = tmp_path / "nvidia-smi"  # prints what the H200 printed
    holders = [container("ada", H200)]
    before = server_activity(gpu_hub, "ada")

    def reporter(reading: str) -> gpuactivity.Reporter:
        smi.write_text(f"#!/bin/sh\ncat {FIXTURES / reading}\n")
        smi.chmod(0o755)
        return gpuactivity.Reporter(lambda: holders, str(smi), busy_percent=10)

    assert reporter("utilization-idle-h200.csv").round() == {}
    assert server_activity(gpu_hub, "ada") == before
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    assert reporter("utilization-busy-h200.csv").round(now) == {"ada": {"": 100}}
    assert server_activity(gpu_hub, "ada") == now
    assert "GPU activity of ada" not in gpu_hub.log.read_text()  # its own log, not the hub's
    assert os.environ["JUPYTERHUB_API_TOKEN"] != ADMIN["Authorization"].split()[1]
