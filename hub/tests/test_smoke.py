"""The upgrade's smoke test (gpuhub_hub.smoke) against a live hub: it reports each step
as it passes and names the first that fails. (Spawning needs a host with the images:
the upgrade drill in tests/e2e/test_zz_reliability.py runs it whole.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gpuhub_hub import smoke
from livehub import LiveHub, gpuhub_admin, live_hub

USER = "probe"
PASSWORD = "a-long-enough-password"  # noqa: S105


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    with live_hub(tmp_path_factory.mktemp("hub")) as running:
        gpuhub_admin(running, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        yield running


def smoke_test(hub: LiveHub, password: str, monkeypatch: pytest.MonkeyPatch, *options: str) -> int:
    monkeypatch.setenv(smoke.PASSWORD_VARIABLE, password)
    return smoke.main(["--url", hub.url, "--user", USER, "--timeout", "30", *options])


def test_a_wrong_password_fails_at_the_login(
    hub: LiveHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke_test(hub, "not-the-password", monkeypatch) == 1
    out = capsys.readouterr().out
    assert "smoke test failed at login: HubError: the login form did not log" in out, out
    assert "ok   " not in out


def test_each_step_is_reported_until_the_first_that_fails(
    hub: LiveHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke_test(hub, PASSWORD, monkeypatch, "--profile", "no-such-profile") == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("ok ")] == ["login", "token"]
    assert lines[-1].startswith("smoke test failed at spawn: HubError: spawn: 403"), lines
    assert "no-such-profile" in lines[-1], lines


def test_no_password_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(smoke.PASSWORD_VARIABLE, raising=False)
    assert smoke.main(["--url", "http://127.0.0.1:9", "--user", USER]) == 2
