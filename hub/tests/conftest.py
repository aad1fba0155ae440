"""Fixtures for the hub package tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from engine import Holders, engine_or_skip
from hubsettings import SettingsFactory, base_settings


@pytest.fixture(scope="session")
def engine() -> Iterator[tuple[docker.APIClient, str]]:
    """The local Docker engine and an image for stand-in server containers."""
    yield from engine_or_skip()


@pytest.fixture
def holders(engine: tuple[docker.APIClient, str]) -> Holders:
    """Start containers labelled as the hub labels user servers."""
    return Holders(engine)


@pytest.fixture
def settings_file(tmp_path: Path) -> SettingsFactory:
    """Write a settings file (base settings, updated per section) plus its secrets."""

    def write(**sections: dict[str, Any]) -> Path:
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        (state / "proxy_auth_token").write_text("a" * 64 + "\n")
        (state / "crypt_key").write_text("0f" * 32 + "\n")
        (state / "gpuhub_admin_token").write_text("b" * 64 + "\n")
        (state / "metrics_token").write_text("c" * 64 + "\n")
        data = base_settings(state)
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        path = tmp_path / "settings.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write
