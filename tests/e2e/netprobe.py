"""Connection probes run inside containers of the test host (security drills)."""

from __future__ import annotations

from testhost import TestHost

# Prints "<target> open" or "<target> <error>" for each host:port argument.
PROBE = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=4).close()
        print(target, "open")
    except OSError as err:
        print(target, type(err).__name__)
"""


def probe(host: TestHost, container: str | None, *targets: str) -> dict[str, str]:
    """Connect to each target from `container` (None: the test host itself)."""
    prefix = ("docker", "exec", container) if container else ()
    out = host.run(*prefix, "python3", "-c", PROBE, *targets)
    return dict(line.split(" ", 1) for line in out.splitlines())


def users_ip(host: TestHost, container: str) -> str:
    template = f'{{{{(index .NetworkSettings.Networks "{host.users_network}").IPAddress}}}}'
    return host.run("docker", "inspect", "-f", template, container).strip()
