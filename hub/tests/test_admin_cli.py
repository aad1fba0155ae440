"""gpuhub-admin against a real JupyterHub (real NativeAuthenticator, real REST API)
started from the real jupyterhub_config.py; logins go through the hub's login form."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.hubclient import HubClient
from gpuhub_hub.admin.cli import main
from livehub import LiveHub, live_hub
from livehub import gpuhub_admin as admin

PASSWORD = "correct-horse-battery"  # noqa: S105


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    # Sign-up on (an opt-in), for the test of approving sign-ups.
    with live_hub(tmp_path_factory.mktemp("hub"), auth={"enable_signup": True}) as running:
        yield running


def users(hub: LiveHub) -> dict[str, dict[str, Any]]:
    return {u["name"]: u for u in admin(hub, "user", "list")["users"]}


def logs_in(hub: LiveHub, name: str, password: str) -> bool:
    return HubClient(hub.url).login(name, password)


def test_add_is_idempotent_and_the_password_works(hub: LiveHub) -> None:
    first = admin(hub, "user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert first["added"] == ["alice"]
    assert first["changed"]
    assert first["passwords"] == {}  # a given password is never echoed
    again = admin(hub, "user", "add", "alice", "--password-stdin", stdin=PASSWORD)
    assert again["changed"] is False
    assert again["unchanged"] == ["alice"]
    assert users(hub)["alice"]["approved"] is True
    assert logs_in(hub, "alice", PASSWORD)
    assert not logs_in(hub, "alice", "wrong-" + PASSWORD)


def test_generated_password_is_shown_once_and_works(hub: LiveHub) -> None:
    result = admin(hub, "user", "add", "bob")
    password = result["passwords"]["bob"]
    assert len(password) >= 16
    assert logs_in(hub, "bob", password)
    assert admin(hub, "user", "add", "bob")["passwords"] == {}


def test_a_refused_password_leaves_no_user_behind(hub: LiveHub) -> None:
    refused = admin(hub, "user", "add", "weakling", "--password-stdin", stdin="qwertyuiop", code=1)
    assert "common passwords" in refused["error"]
    assert "weakling" not in users(hub)


def test_set_password_replaces_the_old_one(hub: LiveHub) -> None:
    admin(hub, "user", "add", "carol", "--password-stdin", stdin=PASSWORD)
    admin(hub, "user", "set-password", "carol", "--password-stdin", stdin="another-long-secret")
    assert logs_in(hub, "carol", "another-long-secret")
    assert not logs_in(hub, "carol", PASSWORD)
    weak = admin(
        hub, "user", "set-password", "carol", "--password-stdin", stdin="password1", code=1
    )
    assert "common passwords" in weak["error"] or "shorter" in weak["error"]


def test_admin_flag_and_groups(hub: LiveHub) -> None:
    admin(hub, "user", "add", "dave", "--admin", "--group", "students")
    assert users(hub)["dave"]["admin"] is True
    assert users(hub)["dave"]["groups"] == ["students"]
    assert admin(hub, "user", "admin", "dave", "off")["updated"] == {"dave": ["not admin"]}
    assert users(hub)["dave"]["admin"] is False
    assert admin(hub, "user", "admin", "dave", "off")["changed"] is False


def test_bad_input_changes_nothing(hub: LiveHub) -> None:
    before = users(hub)
    unknown = admin(hub, "user", "add", "erin", "--group", "nosuchgroup", code=2)
    assert "unknown group(s) nosuchgroup" in unknown["error"]
    for bad in ("Erin", "a/b", "..", "x" * 33):
        with pytest.raises(SystemExit) as exit_:
            main(["--json", "--settings", str(hub.settings), "user", "add", bad])
        assert exit_.value.code == 2
    assert admin(hub, "user", "approve", "nobody", code=2)["error"] == "no user nobody"
    assert users(hub) == before


def test_signups_are_listed_and_approved(hub: LiveHub) -> None:
    client = HubClient(hub.url)
    client.signup("frank", PASSWORD)
    listed = users(hub)["frank"]
    assert (listed["approved"], listed["signed_up_only"]) == (False, True)
    assert not client.login("frank", PASSWORD)
    admin(hub, "user", "approve", "frank")
    assert client.login("frank", PASSWORD)


def test_remove_archives_the_home_and_purge_deletes_it(hub: LiveHub) -> None:
    admin(hub, "user", "add", "gina", "--password-stdin", stdin=PASSWORD)
    home = hub.home_root / "gina"
    home.mkdir(parents=True)
    (home / "thesis.txt").write_text("chapter one\n")
    result = admin(hub, "user", "remove", "gina")
    assert result["removed"] == ["gina"]
    archive = Path(result["archives"]["gina"])
    assert archive.parent == hub.archive_dir / "gina"
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(archive) as tar:
        member = tar.extractfile("gina/thesis.txt")
        assert member is not None
        assert member.read() == b"chapter one\n"
    assert not home.exists()
    assert "gina" not in users(hub)
    assert not logs_in(hub, "gina", PASSWORD)
    assert admin(hub, "user", "remove", "gina")["changed"] is False

    purged = admin(hub, "user", "remove", "gina", "--purge")
    assert purged["removed"] == ["gina"]
    assert not (hub.archive_dir / "gina").exists()
    assert admin(hub, "user", "remove", "gina", "--purge")["changed"] is False


def test_configured_admins_cannot_be_removed(hub: LiveHub) -> None:
    assert "jupyterhub_admin_users" in admin(hub, "user", "remove", "admin", code=2)["error"]


ROSTER = "\n".join(f"- {{name: s{i:02d}, groups: [students]}}" for i in range(8))


def test_roster_sync_exclusive_and_dry_run(hub: LiveHub) -> None:
    first = admin(hub, "sync", stdin=ROSTER)
    assert first["added"] == [f"s{i:02d}" for i in range(8)]
    assert sorted(first["passwords"]) == first["added"]
    assert admin(hub, "sync", stdin=ROSTER)["changed"] is False

    kept = "\n".join(ROSTER.splitlines()[:5])
    everyone = set(users(hub))
    plan = admin(hub, "--dry-run", "sync", "--exclusive", stdin=kept)
    assert set(users(hub)) == everyone  # a dry run changes nothing
    result = admin(hub, "sync", "--exclusive", stdin=kept)
    assert result["removed"] == plan["removed"]
    assert set(result["removed"]) == everyone - {f"s{i:02d}" for i in range(5)} - {"admin"}
    assert set(users(hub)) == {f"s{i:02d}" for i in range(5)} | ({"admin"} & everyone)


def test_csv_roster(hub: LiveHub) -> None:
    csv = f"username,admin,groups,password\nhank,yes,students,{PASSWORD}\nivy,,,\n"
    result = admin(hub, "sync", "--format", "csv", stdin=csv)
    assert result["added"] == ["hank", "ivy"]
    assert list(result["passwords"]) == ["ivy"]
    assert users(hub)["hank"]["admin"] is True
    assert logs_in(hub, "hank", PASSWORD)
