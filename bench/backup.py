"""Benchmark 4: backup. Fills homes on the bench host with incompressible data, then
measures the first backup (time, repository size), an incremental of unchanged data, an
incremental after 1 % of the data changed, and a restore into a side folder (time per GB).
Every backup is the nightly cron entry's own command."""

from __future__ import annotations

import argparse

from common import Timer, bench_host, plot, write
from testhost import RESTIC, TestHost, restic_added_bytes

FILES_PER_HOME = 10


def backup(host: TestHost, command: str) -> tuple[float, int]:
    """Run the backup; (seconds, bytes restic says the snapshot added). Not the change in
    repository size: the same run's `forget --prune` removes older snapshots' data."""
    since = host.run("date", "+%s").strip()
    with Timer() as timer:
        host.run("sh", "-c", command)
    log = host.run(
        "journalctl", "--no-pager", "-o", "cat", "-t", "gpuhub-backup", "--since", f"@{since}"
    )
    added = restic_added_bytes(log)
    if added is None:
        raise SystemExit(f"no 'Added to the repository' line in the backup's log:\n{log}")
    return timer.seconds, added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0, help="data to back up")
    parser.add_argument("--homes", type=int, default=20)
    args = parser.parse_args()
    host = bench_host()
    command = host.backup_command()
    # A fresh repository on the (throwaway) bench host, so the first backup is a first one.
    repository = host.fact("backup_repository")
    host.run("sh", "-c", f"rm -rf {repository}/* && {RESTIC} init >/dev/null")
    file_mib = max(1, round(args.gib * 1024 / (args.homes * FILES_PER_HOME)))
    homes = [host.path("home", f"bench{i:02d}") for i in range(1, args.homes + 1)]
    owner = ":".join(host.user_ids())
    fill = (
        f"for f in $(seq 1 {FILES_PER_HOME}); do "
        f"head -c {file_mib}M /dev/urandom > $d/data$f.bin; done"
    )
    host.run(
        "sh",
        "-c",
        f"for d in {' '.join(homes)}; do mkdir -p $d; {fill}; chown -R {owner} $d; done",
    )
    data_bytes = args.homes * FILES_PER_HOME * file_mib * 1024**2

    first, first_added = backup(host, command)
    unchanged, unchanged_added = backup(host, command)
    changed_files = max(1, round(args.homes * FILES_PER_HOME / 100))
    changed = " ".join(f"{home}/data1.bin" for home in homes[:changed_files])
    host.run("sh", "-c", f"for f in {changed}; do head -c {file_mib}M /dev/urandom > $f; done")
    one_percent, one_percent_added = backup(host, command)
    host.run("rm", "-rf", "/root/bench-restore")
    with Timer() as restore:
        host.run(
            "sh",
            "-c",
            f"{RESTIC} restore latest --target /root/bench-restore --include {host.path('home')}",
        )
    host.run("rm", "-rf", "/root/bench-restore")
    gib = data_bytes / 1024**3
    ratio = unchanged_added / first_added if first_added else 0.0
    verdict = "met" if ratio <= 0.10 else f"missed by {(ratio - 0.10) * 100:.1f} points"
    data = {
        "title": f"Backup: {gib:.2f} GiB in {args.homes} homes (restic, local repository)",
        "data_bytes": data_bytes,
        "first": {"seconds": round(first, 1), "added_bytes": first_added},
        "unchanged": {"seconds": round(unchanged, 1), "added_bytes": unchanged_added},
        "one_percent": {"seconds": round(one_percent, 1), "added_bytes": one_percent_added},
        "restore_seconds_per_gib": round(restore.seconds / gib, 1),
        "unchanged_ratio": round(ratio, 4),
        "target": "incremental backup of unchanged data <= 10% of the first",
    }
    mib = 1024**2
    rows = [
        ("first backup", f"{first:.1f} s", f"{first_added / mib:.0f} MiB"),
        ("unchanged data", f"{unchanged:.1f} s", f"{unchanged_added / mib:.2f} MiB"),
        ("after 1 % changed", f"{one_percent:.1f} s", f"{one_percent_added / mib:.1f} MiB"),
        ("restore (homes, side folder)", f"{restore.seconds / gib:.1f} s per GiB", ""),
    ]
    notes = [
        f"Unchanged incremental added {ratio:.2%} of the first backup (target <= 10%: {verdict})."
    ]
    write("backup", data, ("run", "time", "added to the repository"), rows, notes)
    plot(
        "backup",
        "Backup time",
        {
            "seconds": (
                ["first", "unchanged", "1 % changed", "restore"],
                [first, unchanged, one_percent, restore.seconds],
            )
        },
        "seconds",
        "",
        kind="bar",
    )


if __name__ == "__main__":
    main()
