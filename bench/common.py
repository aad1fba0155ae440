"""Shared parts of the benchmarks: the bench test host, the machine they ran on, and
writing results (JSON, a Markdown table, PNG plots) under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SCENARIO = "bench"
HOST = f"gpuhub-{SCENARIO}"
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests"), str(REPO / "hub" / "src")]

from hubclient import HubClient  # noqa: E402
from testhost import TestHost  # noqa: E402

__all__ = ["HOST", "HubClient", "TestHost", "bench_host", "machine", "percentile", "write"]


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def commit() -> str:
    """The commit measured ("-dirty" when tracked files other than the results changed)."""
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    dirty = "-dirty" if changed else ""
    return f"{_git('rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "kernel": platform.release(),
        "docker": docker.from_env().version()["Version"],
        "commit": commit(),
    }


def machine_line(info: dict[str, Any]) -> str:
    return (
        f"{info['date']} at commit {info.get('commit', 'unknown')} on {info['cores']} x "
        f"{info['cpu']}, {info['memory_gib']} GiB RAM, kernel {info['kernel']}, "
        f"Docker {info['docker']}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def inventory(scenario: str = SCENARIO) -> str:
    """A scenario's Molecule inventory (made by `molecule create -s <scenario>`)."""
    dirs = sorted(
        Path.home().glob(f".ansible/tmp/molecule.*.{scenario}/inventory"),
        key=lambda p: p.stat().st_mtime,
    )
    if not dirs:
        raise SystemExit(f"no {scenario} hosts: converge the Molecule scenario {scenario} first")
    return str(dirs[-1] / "ansible_inventory.yml")


def bench_host(scenario: str = SCENARIO, host: str = HOST) -> TestHost:
    os.environ.setdefault("MOLECULE_INVENTORY_FILE", inventory(scenario))
    return TestHost(host)


def molecule(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["molecule", *args, "-s", SCENARIO],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def write(
    name: str,
    data: dict[str, Any],
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    notes: Sequence[str] = (),
) -> Path:
    """Write results/<name>.json and results/<name>.md; print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = data.setdefault("machine", machine())
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    lines = [
        f"### {data.get('title', name)}",
        "",
        f"Measured {machine_line(info)}.",
        "",
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]
    if notes:
        lines += ["", *notes]
    text = "\n".join(lines) + "\n"
    path = RESULTS / f"{name}.md"
    path.write_text(text)
    print(text)
    return path


def plot(
    name: str,
    title: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    kind: str = "line",
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for label, (xs, ys) in series.items():
        if kind == "bar":
            axes.barh(list(map(str, xs)), ys, label=label)
        else:
            axes.plot(xs, ys, marker="o", markersize=3, label=label)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if len(series) > 1:
        axes.legend()
    figure.tight_layout()
    path = RESULTS / f"{name}.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
