"""In CI a skipped test fails the run unless the root conftest.py allows it by name."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"
TESTS = """
import pytest

def test_skips():
    pytest.skip("no engine here")

def test_runs():
    assert True
"""


@pytest.mark.parametrize(("ci", "failed", "skipped"), [("true", 1, 0), ("", 0, 1)])
def test_a_skip_fails_only_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, failed: int, skipped: int
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_probe=TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=failed, skipped=skipped)
    if failed:
        result.stdout.fnmatch_lines(["*skipped in CI (Skipped: no engine here)*CI_ALLOWED_SKIPS*"])


def test_an_allowed_skip_stays_a_skip_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    allowed = CONFTEST.read_text().replace(
        "CI_ALLOWED_SKIPS: dict[str, str] = {",
        'CI_ALLOWED_SKIPS: dict[str, str] = {\n    "test_probe.py::test_skips": "a reason",',
    )
    pytester.makeconftest(allowed)
    pytester.makepyfile(test_probe=TESTS)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1, skipped=1)
