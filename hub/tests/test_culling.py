"""The idle culler's GPU rules (gpuhub_hub.culling): its arbiter decides on the server
models the hub's API gives the culler, and the hub starts the real culler with them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpuhub_hub import culling
from hubsettings import SettingsFactory
from jupyterhub_idle_culler import IdleCuller
from test_config import load_hub

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RULES = culling.CullRules(frozenset({"gpu"}), gpu_timeout=600, gpu_max_age=7200)
CPU_LIMIT = 3600  # the culler's own --timeout


def server(profile: str, started_minutes_ago: float = 30) -> dict[str, object]:
    started = (NOW - timedelta(minutes=started_minutes_ago)).isoformat()
    return {"name": "", "user_options": {"profile": profile}, "started": started}


@pytest.mark.parametrize(
    ("profile", "inactive_minutes", "started_minutes_ago", "culled"),
    [
        ("cpu", 20, 30, False),  # CPU: the culler's own hour
        ("cpu", 61, 90, True),
        ("gpu", 9, 30, False),  # GPU: 10 minutes of inactivity
        ("gpu", 11, 30, True),
        ("gpu", 0, 121, True),  # GPU: at most two hours old, however busy
        ("cpu", 0, 600, False),  # (CPU servers: the culler's own max age, if any)
    ],
)
def test_gpu_servers_have_their_own_timeout_and_maximum_age(
    profile: str, inactive_minutes: float, started_minutes_ago: float, culled: bool
) -> None:
    inactive = timedelta(minutes=inactive_minutes)
    model = server(profile, started_minutes_ago)
    assert RULES.should_cull(inactive, CPU_LIMIT, model, NOW) is culled


def test_no_maximum_age_unless_set() -> None:
    rules = culling.CullRules(frozenset({"gpu"}), gpu_timeout=600)
    assert not rules.should_cull(timedelta(0), CPU_LIMIT, server("gpu", 10_000), NOW)


def test_the_hub_starts_the_real_culler_with_the_rules(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    gpu = {
        "slug": "gpu",
        "display_name": "GPU",
        "image": "gpuhub/singleuser-gpu:a1",
        "gpu": {"mode": "exclusive"},
    }
    cpu = {"slug": "cpu", "display_name": "CPU", "image": "gpuhub/singleuser-cpu:a1"}
    path = settings_file(
        culler={"gpu_timeout": 900, "gpu_max_age": 14400},
        spawner={"profiles": [cpu, gpu], "gpus": [{"uuid": "GPU-1", "name": "NVIDIA L4"}]},
    )
    app = load_hub(monkeypatch, path)
    service = next(s for s in app.services if s["name"] == "idle-culler")
    rules = json.loads(service["environment"][culling.RULES_VARIABLE])
    assert rules == {"gpu_profiles": ["gpu"], "gpu_timeout": 900, "gpu_max_age": 14400}
    # The culler itself loads the configuration file the hub names, and takes the arbiter.
    (config,) = [a.split("=", 1)[1] for a in service["command"] if a.startswith("--config=")]
    assert Path(config).is_file()
    culler = IdleCuller()
    culler.load_config_file(config)
    assert culler.cull_arbiter_hook is culling.arbiter
