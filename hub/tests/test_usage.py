"""The usage ledger and its report (gpuhub_hub.usage, gpuhub-admin usage)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gpuhub_hub import usage
from gpuhub_hub.admin.cli import main
from hubsettings import SettingsFactory

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def ledger(path: Path) -> None:
    events = [
        usage.Event("start", at(0), "alice", "", ("students",), "gpu", 1),
        usage.Event("start", at(1), "bob", "", ("staff", "students"), "cpu", 0),
        usage.Event("stop", at(2), "alice", ""),
        usage.Event("start", at(3), "alice", "big", ("students",), "gpu2", 2),
        # The hub died before bob's stop was written: his next start closes the session.
        usage.Event("start", at(5), "bob", "", ("staff", "students"), "cpu", 0),
        usage.Event("stop", at(6), "bob", ""),
        usage.Event("stop", at(7), "alice", "big"),
        usage.Event("start", at(8), "carol", "", (), "cpu", 0),  # still running
    ]
    for event in events:
        usage.record(path, event)


def test_sessions_pair_starts_and_stops_per_server(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    ledger(path)
    with path.open("a") as cut:
        cut.write('{"event":"stop","time":"2026-12-01T1')  # a write cut short
    found = [(s.user, s.server, s.start, s.stop) for s in usage.sessions(usage.read(path))]
    assert found == [
        ("alice", "", T0, T0 + timedelta(hours=2)),
        ("bob", "", T0 + timedelta(hours=1), T0 + timedelta(hours=5)),
        ("bob", "", T0 + timedelta(hours=5), T0 + timedelta(hours=6)),
        ("alice", "big", T0 + timedelta(hours=3), T0 + timedelta(hours=7)),
        ("carol", "", T0 + timedelta(hours=8), None),
    ]


def test_the_report_sums_hours_per_user_and_group_inside_its_window(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    ledger(path)
    sessions = usage.sessions(usage.read(path))
    now = T0 + timedelta(hours=10)
    by_user = {
        r.key: (r.sessions, r.server_hours, r.gpu_hours)
        for r in usage.report(sessions, T0, "user", now)
    }
    assert by_user == {"alice": (2, 6.0, 10.0), "bob": (2, 5.0, 0.0), "carol": (1, 2.0, 0.0)}
    by_group = {
        r.key: (r.server_hours, r.gpu_hours, len(r.users))
        for r in usage.report(sessions, T0, "group", now)
    }
    assert by_group == {"students": (11.0, 10.0, 2), "staff": (5.0, 0.0, 1), "-": (2.0, 0.0, 1)}
    # From hour 4 on: alice's second session counts 3 of its 4 hours.
    late = {r.key: r.gpu_hours for r in usage.report(sessions, at_dt(4), "user", now)}
    assert late["alice"] == 6.0


def at_dt(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_since_takes_spans_and_dates() -> None:
    now = T0
    assert usage.parse_since("7d", now) == T0 - timedelta(days=7)
    assert usage.parse_since("90m", now) == T0 - timedelta(minutes=90)
    assert usage.parse_since("2026-11-30", now) == datetime(2026, 11, 30, tzinfo=UTC)


def test_gpuhub_admin_usage_as_table_csv_and_json(
    tmp_path: Path, settings_file: SettingsFactory
) -> None:
    path = tmp_path / "usage.jsonl"
    now = datetime.now(UTC)
    usage.record(
        path,
        usage.Event("start", (now - timedelta(hours=3)).isoformat(), "ann", "", ("lab",), "gpu", 2),
    )
    usage.record(path, usage.Event("stop", (now - timedelta(hours=1)).isoformat(), "ann", ""))
    settings = settings_file(spawner={"usage_file": str(path)})

    def admin(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        return main(["--settings", str(settings), *args], io.StringIO(), out), out.getvalue()

    code, text = admin("--json", "usage", "--since", "1d", "--by", "group")
    assert code == 0, text
    (row,) = json.loads(text)["usage"]
    assert (row["group"], row["sessions"], row["users"]) == ("lab", 1, 1)
    assert abs(row["server_hours"] - 2) < 0.01
    assert abs(row["gpu_hours"] - 4) < 0.01
    code, text = admin("usage", "--format", "csv")
    assert text.splitlines()[0] == "user,sessions,users,server_hours,gpu_hours"
    assert text.splitlines()[1].startswith("ann,1,1,2.0")
    code, text = admin("usage", "--since", "yesterday")
    assert code == 2


def test_hours_per_day_are_cut_at_midnight_utc(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    night = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)
    usage.record(path, usage.Event("start", night.isoformat(), "ann", "", ("lab",), "gpu", 2))
    usage.record(path, usage.Event("stop", (night + timedelta(hours=2.5)).isoformat(), "ann", ""))
    sessions = usage.sessions(usage.read(path))
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    days = usage.daily(sessions, night - timedelta(days=1), "group", now)
    assert sorted(days) == [
        datetime(2026, 11, 30).date(),
        datetime(2026, 12, 1).date(),
        datetime(2026, 12, 2).date(),
        datetime(2026, 12, 3).date(),
    ]
    first, second = days[night.date()]["lab"], days[datetime(2026, 12, 2).date()]["lab"]
    assert (first.server_hours, first.gpu_hours) == (1.0, 2.0)
    assert (second.server_hours, second.gpu_hours) == (1.5, 3.0)
    assert days[datetime(2026, 12, 3).date()] == {}
    # The days add up to the report's totals.
    (row,) = usage.report(sessions, night - timedelta(days=1), "group", now)
    assert (row.server_hours, row.gpu_hours) == (2.5, 5.0)


def test_the_chart_draws_each_groups_hours_on_its_days(
    tmp_path: Path, settings_file: SettingsFactory
) -> None:
    from gpuhub_hub.chart import COLOURS, LEFT, MARGIN, PANEL, WIDTH
    from PIL import Image

    path = tmp_path / "usage.jsonl"
    now = datetime.now(UTC)
    start = now - timedelta(hours=30)
    usage.record(path, usage.Event("start", start.isoformat(), "ann", "", ("lab",), "gpu", 1))
    usage.record(path, usage.Event("stop", (start + timedelta(hours=4)).isoformat(), "ann", ""))
    usage.record(path, usage.Event("start", start.isoformat(), "bo", "", ("ta",), "cpu", 0))
    usage.record(path, usage.Event("stop", (start + timedelta(hours=1)).isoformat(), "bo", ""))
    settings = settings_file(spawner={"usage_file": str(path)})
    png = tmp_path / "usage.png"
    out = io.StringIO()
    argv = ["--settings", str(settings), "usage", "--since", "3d", "--by", "group"]
    assert main([*argv, "--chart", str(png)], io.StringIO(), out) == 0, out.getvalue()
    assert f"chart: {png}" in out.getvalue()
    image = Image.open(png).convert("RGB")
    assert image.size[0] == WIDTH

    def colour_in(top: int, bottom: int, hexa: str) -> int:
        rgb = tuple(int(hexa[i : i + 2], 16) for i in (1, 3, 5))
        box = image.crop((LEFT, top, WIDTH, bottom))
        return sum(1 for pixel in box.getdata() if pixel == rgb)

    gpu_panel = (MARGIN, MARGIN + PANEL)
    server_panel = (2 * MARGIN + PANEL, 2 * MARGIN + 2 * PANEL)
    lab, ta = COLOURS[0], COLOURS[1]  # lab has the GPU-hours: first in the legend
    assert colour_in(*gpu_panel, lab) > 0
    assert colour_in(*gpu_panel, ta) == 0  # no GPU-hours for ta
    assert colour_in(*server_panel, lab) > 3 * colour_in(*server_panel, ta) > 0
