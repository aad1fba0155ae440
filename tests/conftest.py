"""Shared fixtures: the repository root and a runner for ansible-playbook."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# In CI (CI=true) a skipped test fails the run, unless it is listed here with the reason
# it may skip there. A skip nobody looks at is a test that silently stopped testing.
CI_ALLOWED_SKIPS: dict[str, str] = {
    # "tests/path.py::test_name": "why skipping it in CI is right",
}

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

PlaybookRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def ansible_playbook() -> PlaybookRunner:
    """Run ansible-playbook from the repository root, the way README shows it."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        return subprocess.run(
            [str(BIN / "ansible-playbook"), *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    in_ci = os.environ.get("CI", "").lower() == "true"
    if in_ci and report.skipped and item.nodeid.split("[")[0] not in CI_ALLOWED_SKIPS:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI ({reason}): a skip fails CI unless tests/conftest.py "
            "CI_ALLOWED_SKIPS lists the test with the reason"
        )
    return report
