"""users.yml, the jupyterhub role and the hub package apply the same user-name rule."""

from __future__ import annotations

from pathlib import Path

import yaml
from gpuhub_hub.names import USERNAME

REPO = Path(__file__).resolve().parents[2]


def test_one_user_name_rule() -> None:
    (play,) = yaml.safe_load((REPO / "users.yml").read_text())
    role_vars = yaml.safe_load((REPO / "roles/jupyterhub/vars/main.yml").read_text())
    assert play["vars"]["users_name_pattern"] == USERNAME.pattern
    assert role_vars["__jupyterhub_name_pattern"] == USERNAME.pattern
