"""Settings files for loading the real hub configuration in tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

CONFIG_PY = Path(__file__).resolve().parents[1] / "jupyterhub_config.py"
# A GPU profile (one exclusive GPU) and a CPU one, as the role renders them.
GPU_PROFILE = {
    "slug": "gpu",
    "display_name": "GPU",
    "image": "gpuhub/singleuser-gpu:a1",
    "gpu": {"mode": "exclusive"},
}
CPU_PROFILE = {"slug": "cpu", "display_name": "CPU", "image": "gpuhub/singleuser-cpu:a1"}

SettingsFactory = Callable[..., Path]


def base_settings(state: Path) -> dict[str, Any]:
    return {
        "hub": {
            "proxy_api_url": "http://jupyterhub-proxy:8001",
            "hub_bind_url": "http://0.0.0.0:8081",
            "hub_connect_url": "http://jupyterhub:8081",
            "admin_users": ["admin"],
            "proxy_token_file": str(state / "proxy_auth_token"),
            "admin_token_file": str(state / "gpuhub_admin_token"),
            "metrics_token_file": str(state / "metrics_token"),
            "crypt_key_file": str(state / "crypt_key"),
            "cookie_secret_file": str(state / "jupyterhub_cookie_secret"),
            "db_url": f"sqlite:///{state}/jupyterhub.sqlite",
            "concurrent_spawn_limit": 7,
            "active_server_limit": 40,
            "named_server_limit_per_user": 3,
        },
        "culler": {"timeout": 1800, "every": 300, "max_age": 86400},
        "spawner": {
            "network": "jupyterhub-users",
            "home_root": str(state / "home"),
            "archive_dir": str(state / "archive"),
            "tokens_dir": str(state / "tokens"),
            "legacy_homes_dir": str(state / "legacy-homes"),
            "shared_dir": "/srv/jupyterhub/shared",
            "default_limits": {"mem_limit": "2G", "cpu_limit": 1.0},
            "group_limits": {"staff": {"mem_limit": "8G", "cpu_limit": 4}},
            "profiles": [
                {"slug": "cpu", "display_name": "CPU", "image": "gpuhub/singleuser-cpu:a1"},
                {
                    "slug": "big",
                    "display_name": "Big CPU",
                    "image": "gpuhub/singleuser-cpu:a1",
                    "limits": {"mem_limit": "16G", "cpu_limit": 8},
                    "groups": ["research"],
                },
            ],
        },
    }
