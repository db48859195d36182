"""The annual library statistics on hand-made data, every figure worked out by hand, read from a
real influxd (and the same from a real local store).

The calendar of 2026 (Copenhagen; 1 January is a Thursday, so 261 weekdays and 52 Sundays):

aby (its own hours): Mon-Fri staffed 10:00-17:00 (7 h), Sunday self-service 00:00-24:00.
  A normal week: staffed 35 h, self-service 24 h.
  Weekdays closed: the public holidays 1 Jan, 2 Apr, 3 Apr, 6 Apr, 14 May, 25 May, 25 Dec (7);
  24 and 31 Dec (closed by default, 2); the fleet's municipality closure 2 Jan (merged into
  the branch's own hours); an exception 27 Nov closed. 261 - 11 = 250 staffed days, one of
  them (23 Dec) an exception of 11 h: 249 x 7 + 11 = 1754 h.
  Sundays closed: Easter Sunday 5 Apr, Whit Sunday 24 May: 50 Sundays x 24 h, less the hour
  the clocks skip on 29 Mar, plus the hour repeated on 25 Oct: 1200 h.
kbh (the fleet's hours): Saturday staffed 10:00-14:00. 52 Saturdays less 26 Dec (Second Day of
  Christmas): 51 x 4 = 204 h; no self-service.

Recorded branch_mode (UTC):
aby: closed 2025-12-20 (the mode the year starts in); staffed 5 Jan 09:00-16:00 (7 h);
  self-service over the spring-forward Sunday, 28 Mar 23:00 - 29 Mar 22:00 (23 h); staffed
  1 Jun 08:00, an emergency 11:00-12:30 (3 h staffed, 1.5 h emergency), closed to the year's end.
kbh: nothing before 2 Jan 00:00Z (25 h not recorded: the year starts 31 Dec 23:00Z); then
  closed, self-service 1 Feb 09:00-10:00 (1 h).

Visits: aby's door 1000 (before the year: the baseline), 1040, 1100, 30 (reset: counts in
full), 50 on 31 Dec 22:30Z (23:30 local, still 2026), 70 at 23:30Z (2027): 40 + 60 + 30 + 20 =
150; aby's side door from its first reading in the year 5 -> 12: 7. 157 visits, 2 counters.
kbh has no counter: no figure (empty, not 0).

Admissions (entry control, running counts per UTC hour and mode): aby self-service 4 Jan
10:00Z written as 1, 2, 3 (the last is the hour's total) and 11:00Z 4; staffed 5 Jan 9 (not
self-service); self-service 28 Dec 2025 100 and 31 Dec 23:00Z (2027 local) 50, outside the
year: 3 + 4 = 7. kbh records none: no entry control, empty.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from openbranch.dashboards.report.source import InfluxSource, StoreSource
from openbranch.dashboards.report.statistics import (
    BranchStatistics,
    build_statistics,
    load_branch_calendars,
    normal_week,
    planned,
    statistics_tables,
)
from openbranch.edge.cli import main
from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.schedule import Mode
from openbranch.edge.core.yamlsource import ConfigError
from openbranch.edge.telemetry.outbox import Outbox
from tests.dashboards.report.handmade import entered
from tests.services import Influxd

D = Decimal
CPH = ZoneInfo("Europe/Copenhagen")
AFTER = datetime(2027, 1, 10, tzinfo=UTC)

BRANCHES = """\
municipality: {id: test, name: Test, price_area: DK1}
defaults:
  hours:
    weekly:
      sat: [{start: "10:00", end: "14:00", mode: staffed}]
    municipality_closures:
      - {date: 2026-01-02, reason: "municipal closing day"}
branches:
  - id: aby
    name: Aby Bibliotek
    floor_area_m2: 500
    hours:
      weekly:
        mon: &day [{start: "10:00", end: "17:00", mode: staffed}]
        tue: *day
        wed: *day
        thu: *day
        fri: *day
        sun: [{start: "00:00", end: "24:00", mode: self_service}]
      exceptions:
        - {date: 2026-11-27, closed: true, reason: staff training}
        - {date: 2026-12-23, reason: reading night,
           intervals: [{start: "10:00", end: "21:00", mode: staffed}]}
  - {id: kbh, name: KBH Bibliotek, floor_area_m2: 1000}
