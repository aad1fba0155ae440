"""gpuhub's Jupyter Server extension in the singleuser images: a busy kernel is activity.

A kernel running a long cell that prints nothing (a training loop, a `sleep`) sends no
message after its `busy` status, so Jupyter Server's last activity stays at the cell's
start, and the idle culler would stop the server under its user. Every
GPUHUB_BUSY_INTERVAL seconds (default 30) this extension looks at the kernels' execution
states (which Jupyter Server tracks from their status messages) and, while one is busy,
sets a `*_last_activity` setting, which Jupyter Server counts in its last activity (its
documented hook for extensions); jupyterhub-singleuser reports that to the hub.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from tornado.ioloop import PeriodicCallback

SETTING = "gpuhub_busy_last_activity"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "gpuhub_busy"}]


def busy(kernel_manager: Any) -> bool:  # noqa: ANN401 (Jupyter Server's kernel manager)
    """Whether any kernel is running code now."""
    return any(
        getattr(kernel_manager.get_kernel(kernel_id), "execution_state", "") == "busy"
        for kernel_id in list(kernel_manager.list_kernel_ids())
    )


def _load_jupyter_server_extension(serverapp: Any) -> None:  # noqa: ANN401
    serverapp.log.info("gpuhub_busy: a busy kernel is activity")


async def _start_jupyter_server_extension(serverapp: Any) -> None:  # noqa: ANN401
    """Once the server's event loop runs: look at the kernels every interval."""
    settings = serverapp.web_app.settings
    kernels = serverapp.kernel_manager

    def check() -> None:
        if busy(kernels):
            settings[SETTING] = datetime.now(UTC)

    seconds = float(os.environ.get("GPUHUB_BUSY_INTERVAL") or 30)
    PeriodicCallback(check, seconds * 1000).start()
