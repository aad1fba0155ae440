"""When the idle culler stops a server, in one place: the culler's arbiter
(jupyterhub-idle-culler's cull_arbiter_hook, loaded from culler_config.py) and the warning
the hub shows its user beforehand both ask `CullRules.deadline`.

A server is culled once it has been inactive for the timeout of its profile (GPU profiles:
`gpu_timeout`, CPU profiles: the culler's `timeout`) or once it is older than a maximum age
(the culler's `max_age` for every server, `gpu_max_age` for GPU profiles; 0: none). What
counts as activity is the hub's: requests through the proxy, what the server reports (a busy
kernel included: the images' gpuhub_busy extension) and, on a host with GPUs, a GPU the
server holds working above a threshold (gpuactivity.py). From `warning` seconds before its
deadline the server's user sees a warning on the hub's home page and inside JupyterLab
(cullwarning.py), and the culler logs one.

The hub passes the rules in RULES_VARIABLE (JSON) to the culler service (configure.py).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

RULES_VARIABLE = "GPUHUB_CULL_RULES"
# A child of the culler application's logger (traitlets names it after the class): its
# lines come out formatted with the culler's own.
log = logging.getLogger("IdleCuller.gpuhub")


def moment(value: datetime | str | None) -> datetime | None:
    """An API timestamp (ISO, `Z` or offset) or an ORM one (naive UTC) as aware UTC."""
    if value is None or value == "":
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class Deadline:
    when: datetime
    keepable: bool  # activity moves it (False: a maximum age)


@dataclass(frozen=True)
class CullRules:
    gpu_profiles: frozenset[str] = field(default_factory=frozenset)
    gpu_timeout: int = 1800
    gpu_max_age: int = 0  # 0: no maximum
    timeout: int = 3600  # the culler's own --timeout (CPU profiles)
    max_age: int = 0  # the culler's own --max-age (every server)
    warning: int = 600  # seconds of warning before a cull

    def to_json(self) -> str:
        data = asdict(self)
        data["gpu_profiles"] = sorted(self.gpu_profiles)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CullRules:
        data = json.loads(text or "{}")
        data["gpu_profiles"] = frozenset(data.get("gpu_profiles", ()))
        return cls(**data)

    def deadline(self, server: dict[str, Any]) -> Deadline | None:
        """When `server` (the API's model: user_options, started, last_activity) is culled
        if nothing happens in it; None when it has no times yet."""
        started = moment(server.get("started"))
        last = moment(server.get("last_activity")) or started
        if last is None:
            return None
        gpu = (server.get("user_options") or {}).get("profile", "") in self.gpu_profiles
        idle = last + timedelta(seconds=self.gpu_timeout if gpu else self.timeout)
        ages = [self.max_age, self.gpu_max_age if gpu else 0]
        oldest = [started + timedelta(seconds=a) for a in ages if a and started]
        if oldest and min(oldest) < idle:
            return Deadline(min(oldest), keepable=False)
        return Deadline(idle, keepable=True)

    def warns(self, deadline: Deadline, now: datetime | None = None) -> bool:
        """Whether `deadline` is `warning` seconds away or less."""
        return (now or datetime.now(UTC)) >= deadline.when - timedelta(seconds=self.warning)

    def should_cull(self, server: dict[str, Any], now: datetime | None = None) -> bool:
        deadline = self.deadline(server)
        return deadline is not None and (now or datetime.now(UTC)) >= deadline.when

    def warning_due(self, server: dict[str, Any], now: datetime | None = None) -> Deadline | None:
        """The deadline, when it is `warning` seconds away or less."""
        deadline = self.deadline(server)
        return deadline if deadline is not None and self.warns(deadline, now) else None


@cache
def rules() -> CullRules:
    """The rules the hub gave this culler process."""
    return CullRules.from_json(os.environ.get(RULES_VARIABLE, ""))


def arbiter(*, server: dict[str, Any], **_: object) -> bool:
    """The culler's cull_arbiter_hook: whether to stop `server` now. A server whose
    warning is due is logged (the culler logs the cull itself)."""
    now = datetime.now(UTC)
    current = rules()
    deadline = current.deadline(server)
    if deadline is None:
        return False
    if now >= deadline.when:
        return True
    if current.warns(deadline, now):
        log.warning(
            "Cull warning: server %s will be culled at %s (%s)",
            server.get("url") or server.get("name", ""),
            deadline.when.isoformat(timespec="seconds"),
            "idle" if deadline.keepable else "maximum age",
        )
    return False
