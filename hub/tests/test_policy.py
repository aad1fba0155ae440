"""Profile allow-list and the limits a user's server gets."""

from __future__ import annotations

import pytest
from gpuhub_hub.policy import allowed_profiles, choose_profile, effective_limits
from gpuhub_hub.settings import Limits, load
from hubsettings import SettingsFactory


@pytest.fixture
def spawner(settings_file: SettingsFactory):  # noqa: ANN201
    return load(settings_file()).spawner


def test_restricted_profiles_need_a_group(spawner) -> None:  # noqa: ANN001
    assert [p.slug for p in allowed_profiles(spawner, [])] == ["cpu"]
    assert [p.slug for p in allowed_profiles(spawner, ["research"])] == ["cpu", "big"]


def test_choose_profile_refuses_what_the_user_may_not_use(spawner) -> None:  # noqa: ANN001
    assert choose_profile(spawner, [], None).slug == "cpu"
    assert choose_profile(spawner, ["research"], "big").slug == "big"
    with pytest.raises(PermissionError, match="profile 'big' is not available to you"):
        choose_profile(spawner, ["staff"], "big")
    with pytest.raises(PermissionError, match="choose one of: cpu"):
        choose_profile(spawner, [], "no-such-profile")


def test_limits_default_group_and_profile(spawner) -> None:  # noqa: ANN001
    cpu, big = spawner.profiles
    assert effective_limits(spawner, [], cpu) == Limits("2G", 1.0)
    assert effective_limits(spawner, ["staff"], cpu) == Limits("8G", 4.0)
    assert effective_limits(spawner, ["staff", "research"], big) == Limits("16G", 8.0)
