"""The report's closed-hours section, figures worked out by hand (issue 18 point 1).

Two weeks, local days 2026-04-13..26 (no holiday in them), both branches open 08:00-20:00
every day, so 14 x 12 = 168 closed hours per meter. The closed_hours points are what the
gateway's detector (edge/hours/waste.py) makes of the hourly points, run here over them; both
go to a real influxd and the report reads them back with InfluxQL.

aby (DK1, electricity 100 g/kWh; Kredsløb heat 40 kg/MWh):
  main  electricity  5 kWh/h open, 0.5 closed; a 2 kW light left on from 20 April 22:00 to
                     21 April 06:00: 8 hours at 2.5. All hours: 14 x (12 x 5 + 12 x 0.5) + 8 x 2
                     = 940 kWh; closed: 168 x 0.5 + 16 = 100 kWh (10.64 %); waste 8 x (2.5 -
                     0.5) = 16 kWh, x 0.1 kg/kWh = 1.6 kg CO2e.
  heat  district     12 kWh/h open, 2 closed: all 14 x 168 = 2352 kWh; closed 336 (14.29 %);
        heating      no waste.
kbh (DK2):
  el    electricity  4 kWh/h open, 1 closed: all 840 kWh, closed 168 (20 %), no waste.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from openbranch.dashboards.report import (
    InfluxSource,
    ReportOptions,
    StoreSource,
    build_report,
    load_branches,
    load_factor_table,
    write_html,
)
from openbranch.dashboards.report.closed import CLOSED_COLOUR, WASTE_COLOUR, ClosedMonth
from openbranch.dashboards.report.tables import report_tables
from openbranch.edge.core import schema
from openbranch.edge.core.schedule import OpeningHours
from openbranch.edge.hours.calendar import Calendar
from openbranch.edge.hours.waste import WasteDetector, closed_by
from openbranch.edge.telemetry.outbox import Outbox
from tests.dashboards.report import handmade
from tests.dashboards.report.test_html_chromium import chromium, colour_counts, near, read_png, rgb
from tests.services import Influxd
from tests.support.hourly import hourly

TZ = ZoneInfo("Europe/Copenhagen")
FIRST, LAST = date(2026, 4, 13), date(2026, 4, 26)
EL, DH = schema.Carrier.ELECTRICITY.value, schema.Carrier.DISTRICT_HEATING.value
DAY = [{"start": "08:00", "end": "20:00", "mode": "staffed"}]
WEEK = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), DAY)
HOURS = OpeningHours.model_validate({"weekly": WEEK})


def light(t: datetime) -> float:
    if 8 <= t.hour < 20:
        return 5.0
    on = (t.date() == date(2026, 4, 20) and t.hour >= 22) or (
        t.date() == date(2026, 4, 21) and t.hour < 6
    )
    return 2.5 if on else 0.5


def heat(t: datetime) -> float:
    return 12.0 if 8 <= t.hour < 20 else 2.0


def kbh_el(t: datetime) -> float:
    return 4.0 if 8 <= t.hour < 20 else 1.0


def lines() -> list[str]:
    """The hourly points and the closed_hours points each branch's detector made of them."""
    out = []
    for branch, meters in (
        ("aby", [("main", EL, light), ("heat", DH, heat)]),
        ("kbh", [("el", EL, kbh_el)]),
    ):
        detector = WasteDetector(branch=branch, closed=closed_by(Calendar(HOURS, TZ)), tz=TZ)
        for device, carrier, use in meters:
            readings = list(
                hourly(
                    branch=branch, device=device, carrier=carrier, first=FIRST, last=LAST,
                    tz=TZ, use=use,
                )
            )  # fmt: skip
            judged = detector.observe(readings).readings
            out += [r.to_line() for r in readings + judged]
    return out


def options(tmp_path: Path) -> ReportOptions:
    inputs = handmade.write_inputs(tmp_path)
    return ReportOptions(
        first=FIRST,
        last=LAST,
        factors=load_factor_table(inputs["factors"]),
        branches=load_branches([inputs["branches"]]),
    )


EXPECTED = [
    # branch, carrier, hours, excess hours, closed, all hours, waste, waste kg CO2e
    ("aby", DH, 168, 0, Decimal(336), Decimal(2352), Decimal(0), Decimal(0)),
    ("aby", EL, 168, 8, Decimal(100), Decimal(940), Decimal(16), Decimal("1.6")),
    ("kbh", EL, 168, 0, Decimal(168), Decimal(840), Decimal(0), Decimal(0)),
]


def figures(m: ClosedMonth) -> tuple[object, ...]:
    return (
        m.branch, m.carrier, m.hours, m.excess_hours, m.consumption, m.total, m.waste,
        m.waste_co2e_kg,
    )  # fmt: skip


def test_closed_hours_section_from_influxdb_and_from_a_store(
    tmp_path: Path, influxd: Influxd, influx_db: str
) -> None:
    data = lines()
    influxd.write("\n".join(data) + "\n", influx_db)
    with InfluxSource(url=influxd.url, database=influx_db) as source:
        report = build_report(source, options(tmp_path))
    assert [figures(m) for m in report.closed] == EXPECTED
    assert {m.month for m in report.closed} == {date(2026, 4, 1)}
    aby_el = report.closed[1]
    assert aby_el.share is not None and round(aby_el.share, 4) == Decimal("0.1064")
    assert report.closed[2].share == Decimal("0.2")
    table = next(t for t in report_tables(report) if t.name == "ClosedHours")
    assert table.rows[1] == (
        "aby", "2026-04", EL, "kWh", 168, 8, Decimal("100.000"), Decimal("940.000"),
        Decimal("0.1064"), Decimal("16.000"), Decimal("1.600"),
    )  # fmt: skip
    # the same data from a gateway's local store gives the same section
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.append_lines(data)
    with StoreSource(tmp_path / "o.db") as store:
        local = build_report(store, options(tmp_path))
    assert [figures(m) for m in local.closed] == EXPECTED


def test_closed_hours_chart_renders_in_headless_chromium(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.append_lines(lines())
    with StoreSource(tmp_path / "o.db") as store:
        report = build_report(store, options(tmp_path))
    (page,) = write_html(report, tmp_path / "report.html")
    html = page.read_text(encoding="utf-8")
    assert '<section id="closed" class="wide"><h2>Closed-hours energy</h2>' in html
    assert "Aby Bibliotek" in html and "waste 16.0 kWh" in html
    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri())
    assert shot.exists(), done.stderr.decode(errors="replace")[-2000:]
    _width, _height, rows = read_png(shot.read_bytes())
    counts = colour_counts(rows)
    # axis to 500 kWh over 480 px (of 1000 viewBox units shown at ~1150 px): aby 420 kWh up
    # to the base load and kbh 168, bars 20 units high; aby's waste 16 kWh: ~15 x 20 units
    assert near(counts, rgb(CLOSED_COLOUR)) > 3000
    assert near(counts, rgb(WASTE_COLOUR)) > 150
