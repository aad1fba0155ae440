"""How often the hub polls for what a spawn waits on: a new server answering (ready.py) and
a Swarm task reaching a state (cluster.wait_task).

A wait is at most LATENESS of the time waited so far (between FIRST_STEP and LONGEST_STEP),
so what is awaited is seen at most 5 % (and never more than 0.5 s) after it happens, and a
long wait costs a few probes a second, not twenty. Each probe is cheap: a refused
connection, or a question to the local Docker API, which answers in milliseconds.
"""

from __future__ import annotations

FIRST_STEP = 0.05  # seconds between the first probes
LONGEST_STEP = 0.5  # what is slow to happen is not probed more often than this
LATENESS = 0.05  # a wait is at most this share of the time waited so far


def next_step(waited: float) -> float:
    """The wait before the next probe, after `waited` seconds."""
    return min(max(FIRST_STEP, waited * LATENESS), LONGEST_STEP)
