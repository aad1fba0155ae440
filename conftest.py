"""Hooks for every test of the repository (tests/ and hub/tests/)."""

from __future__ import annotations

import os

import pytest

# In CI (CI=true) a skipped test fails the run, unless it is listed here with the reason
# it may skip there. A skip nobody looks at is a test that silently stopped testing.
CI_ALLOWED_SKIPS: dict[str, str] = {
    # "tests/path.py::test_name": "why skipping it in CI is right",
}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    in_ci = os.environ.get("CI", "").lower() == "true"
    if in_ci and report.skipped and item.nodeid.split("[")[0] not in CI_ALLOWED_SKIPS:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI ({reason}): a skip fails CI unless conftest.py "
            "CI_ALLOWED_SKIPS lists the test with the reason"
        )
    return report
