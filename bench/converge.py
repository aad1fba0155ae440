"""Benchmark 1: converge. A fresh site.yml on a new test host (total and per role, from
Ansible's profile_roles callback), then the no-op re-run (time and changed count; three
runs, the median: identical runs on a 2-core VM differ by a second or two).

Both are timed as users run them: `ansible-playbook` with this repository's ansible.cfg,
against the test host Molecule created (its inventory, the scenario's settings) and the
playbook `molecule converge` runs. Until 2026-12-04 the bench timed `molecule converge`,
which adds ~3 s of Molecule's own start-up to each run.
Leaves the converged bench host up for the other benchmarks."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

from common import SCENARIO, Timer, bench_host, molecule, plot, write
from testhost import TestHost, recap

ROLE_LINE = re.compile(r"^\s*(\S+) -{3,} (\d+\.\d+)s\s*$")
TASK_LINE = re.compile(r"^(\S+ : .+?) -{3,} (\d+\.\d+)s\s*$")
NOOP_RUNS = 3
PLAYBOOK = f"molecule/{SCENARIO}/converge.yml"  # the playbook `molecule converge` runs
PROFILE = {
    "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_roles,ansible.posix.profile_tasks",
    "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "12",
}


def converge(host: TestHost) -> tuple[float, subprocess.CompletedProcess[str]]:
    """site.yml against the bench host, as an admin runs it (TestHost.playbook)."""
    with Timer() as timer:
        result = host.playbook(PLAYBOOK, env=PROFILE)
    if result.returncode != 0:
        sys.exit(f"converge failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return timer.seconds, result


def roles(out: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in out.splitlines():
        match = ROLE_LINE.match(line)
        if match and match[1] != "total":
            found[match[1]] = found.get(match[1], 0) + float(match[2])
    return found


def slowest_tasks(out: str) -> list[tuple[str, float]]:
    """profile_tasks' closing list: the slowest tasks of the run, slowest first."""
    return [(m[1], float(m[2])) for m in map(TASK_LINE.match, out.splitlines()) if m]


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    molecule("destroy")
    for step in ("create", "prepare"):
        result = molecule(step)
        if result.returncode != 0:
            sys.exit(f"molecule {step} failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    host = bench_host()
    fresh, first = converge(host)
    per_role = roles(first.stdout)
    runs = sorted((converge(host) for _ in range(NOOP_RUNS)), key=lambda run: run[0])
    noop, median = runs[len(runs) // 2]
    noop_roles = roles(median.stdout)
    noop_tasks = slowest_tasks(median.stdout)
    changed = max(recap(result)[0] for _, result in runs)
    ratio = noop / fresh
    data = {
        "title": "Converge: fresh site.yml, then the no-op re-run",
        "fresh_seconds": round(fresh, 1),
        "noop_seconds": round(noop, 1),
        "noop_runs_seconds": [round(secs, 1) for secs, _ in runs],
        "command": f"ansible-playbook -i <the Molecule inventory> {PLAYBOOK}",
        "noop_changed": changed,
        "noop_ratio": round(ratio, 3),
        "per_role_seconds": {k: round(v, 1) for k, v in per_role.items()},
        "noop_per_role_seconds": {k: round(v, 1) for k, v in noop_roles.items()},
        "noop_slowest_tasks": [[name, round(secs, 1)] for name, secs in noop_tasks],
        "target": "no-op re-converge <= 10% of the fresh converge",
    }
    verdict = "met" if ratio <= 0.10 else f"missed by {(ratio - 0.10) * 100:.1f} points"
    rows = [
        ("fresh converge (total)", f"{fresh:.0f} s"),
        *(
            (f"  role {name}", f"{secs:.0f} s")
            for name, secs in sorted(per_role.items(), key=lambda kv: -kv[1])
        ),
        (
            f"no-op re-run (median of {NOOP_RUNS})",
            f"{noop:.0f} s ({', '.join(f'{secs:.0f}' for secs, _ in runs)}), changed={changed}",
        ),
        ("no-op / fresh", f"{ratio:.1%} (target <= 10%: {verdict})"),
        *(
            (f"  no-op role {name}", f"{secs:.0f} s")
            for name, secs in sorted(noop_roles.items(), key=lambda kv: -kv[1])
            if secs >= 1
        ),
        *((f"  no-op task {name}", f"{secs:.1f} s") for name, secs in noop_tasks[:8]),
    ]
    write("converge", data, ("step", "time"), rows)
    ordered = sorted(per_role.items(), key=lambda kv: kv[1])
    plot(
        "converge",
        "Fresh converge, seconds per role",
        {"seconds": ([k for k, _ in ordered], [v for _, v in ordered])},
        "seconds",
        "role",
        kind="bar",
    )


if __name__ == "__main__":
    main()
