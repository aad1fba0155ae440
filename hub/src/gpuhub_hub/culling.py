"""The idle culler's rules beyond its one timeout (jupyterhub-idle-culler's
cull_arbiter_hook, loaded from culler_config.py): a server of a GPU profile is culled after
`gpu_timeout` seconds of inactivity instead of the culler's timeout, and, with
`gpu_max_age`, once it is that old whatever it does. CPU profiles keep the culler's own
timeout and max age. What counts as activity is the hub's: requests through the proxy, and
what the server reports (a busy kernel included: the images' gpuhub_busy extension).

The hub passes the rules in RULES_VARIABLE (JSON) to the culler service (configure.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

RULES_VARIABLE = "GPUHUB_CULL_RULES"


@dataclass(frozen=True)
class CullRules:
    gpu_profiles: frozenset[str] = frozenset()
    gpu_timeout: int = 1800
    gpu_max_age: int = 0  # 0: no maximum

    def to_json(self) -> str:
        return json.dumps(
            {
                "gpu_profiles": sorted(self.gpu_profiles),
                "gpu_timeout": self.gpu_timeout,
                "gpu_max_age": self.gpu_max_age,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> CullRules:
        data = json.loads(text or "{}")
        return cls(
            frozenset(data.get("gpu_profiles", ())),
            int(data.get("gpu_timeout", 1800)),
            int(data.get("gpu_max_age", 0)),
        )

    def should_cull(
        self,
        inactive: timedelta | None,
        inactive_limit: float,
        server: dict[str, Any],
        now: datetime | None = None,
    ) -> bool:
        profile = (server.get("user_options") or {}).get("profile", "")
        if profile not in self.gpu_profiles:
            return inactive is not None and inactive.total_seconds() >= inactive_limit
        if inactive is not None and inactive.total_seconds() >= self.gpu_timeout:
            return True
        started = server.get("started")
        if self.gpu_max_age and started:
            age = (now or datetime.now(UTC)) - datetime.fromisoformat(started)
            return age.total_seconds() >= self.gpu_max_age
        return False


@cache
def rules() -> CullRules:
    """The rules the hub gave this culler process."""
    return CullRules.from_json(os.environ.get(RULES_VARIABLE, ""))


def arbiter(
    *, inactive: timedelta | None, inactive_limit: float, server: dict[str, Any], **_: object
) -> bool:
    """The culler's cull_arbiter_hook: whether to stop `server` now."""
    return rules().should_cull(inactive, inactive_limit, server)
