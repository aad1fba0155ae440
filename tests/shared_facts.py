"""The facts several roles share and the rules that name things, read from where they live
(roles/gpuhub: its defaults and its filter plugin), so that no test restates them."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
# Every role's defaults (variables carry their role's name, so each name has one home).
DEFAULTS = tuple(sorted((REPO / "roles").glob("*/defaults/main.yml")))
JUPYTERHUB_VARS = REPO / "roles/jupyterhub/vars/main.yml"
FILTERS = REPO / "roles/gpuhub/filter_plugins/gpuhub.py"


@cache
def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def default(name: str) -> Any:  # noqa: ANN401 (YAML)
    """A variable's default, from the role that owns it."""
    for path in DEFAULTS:
        if name in _yaml(path):
            return _yaml(path)[name]
    raise KeyError(f"no role has a default for {name}")


def jupyterhub_var(name: str) -> Any:  # noqa: ANN401 (YAML)
    """One of the jupyterhub role's fixed values (roles/jupyterhub/vars/main.yml)."""
    return _yaml(JUPYTERHUB_VARS)[name]


@cache
def filters(role: str = "gpuhub") -> ModuleType:
    """A role's filter plugin (roles/<role>/filter_plugins/<role>.py) as a module: by
    default gpuhub's (gpuhub_image, gpuhub_singleuser_image...)."""
    path = FILTERS if role == "gpuhub" else REPO / f"roles/{role}/filter_plugins/{role}.py"
    spec = importlib.util.spec_from_file_location(f"{role}_filters", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def singleuser_image(variant: str, name: str | None = None) -> str:
    """The image tag the hub runs for a singleuser variant (`<name>-<variant>:current`)."""
    return filters().gpuhub_singleuser_image(
        variant, name or default("gpuhub_singleuser_image_name")
    )


def hub_image(name: str | None = None) -> str:
    """The hub image tag the hub container runs."""
    return filters().gpuhub_image(name or default("gpuhub_hub_image_name"))
