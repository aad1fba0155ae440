"""The idle culler's GPU rules (gpuhub_hub.culling): its arbiter decides on the server
models the hub's API gives the culler, and the hub starts the real culler with them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpuhub_hub import culling, cullwarning
from hubsettings import CPU_PROFILE, GPU_PROFILE, SettingsFactory
from jupyterhub_idle_culler import IdleCuller
from test_config import load_hub

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RULES = culling.CullRules(frozenset({"gpu"}), gpu_timeout=600, gpu_max_age=7200, warning=300)


def server(profile: str, started_minutes_ago: float = 30, inactive_minutes: float = 0) -> dict:
    started = (NOW - timedelta(minutes=started_minutes_ago)).isoformat()
    last = (NOW - timedelta(minutes=inactive_minutes)).isoformat().replace("+00:00", "Z")
    return {
        "name": "",
        "user_options": {"profile": profile},
        "started": started,
        "last_activity": last,
    }


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
    model = server(profile, started_minutes_ago, inactive_minutes)
    assert RULES.should_cull(model, NOW) is culled


def test_no_maximum_age_unless_set() -> None:
    rules = culling.CullRules(frozenset({"gpu"}), gpu_timeout=600)
    assert not rules.should_cull(server("gpu", 10_000), NOW)
    with_age = culling.CullRules(max_age=3600)  # the culler's own, every server
    assert with_age.should_cull(server("cpu", 61), NOW)


def test_the_warning_comes_its_time_before_the_cull_and_says_when() -> None:
    # GPU server idle 4 min: culled at 10 min, warned from 5 min (warning: 300 s).
    assert RULES.warning_due(server("gpu", 30, inactive_minutes=4), NOW) is None
    due = RULES.warning_due(server("gpu", 30, inactive_minutes=6), NOW)
    assert due == culling.Deadline(NOW + timedelta(minutes=4), keepable=True)
    text = cullwarning.warning_text("Your server ada", due, NOW, "open it")
    assert text == (
        "Your server ada will be stopped at 12:04 UTC (in about 4 min) because it is idle: "
        "open it to keep it running."
    )
    # Near its maximum age: activity does not keep it, and the warning says so.
    old = RULES.warning_due(server("gpu", 117, inactive_minutes=0), NOW)
    assert old == culling.Deadline(NOW + timedelta(minutes=3), keepable=False)
    assert "maximum age" in cullwarning.warning_text("This server", old, NOW, "open it")
    # Times from the hub's database are naive UTC: the same deadline.
    naive = {"user_options": {"profile": "gpu"}, "started": NOW.replace(tzinfo=None)}
    assert RULES.deadline(naive) == culling.Deadline(NOW + timedelta(minutes=10), keepable=True)


def test_the_arbiter_logs_the_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rules = culling.CullRules(frozenset({"gpu"}), gpu_timeout=600, warning=300)
    monkeypatch.setenv(culling.RULES_VARIABLE, rules.to_json())
    culling.rules.cache_clear()
    now = datetime.now(UTC)
    idle = {
        "url": "/user/ada/",
        "user_options": {"profile": "gpu"},
        "started": (now - timedelta(minutes=30)).isoformat(),
        "last_activity": (now - timedelta(minutes=7)).isoformat(),
    }
    with caplog.at_level("WARNING", logger="IdleCuller.gpuhub"):
        assert (
            culling.arbiter(server=idle, inactive=timedelta(minutes=7), inactive_limit=3600)
            is False
        )
    assert "Cull warning: server /user/ada/ will be culled at" in caplog.text
    idle["last_activity"] = (now - timedelta(minutes=11)).isoformat()
    assert culling.arbiter(server=idle, inactive=timedelta(minutes=11), inactive_limit=3600)
    culling.rules.cache_clear()


def test_the_hub_starts_the_real_culler_with_the_rules(
    monkeypatch: pytest.MonkeyPatch, settings_file: SettingsFactory
) -> None:
    path = settings_file(
        culler={
            "gpu_timeout": 900,
            "gpu_max_age": 14400,
            "timeout": 7200,
            "warning": 120,
            "max_age": 36000,
        },
        spawner={
            "profiles": [CPU_PROFILE, GPU_PROFILE],
            "gpus": [{"uuid": "GPU-1", "name": "NVIDIA L4"}],
        },
    )
    app = load_hub(monkeypatch, path)
    service = next(s for s in app.services if s["name"] == "idle-culler")
    rules = json.loads(service["environment"][culling.RULES_VARIABLE])
    assert rules == {
        "gpu_profiles": ["gpu"],
        "gpu_timeout": 900,
        "gpu_max_age": 14400,
        "timeout": 7200,
        "max_age": 36000,
        "warning": 120,
    }
    # The home page's warnings and JupyterLab's (through the hub's route) follow the same rules.
    assert callable(app.template_vars["announcement_home"])
    (route,) = app.extra_handlers
    assert route[0] == cullwarning.ROUTE
    assert route[2]["rules"] == culling.CullRules.from_json(
        service["environment"][culling.RULES_VARIABLE]
    )
    # The culler itself loads the configuration file the hub names, and takes the arbiter.
    (config,) = [a.split("=", 1)[1] for a in service["command"] if a.startswith("--config=")]
    assert Path(config).is_file()
    culler = IdleCuller()
    culler.load_config_file(config)
    assert culler.cull_arbiter_hook is culling.arbiter
