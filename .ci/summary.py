"""Print the suite's closing line from the JUnit reports `make test` leaves in
.cache/reports (emptied when `make test` starts): test cases only."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPORTS = Path(__file__).resolve().parent.parent / ".cache" / "reports"


def main() -> int:
    passed = failed = skipped = 0
    for report in sorted(REPORTS.glob("*.xml")):
        for suite in ET.parse(report).getroot().iter("testsuite"):  # noqa: S314 (our own report)
            tests = int(suite.get("tests", 0))
            bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            skip = int(suite.get("skipped", 0))
            passed += tests - bad - skip
            failed += bad
            skipped += skip
    print(f"ci: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
