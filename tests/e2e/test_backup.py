"""Backups that restore, end to end: two users with files and passwords; the exact
command of the cron entry; the hub database and a home deleted; restore.yml; both log in
with their old passwords and find their files byte-identical. Then deduplication,
retention, a side-folder restore of one home, and a wrong repository password (in the
nightly job and in site.yml)."""

from __future__ import annotations

import json
import secrets
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from hubclient import HubClient
from testhost import (
    BACKUP_PASSWORD_FILE,
    RESTIC,
    TestHost,
    flat,
    new_password,
    ok,
    recap,
    restic_added_bytes,
)

USERS = {"bka": new_password(), "bkb": new_password()}
FILES = ("notes.txt", "data.bin")


def restic(host: TestHost, args: str) -> str:
    return host.run("sh", "-c", f"{RESTIC} {args}")


def checksums(host: TestHost, name: str) -> dict[str, str]:
    home = f"{host.root}/home/{name}"
    out = host.run("sh", "-c", f"cd {home} && sha256sum {' '.join(FILES)}")
    return {path: digest for digest, path in (line.split() for line in out.splitlines())}


def journal(host: TestHost, identifier: str, expect: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        text = host.run("journalctl", "--no-pager", "-o", "cat", "-t", identifier, check=False)
        if expect in text or time.monotonic() > deadline:
            return text
        time.sleep(1)


@pytest.fixture(scope="module")
def before(host: TestHost) -> dict[str, dict[str, str]]:
    """Two users with passwords and files (a text file and 3 MB of random bytes)."""
    for name, password in USERS.items():
        ok(host.playbook("users.yml", "-e", json.dumps({"user": name, "password": password})))
        home = f"{host.root}/home/{name}"
        uid, gid = host.user_ids()
        host.run(
            "sh",
            "-c",
            # Made as the hub makes homes (0750, the containers' uid:gid), so re-converging
            # changes nothing.
            f"install -d -m 0750 -o {uid} -g {gid} {home} && "
            f"echo 'notes of {name}' > {home}/notes.txt && "
            f"head -c 3000000 /dev/urandom > {home}/data.bin && chown -R {uid}:{gid} {home}",
        )
    return {name: checksums(host, name) for name in USERS}


def test_cron_entry_runs_the_backup_nightly(host: TestHost) -> None:
    assert (
        host.backup_command()
        == "systemd-cat --identifier=gpuhub-backup /usr/local/sbin/gpuhub-backup"
    )
    assert host.run("stat", "-c", "%a %U", BACKUP_PASSWORD_FILE).split() == [
        "600",
        "root",
    ]
    assert host.run("systemctl", "is-active", "cron").strip() == "active"


def test_restore_brings_back_the_database_and_a_deleted_home(
    host: TestHost, before: dict[str, dict[str, str]], hub_url: str, ca_file: str
) -> None:
    host.run("sh", "-c", host.backup_command())
    assert "gpuhub-backup: done" in journal(host, "gpuhub-backup", "gpuhub-backup: done")

    refused = host.playbook("playbooks/restore.yml")
    assert refused.returncode != 0
    assert "-e confirm_restore=" in flat(refused)
    assert recap(refused) == (0, 1)

    host.run("rm", "-f", f"{host.root}/state/jupyterhub.sqlite")
    host.run("rm", "-rf", f"{host.root}/home/bkb")

    ok(host.playbook("playbooks/restore.yml", "-e", f"confirm_restore={host.name}"))
    for name, password in USERS.items():
        assert HubClient(hub_url, verify=ca_file).login(name, password), name
        assert checksums(host, name) == before[name]


def test_unchanged_data_adds_almost_nothing(
    host: TestHost, before: dict[str, dict[str, str]]
) -> None:
    """restic's own count of what the new snapshot added: the repository's size cannot
    tell, since the same command's `forget --prune` drops the earlier same-day snapshot."""
    since = host.run("date", "+%s").strip()
    host.run("sh", "-c", host.backup_command())
    log = host.run(
        "journalctl", "--no-pager", "-o", "cat", "-t", "gpuhub-backup", "--since", f"@{since}"
    )
    added = restic_added_bytes(log)
    assert added is not None, log
    homes = 3_000_000 * len(before)  # the random data.bin files alone
    assert added < 0.1 * homes, f"an unchanged backup added {added} bytes"


def test_retention_keeps_what_the_policy_says(host: TestHost) -> None:
    # The test host keeps 2 daily snapshots (molecule/default/molecule.yml).
    for days in (1, 2, 3):
        day = date.today() - timedelta(days=days)
        restic(
            host,
            f"backup --quiet --host {host.name} --tag gpuhub --time '{day} 12:00:00' /etc/hostname",
        )
    host.run("sh", "-c", host.backup_command())
    snapshots = json.loads(restic(host, f"snapshots --json --host {host.name} --tag gpuhub"))
    days = sorted(s["time"][:10] for s in snapshots)
    assert days == [str(date.today() - timedelta(days=1)), str(date.today())], days


def test_one_home_into_a_side_folder_touches_nothing_else(
    host: TestHost, before: dict[str, dict[str, str]]
) -> None:
    hub = host.run("docker", "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", host.hub)
    homes = host.run("ls", f"{host.root}/home")
    host.run("sh", "-c", f"echo 'changed since' >> {host.root}/home/bka/notes.txt")
    side = f"/root/side-{secrets.token_hex(4)}"
    ok(host.playbook("playbooks/restore.yml", "-e", "user=bka", "-e", f"restore_to={side}"))
    restored = host.run(
        "sh", "-c", f"cd {side}{host.root}/home/bka && sha256sum notes.txt data.bin"
    )
    assert restored.split()[0::2] == [before["bka"]["notes.txt"], before["bka"]["data.bin"]]
    assert host.run("ls", f"{side}{host.root}/home") == "bka\n"
    assert "changed since" in host.run("cat", f"{host.root}/home/bka/notes.txt")
    assert host.run("ls", f"{host.root}/home") == homes
    assert host.run("docker", "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", host.hub) == hub


def test_one_home_in_place_stops_every_server_of_the_user(
    host: TestHost, before: dict[str, dict[str, str]], hub_url: str, ca_file: str
) -> None:
    """Named servers write into the home too: a restore that stopped only the default
    server let one keep writing into the home it moved aside."""
    client = HubClient(hub_url, verify=ca_file)
    assert client.login("bka", USERS["bka"])
    client.create_token()
    client.start_server("bka")
    client.start_server("bka", "second")
    host.run("sh", "-c", f"echo 'changed since' >> {host.root}/home/bka/notes.txt")
    result = host.playbook(
        "playbooks/restore.yml", "-e", "user=bka", "-e", f"confirm_restore={host.name}"
    )
    ok(result)
    assert client.server_state("bka") is None
    assert client.server_state("bka", "second") is None
    assert checksums(host, "bka") == before["bka"]
    saved = host.run("sh", "-c", f"cat {host.root}/.pre-restore-*/bka/notes.txt")
    assert "changed since" in saved


def test_wrong_repository_password_fails_loudly(host: TestHost) -> None:
    host.run(
        "sh",
        "-c",
        "sed 's|^RESTIC_PASSWORD_FILE=.*|RESTIC_PASSWORD_FILE=/root/wrong-password|' "
        "/etc/gpuhub-backup/env > /root/wrong-env && echo not-the-password > /root/wrong-password",
    )
    command = host.backup_command().replace(
        "--identifier=gpuhub-backup", "--identifier=gpuhub-backup-wrong"
    )
    code, _ = host.container.exec_run(["sh", "-c", f"GPUHUB_BACKUP_ENV=/root/wrong-env {command}"])
    assert code != 0
    log = journal(host, "gpuhub-backup-wrong", "FAILED")
    assert "wrong password" in log, log
    assert "gpuhub-backup: FAILED while opening the repository" in log, log


def test_converge_stops_on_a_wrong_password_until_it_is_put_right(
    host: TestHost, tmp_path: Path
) -> None:
    """site.yml opens the repository only when restic's settings changed or no run has
    opened it with them: a wrong backup_password stops the run, and the next run too (the
    stopped run left no mark), until the right password is given again."""
    right = host.run("cat", BACKUP_PASSWORD_FILE).strip()
    (tmp_path / "wrong.json").write_text(json.dumps({"backup_password": "not-the-password"}))
    (tmp_path / "right.json").write_text(json.dumps({"backup_password": right}))
    for attempt in ("the password changed", "nothing changed since the stopped run"):
        stopped = host.converge("--tags", "backup", "-e", f"@{tmp_path / 'wrong.json'}")
        assert recap(stopped)[1] == 1, attempt
        assert "exists but cannot be opened" in stopped.stdout, (attempt, stopped.stdout[-3000:])
    assert recap(stopped) == (0, 1)
    ok(host.converge("--tags", "backup", "-e", f"@{tmp_path / 'right.json'}"))
    assert host.run("cat", BACKUP_PASSWORD_FILE).strip() == right
    ok(host.converge("--tags", "backup"), changed=0)


def test_repository_credentials_never_reach_the_log(host: TestHost) -> None:
    """A repository URL may carry a user and password: the failure line must not show it."""
    host.run(
        "sh",
        "-c",
        "sed 's|^RESTIC_REPOSITORY=.*|RESTIC_REPOSITORY=rest:http://backup:Cr3dential-Leak@"
        "127.0.0.1:9/|' /etc/gpuhub-backup/env > /root/credential-env",
    )
    command = host.backup_command().replace(
        "--identifier=gpuhub-backup", "--identifier=gpuhub-backup-cred"
    )
    code, _ = host.container.exec_run(
        ["sh", "-c", f"GPUHUB_BACKUP_ENV=/root/credential-env {command}"]
    )
    assert code != 0
    log = journal(host, "gpuhub-backup-cred", "FAILED")
    assert "gpuhub-backup: FAILED while opening the repository" in log, log
    assert "Cr3dential-Leak" not in log, log
