"""The settings file is validated key by key, with messages naming the key."""

from __future__ import annotations

import pytest
import yaml
from gpuhub_hub.settings import SettingsError, load
from hubsettings import SettingsFactory


def test_valid_settings_load(settings_file: SettingsFactory) -> None:
    settings = load(settings_file())
    assert settings.hub.admin_users == ("admin",)
    assert settings.auth.mode == "native"
    assert settings.auth.minimum_password_length == 10
    assert settings.culler.timeout == 1800
    assert [p.slug for p in settings.spawner.profiles] == ["cpu", "big"]
    assert settings.spawner.group_limits["staff"].mem_limit == "8G"
    assert settings.spawner.profiles[1].limits.cpu_limit == 8.0


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"spawner": {"default_limits": {"mem_limit": "2X"}}},
            "settings.spawner.default_limits.mem_limit: '2X' is not a size like 512M",
        ),
        ({"spawner": {"default_limits": {"cpu_limit": 0}}}, "cpu_limit: 0.0 must be greater"),
        ({"auth": {"mode": "open"}}, "settings.auth.mode: 'open' is not one of: native, workshop"),
        ({"auth": {"minimum_pasword_length": 4}}, "unknown key(s) minimum_pasword_length"),
        ({"culler": {"enabled": "yes"}}, "settings.culler.enabled: expected true or false"),
        ({"culler": {"gpu_busy_percent": 0}}, "gpu_busy_percent: must be from 1 to 100"),
        ({"culler": {"warning": -1}}, "gpu_max_age and warning: must be 0 (none) or more"),
        ({"culler": {"gpu_every": 0}}, "gpu_timeout and gpu_every: must be greater than 0"),
        ({"hub": {"base_url": "hub"}}, "base_url: 'hub' must start and end with '/'"),
        ({"hub": {"admin_users": ["Bad Name"]}}, "admin_users: 'Bad Name' is not a valid"),
        ({"hub": {"active_server_limit": -1}}, "active_server_limit: must be 0 (no limit)"),
        ({"spawner": {"profiles": []}}, "profiles: at least one profile is needed"),
        (
            {
                "spawner": {
                    "profiles": [{"slug": "x", "display_name": "X", "image": "i", "groups": ["a"]}]
                }
            },
            "at least one CPU-only profile must be open to every user",
        ),
        (
            {"spawner": {"profiles": [{"slug": "cpu", "display_name": "CPU"}]}},
            "settings.spawner.profiles[0].image: missing",
        ),
        (
            {"spawner": {"profiles": [{"slug": "C P U", "display_name": "C", "image": "i"}]}},
            "settings.spawner.profiles[0].slug: 'C P U' must be lowercase",
        ),
    ],
)
def test_invalid_settings_name_the_key(
    settings_file: SettingsFactory, sections: dict, message: str
) -> None:
    with pytest.raises(SettingsError) as err:
        load(settings_file(**sections))
    assert message in str(err.value)


def test_unreadable_and_malformed_files(tmp_path: pytest.TempPathFactory) -> None:
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spawner: [unclosed\n")
    with pytest.raises(SettingsError, match="is not valid YAML"):
        load(bad)
    bad.write_text(yaml.safe_dump(["not", "a", "mapping"]))
    with pytest.raises(SettingsError, match="settings: expected a mapping"):
        load(bad)
