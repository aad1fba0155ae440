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
import os
import re
import subprocess
import sys
from pathlib import Path

from common import REPO, SCENARIO, Timer, inventory, molecule, plot, write

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ROLE_LINE = re.compile(r"^\s*(?:│\s*)?(\S+) -{3,} (\d+\.\d+)s\s*$")
TASK_LINE = re.compile(r"^(\S+ : .+?) -{3,} (\d+\.\d+)s\s*$")
RECAP = re.compile(r"ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)")
NOOP_RUNS = 3
PROFILE = {
    "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
    "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_roles,ansible.posix.profile_tasks",
    "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "12",
    "ANSIBLE_FORCE_COLOR": "0",
}


def converge() -> tuple[float, str]:
    playbook = REPO / "molecule" / SCENARIO / "converge.yml"  # site.yml, imported
    hosts = str(Path(inventory()).parent)  # with the scenario's group_vars and host_vars
    with Timer() as timer:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", hosts, str(playbook)],
            cwd=REPO,
            env={**os.environ, **PROFILE},
            capture_output=True,
            text=True,
            check=False,
        )
    out = ANSI.sub("", result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"converge failed:\n{out[-4000:]}")
    return timer.seconds, out


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
    fresh, out = converge()
    per_role = roles(out)
    runs = sorted((converge() for _ in range(NOOP_RUNS)), key=lambda run: run[0])
    noop, out2 = runs[len(runs) // 2]  # the median run
    noop_roles = roles(out2)
    noop_tasks = slowest_tasks(out2)
    changed = max(
        sum(int(c) for c, _ in RECAP.findall(out.split("PLAY RECAP")[-1])) for _, out in runs
    )
    ratio = noop / fresh
    data = {
        "title": "Converge: fresh site.yml, then the no-op re-run",
        "fresh_seconds": round(fresh, 1),
        "noop_seconds": round(noop, 1),
        "noop_runs_seconds": [round(secs, 1) for secs, _ in runs],
        "command": "ansible-playbook -i <the Molecule inventory> molecule/bench/converge.yml",
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