"""


def _mode(branch: str, when: datetime, mode: str) -> str:
    return Reading(
        branch=branch,
        device=schema.GATEWAY_DEVICE,
        measurement=schema.BRANCH_MODE,
        fields={schema.BRANCH_MODE_MODE.key: mode},
        time=when,
    ).to_line()


def _admission(when: datetime, mode: str, admitted: int) -> str:
    return Reading(
        branch="aby",
        device=schema.GATEWAY_DEVICE,
        measurement=schema.ADMISSION,
        fields={schema.ADMISSION_ADMITTED.key: admitted, schema.ADMISSION_REFUSED.key: 0},
        tags={schema.Tag.MODE.value: mode},
        time=when,
    ).to_line()


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def lines() -> list[str]:
    timed = [
        (_utc(2025, 12, 20, 12), _mode("aby", _utc(2025, 12, 20, 12), "closed")),
        (_utc(2026, 1, 5, 9), _mode("aby", _utc(2026, 1, 5, 9), "staffed")),
        (_utc(2026, 1, 5, 16), _mode("aby", _utc(2026, 1, 5, 16), "closed")),
        (_utc(2026, 3, 28, 23), _mode("aby", _utc(2026, 3, 28, 23), "self_service")),
        (_utc(2026, 3, 29, 22), _mode("aby", _utc(2026, 3, 29, 22), "closed")),
        (_utc(2026, 6, 1, 8), _mode("aby", _utc(2026, 6, 1, 8), "staffed")),
        (_utc(2026, 6, 1, 11), _mode("aby", _utc(2026, 6, 1, 11), "emergency")),
        (_utc(2026, 6, 1, 12, 30), _mode("aby", _utc(2026, 6, 1, 12, 30), "closed")),
        (_utc(2026, 1, 2), _mode("kbh", _utc(2026, 1, 2), "closed")),
        (_utc(2026, 2, 1, 9), _mode("kbh", _utc(2026, 2, 1, 9), "self_service")),
        (_utc(2026, 2, 1, 10), _mode("kbh", _utc(2026, 2, 1, 10), "closed")),
    ]
    for when, value in (
        (_utc(2025, 12, 31, 20), 1000),
        (_utc(2026, 1, 5, 10), 1040),
        (_utc(2026, 3, 1, 10), 1100),
        (_utc(2026, 6, 1, 10), 30),
        (_utc(2026, 12, 31, 22, 30), 50),
        (_utc(2026, 12, 31, 23, 30), 70),
    ):
        timed.append((when, entered("aby", "door", when, value)))
    for when, value in ((_utc(2026, 2, 1, 10), 5), (_utc(2026, 2, 2, 10), 12)):
        timed.append((when, entered("aby", "side", when, value)))
    for when, mode, count in (
        (_utc(2025, 12, 28, 10), "self_service", 100),
        (_utc(2026, 1, 4, 10), "self_service", 1),
        (_utc(2026, 1, 4, 10), "self_service", 2),
        (_utc(2026, 1, 4, 10), "self_service", 3),
        (_utc(2026, 1, 4, 11), "self_service", 4),
        (_utc(2026, 1, 5, 9), "staffed", 9),
        (_utc(2026, 12, 31, 23), "self_service", 50),
    ):
        timed.append((when, _admission(when, mode, count)))
    return [line for _, line in sorted(timed, key=lambda t: t[0])]


@pytest.fixture
def branches(tmp_path: Path) -> Path:
    path = tmp_path / "branches.yaml"
    path.write_text(BRANCHES, encoding="utf-8")
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        outbox.append_lines(lines())
    return path


def _by_branch(rows: list[BranchStatistics]) -> dict[str, BranchStatistics]:
    return {r.branch: r for r in rows}


def test_a_dst_week_by_hand(branches: Path) -> None:
    hours = load_branch_calendars([branches])["aby"].hours
    assert hours is not None
    week = normal_week(hours)
    assert (week[Mode.STAFFED], week[Mode.SELF_SERVICE]) == (35, 24)
    spring = planned(
        hours, CPH, datetime(2026, 3, 23, tzinfo=CPH), datetime(2026, 3, 30, tzinfo=CPH)
    )
    assert (spring[Mode.STAFFED], spring[Mode.SELF_SERVICE]) == (35, 23)
    autumn = planned(
        hours, CPH, datetime(2026, 10, 19, tzinfo=CPH), datetime(2026, 10, 26, tzinfo=CPH)
    )
    assert (autumn[Mode.STAFFED], autumn[Mode.SELF_SERVICE]) == (35, 25)
    easter = planned(
        hours, CPH, datetime(2026, 3, 30, tzinfo=CPH), datetime(2026, 4, 6, tzinfo=CPH)
    )
    # Maundy Thursday, Good Friday and Easter Sunday closed: Mon-Wed staffed, no Sunday
    assert (easter[Mode.STAFFED], easter[Mode.SELF_SERVICE]) == (21, 0)


def test_the_year_from_influxd_by_hand(branches: Path, influxd: Influxd, influx_db: str) -> None:
    influxd.write("\n".join(lines()), influx_db)
    calendars = load_branch_calendars([branches])
    with InfluxSource(url=influxd.url, database=influx_db) as source:
        rows = _by_branch(build_statistics(source, calendars, 2026, now=AFTER))
    aby, kbh = rows["aby"], rows["kbh"]
    assert (aby.week_staffed, aby.week_self_service, aby.week_open) == (35, 24, 59)
    assert (aby.year_staffed, aby.year_self_service, aby.year_open) == (1754, 1200, 2954)
    assert aby.actual(Mode.STAFFED) == 10
    assert aby.actual(Mode.SELF_SERVICE) == 23  # the spring-forward Sunday: 23 real hours
    assert aby.actual(Mode.EMERGENCY) == D("1.5")
    assert aby.actual_open == 33
    assert aby.not_recorded == 0
    assert (aby.visits, aby.counters, aby.admissions_self_service) == (157, 2, 7)
    assert (kbh.week_staffed, kbh.week_self_service) == (4, 0)
    assert (kbh.year_staffed, kbh.year_self_service) == (204, 0)
    assert (kbh.actual_open, kbh.not_recorded) == (1, 25)
    assert (kbh.visits, kbh.counters, kbh.admissions_self_service) == (None, 0, None)


def test_local_store_agrees_and_a_year_not_over_counts_to_now(
    branches: Path, store: Path, influxd: Influxd, influx_db: str
) -> None:
    influxd.write("\n".join(lines()), influx_db)
    calendars = load_branch_calendars([branches])
    with StoreSource(store) as local, InfluxSource(url=influxd.url, database=influx_db) as central:
        a = statistics_tables(build_statistics(local, calendars, 2026, now=AFTER), 2026, "x")
        b = statistics_tables(build_statistics(central, calendars, 2026, now=AFTER), 2026, "x")
        assert a[0].rows == b[0].rows
        mid = _by_branch(
            build_statistics(local, calendars, 2026, now=_utc(2026, 3, 29, 10), only=["aby"])
        )["aby"]
    # 28 Mar 23:00Z to now (29 Mar 10:00Z): 11 h self-service so far
    assert (mid.actual(Mode.STAFFED), mid.actual(Mode.SELF_SERVICE)) == (7, 11)


def test_cli_csv_and_xlsx(branches: Path, store: Path, tmp_path: Path) -> None:
    base = ["report", "statistics", "--year", "2026", "--store", str(store)]
    base += ["--branches", str(branches)]
    out = tmp_path / "s.csv"
    assert main([*base, "--format", "csv", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8").splitlines()
    assert text[0].startswith("branch,name,visits (people counters),people counters,admissions")
    assert text[2].startswith("kbh,KBH Bibliotek,,0,,4.00,0.00,4.00,204.00,0.00,204.00,")
    notes = (tmp_path / "s-notes.csv").read_text(encoding="utf-8")
    assert "no entry control" in notes and "local store" in notes
    xlsx = tmp_path / "s.xlsx"
    assert main([*base, "--format", "xlsx", "--out", str(xlsx)]) == 0
    wb = load_workbook(xlsx, read_only=True)
    try:
        assert wb.sheetnames == ["Statistics", "Notes"]
        table = list(wb["Statistics"].iter_rows(values_only=True))
        header, aby = table[0], table[1]
        assert aby[header.index("visits (people counters)")] == 157
        assert aby[header.index("admissions in self-service hours (entry control)")] == 7
        assert aby[header.index("self-service hours, year (calendar)")] == 1200
        assert aby[header.index("open hours, year (recorded)")] is not None
    finally:
        wb.close()


def test_bad_hours_name_file_line_field(tmp_path: Path) -> None:
    bad = tmp_path / "b.yaml"
    bad.write_text(
        "branches:\n  - id: aby\n    hours:\n      weekly:\n"
        '        mon: [{start: "10:00", end: "09:00", mode: staffed}]\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_branch_calendars([bad])
    assert "b.yaml:5" in str(caught.value) and "weekly.mon" in str(caught.value)
