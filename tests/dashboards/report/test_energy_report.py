"""The climate report on hand-made data (``handmade.py``): every figure worked out by hand, and
the report from a real influxd equal to the report from a real local store (an Outbox)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from openbranch.dashboards.report import (
    InfluxSource,
    ReportOptions,
    StoreSource,
    build_report,
    load_branches,
    load_degree_days,
    load_factor_table,
    load_hourly_factors,
)
from openbranch.dashboards.report.energy import EnergyReport
from openbranch.dashboards.report.tables import report_tables
from openbranch.edge.cli import main
from openbranch.edge.core import schema
from openbranch.edge.core.yamlsource import ConfigError
from openbranch.edge.telemetry.outbox import Outbox
from tests.conftest import start_or_fail
from tests.dashboards.report import handmade
from tests.dashboards.report.handmade import DH, EL
from tests.services import Influxd

D = Decimal


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        outbox.append_lines(handmade.march_lines())
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    return handmade.write_inputs(tmp_path)


def options(inputs: dict[str, Path], **kw: object) -> ReportOptions:
    base: dict[str, object] = {
        "first": date(2026, 3, 1),
        "last": date(2026, 3, 31),
        "factors": load_factor_table(inputs["factors"]),
        "branches": load_branches([inputs["branches"]]),
    }
    base.update(kw)
    return ReportOptions(**base)  # type: ignore[arg-type]


def report_from_store(path: Path, opts: ReportOptions) -> EnergyReport:
    with StoreSource(path) as source:
        return build_report(source, opts)


def month(report: EnergyReport, branch: str, carrier: str):  # type: ignore[no-untyped-def]
    (found,) = [m for m in report.months if m.branch == branch and m.carrier == carrier]
    return found


def test_march_by_hand_annual_factors(store: Path, inputs: dict[str, Path]) -> None:
    r = report_from_store(store, options(inputs))
    main_ = month(r, "aby", EL)
    # March 2026 local: 1 March 00:00 CET = 28 Feb 23:00Z .. 1 April 00:00 CEST = 31 March
    # 22:00Z: 31 x 24 - 1 = 743 hours. 743 x 2.5 = 1857.5 kWh; February's 99 kWh is outside.
    assert main_.month == date(2026, 3, 1)
    assert main_.hours_in_period == 743
    assert main_.consumption == D("1857.5")
    assert main_.hours_present == 743 and main_.coverage == 1
    # interpolated: 6 hours x 2.5 = 15 kWh; measured 1842.5 kWh
    assert main_.interpolated == D("15.0") and main_.measured == D("1842.5")
    assert main_.interpolated_share == D("15") / D("1857.5")
    # DK1 2026: 100 g/kWh -> 1857.5 x 100 g = 185.75 kg
    assert main_.co2e_location_kg == D("185.75")
    assert main_.factor_basis == "annual DK1 2026"

    heat = month(r, "aby", DH)
    # 16 March 00:00 CET (15 March 23:00Z) to 1 April 00:00 CEST (31 March 22:00Z):
    # 16 days x 24 - 1 (the spring-forward night) = 383 hours x 10 kWh = 3830 kWh
    assert heat.hours_present == 383 and heat.consumption == D("3830.0")
    assert heat.coverage == D(383) / D(743)  # the meter started mid-month
    # Kredsløb 2026: 40 kg/MWh = 40 g/kWh -> 3830 x 40 g = 153.2 kg
    assert heat.co2e_location_kg == D("153.2")

    kbh = month(r, "kbh", EL)
    # 743 - 3 missing = 740 hours; the first hour counts once, the later 5 kWh: 739 x 4 + 5
    assert kbh.hours_present == 740 and kbh.consumption == D("2961.0")
    assert kbh.coverage == D(740) / D(743)
    # DK2 has no 2026 factor: the 2025 one (50 g/kWh) is used, and said: 2961 x 50 = 148.05 kg
    assert kbh.co2e_location_kg == D("148.05")
    assert any("DK2 in 2026: the 2025 factor" in n for n in r.notes)
    assert any("DK2 2025 is preliminary" in n for n in r.notes)

    aby = next(b for b in r.branches if b.info.id == "aby")
    # energy = 1857.5 + 3830 = 5687.5 kWh over 500 m² = 11.375 kWh/m²; per year:
    # 11.375 x 8760 / 743 = 134.1117... kWh/m²
    assert aby.energy_kwh == D("5687.5") and aby.kwh_per_m2 == D("11.375")
    assert aby.kwh_per_m2_year is not None
    assert aby.kwh_per_m2_year.quantize(D("0.01")) == D("134.11")
    # visitors: 0 -> 100 -> 250 -> 20 (reset, counts 20) -> 50: 100 + 150 + 20 + 30 = 300
    assert aby.visitors == 300
    assert aby.kwh_per_visitor == D("5687.5") / 300
    assert aby.co2e_location_kg == D("185.75") + D("153.2")
    assert aby.co2e_market_kg is None  # no supplier factor given
    # ranking by kWh/m²: aby 11.375, kbh 2961 / 1000 = 2.961
    assert [b.info.id for b in r.ranking()] == ["aby", "kbh"]

    q = {(m.branch, m.device): m for m in r.quality}
    assert q[("aby", "main")].resets == 1  # 1100 -> 50; 70 -> 65 is a dip
    assert q[("aby", "main")].interpolated_hours == 6
    assert q[("aby", "main")].interpolated_runs == 2
    assert q[("aby", "main")].missing_hours == 0 and q[("aby", "main")].missing_runs == 0
    assert q[("aby", "heat")].missing_hours == 360 and q[("aby", "heat")].missing_runs == 1
    assert q[("aby", "heat")].first_hour_ns == int(handmade.HEAT_START.timestamp()) * 10**9
    assert q[("kbh", "el")].missing_hours == 3 and q[("kbh", "el")].missing_runs == 1
    assert q[("kbh", "el")].resets == 1  # 900 -> 700 within one day


def test_hourly_factors_market_degree_days_baseline(store: Path, inputs: dict[str, Path]) -> None:
    r = report_from_store(
        store,
        options(
            inputs,
            hourly=load_hourly_factors(inputs["hourly"]),
            market_factor=D(30),
            market_source="test supplier",
            degree_days=load_degree_days(inputs["degree_days"]),
            normal_degree_days=D(3000),
            baseline_year=2025,
        ),
    )
    # aby (DK1): 24 hours x 2.5 kWh x 200 g + 719 hours x 2.5 kWh x 100 g (annual)
    #          = 12000 g + 179750 g = 191.75 kg
    main_ = month(r, "aby", EL)
    assert main_.co2e_location_kg == D("191.75")
    assert main_.factor_basis == "hourly DK1 + annual DK1 2026"
    # kbh (DK2): first 10 hours: 5 + 9 x 4 = 41 kWh x 20 g = 820 g; the other 2920 kWh x 50 g
    #          = 146000 g; 146.82 kg
    assert month(r, "kbh", EL).co2e_location_kg == D("146.82")
    assert r.hourly_factor_hours == 24 + 10
    assert r.annual_factor_hours == (743 - 24) + (740 - 10)
    # market-based: electricity x 30 g/kWh; heat as location-based (40 g/kWh)
    aby = next(b for b in r.branches if b.info.id == "aby")
    assert aby.co2e_market_kg == D("1857.5") * 30 / 1000 + D("153.2")  # 55.725 + 153.2
    # degree days: 31 days x (17 - 5) = 372; heat per degree day 3830 / 372 = 10.2956...
    assert month(r, "aby", DH).degree_days == 372
    assert aby.heat_per_degree_day == D("3830") / 372
    assert aby.heat_normalised_kwh is not None
    assert aby.heat_normalised_kwh.quantize(D("0.001")) == D("30887.097")  # x 3000
    # baseline March 2025: 743 x 2 = 1486 kWh; change (5687.5 - 1486) / 1486 = 2.8274...
    assert aby.baseline_energy_kwh == D("1486.0")
    assert aby.change is not None and aby.change.quantize(D("0.0001")) == D("2.8274")
    kbh = next(b for b in r.branches if b.info.id == "kbh")
    assert kbh.baseline_energy_kwh == 0 and kbh.change is None
    assert any("kbh: no data in the baseline year 2025" in n for n in r.notes)


def test_october_has_745_hours(tmp_path: Path, inputs: dict[str, Path]) -> None:
    # October 2026 local: 1 Oct 00:00 CEST = 30 Sep 22:00Z .. 1 Nov 00:00 CET = 31 Oct 23:00Z:
    # 31 x 24 + 1 = 745 hours. One hour on each side of it must not count.
    start = datetime(2026, 9, 30, 22, tzinfo=UTC)
    lines = [
        handmade.hour("aby", "main", EL, start + timedelta(hours=i), 1.0) for i in range(-1, 746)
    ]
    with Outbox(tmp_path / "oct.db") as outbox:
        outbox.append_lines(lines)
    r = report_from_store(
        tmp_path / "oct.db", options(inputs, first=date(2026, 10, 1), last=date(2026, 10, 31))
    )
    m = month(r, "aby", EL)
    assert (m.hours_in_period, m.hours_present, m.consumption) == (745, 745, D("745.0"))


def test_two_months_and_a_partial_one(store: Path, inputs: dict[str, Path]) -> None:
    # 15 March .. 31 March: 17 days; 17 x 24 - 1 = 407 hours; aby main 407 x 2.5 = 1017.5
    r = report_from_store(store, options(inputs, first=date(2026, 3, 15)))
    m = month(r, "aby", EL)
    assert (m.hours_in_period, m.consumption) == (407, D("1017.5"))
    # --branch kbh only
    only = report_from_store(store, options(inputs, only=["kbh"]))
    assert {b.info.id for b in only.branches} == {"kbh"}


@pytest.mark.services
def test_influxd_and_local_store_agree(
    store: Path, inputs: dict[str, Path], influxd: Influxd, influx_db: str
) -> None:
    influxd.write("\n".join(handmade.march_lines()), influx_db)
    opts = options(
        inputs,
        hourly=load_hourly_factors(inputs["hourly"]),
        market_factor=D(30),
        degree_days=load_degree_days(inputs["degree_days"]),
        baseline_year=2025,
    )
    local = report_from_store(store, opts)
    with InfluxSource(url=influxd.url, database=influx_db) as source:
        central = build_report(source, opts)
    tables_local = [t for t in report_tables(local) if t.name != "Summary"]
    tables_central = [t for t in report_tables(central) if t.name != "Summary"]
    for a, b in zip(tables_local, tables_central, strict=True):
        if a.name == "Method":
            continue  # names its source
        assert a.rows == b.rows, a.name
    assert central.totals() == local.totals()
    assert central.totals()[EL] == D("1857.5") + D("2961")  # to the kWh, and beyond
    assert central.co2e_location_kg == local.co2e_location_kg


def _cli(store: Path, inputs: dict[str, Path], fmt: str, out: Path) -> list[str]:
    return [
        "report", "energy", "--from", "2026-03-01", "--to", "2026-03-31", "--format", fmt,
        "--store", str(store), "--branches", str(inputs["branches"]),
        "--factors", str(inputs["factors"]), "--hourly-factors", str(inputs["hourly"]),
        "--degree-days", str(inputs["degree_days"]), "--baseline", "2025",
        "--market-factor", "30", "--out", str(out),
    ]  # fmt: skip


def test_cli_xlsx_has_the_sheets(
    store: Path, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.xlsx"
    assert main(_cli(store, inputs, "xlsx", out)) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    wb = load_workbook(out, read_only=True)
    try:
        assert wb.sheetnames == [
            "Summary", "Monthly", "Branches", "Factors", "DataQuality", "ClosedHours", "Method",
        ]  # fmt: skip
        monthly = list(wb["Monthly"].iter_rows(values_only=True))
        header = monthly[0]
        aby_el = next(r for r in monthly[1:] if r[0] == "aby" and r[2] == EL)
        assert aby_el[header.index("consumption")] == 1857.5
        assert aby_el[header.index("hours in period")] == 743
        assert aby_el[header.index("CO2e location-based kg")] == 191.75
        factors = list(wb["Factors"].iter_rows(values_only=True))
        assert any(r[1] == "DK2" and r[2] == 2025 and r[7] == "yes" for r in factors)
    finally:
        wb.close()


def test_cli_csv_and_html(store: Path, inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    assert main(_cli(store, inputs, "csv", out)) == 0
    text = out.read_text(encoding="utf-8").splitlines()
    assert text[0].startswith("branch,month,carrier,unit,consumption")
    assert any(line.startswith("kbh,2026-03,electricity,kWh,2961.000,1,743,740,") for line in text)
    quality = (tmp_path / "r-dataquality.csv").read_text(encoding="utf-8")
    assert "aby,main,electricity,2026-02-28 23:00Z,2026-03-31 21:00Z,743,743,0,0,6,2," in quality
    html_out = tmp_path / "r.html"
    assert main(_cli(store, inputs, "html", html_out)) == 0
    page = html_out.read_text(encoding="utf-8")
    assert (
        page.count("<svg") == 2
        and "<script" not in page
        and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert "@media print" in page and "Aby Bibliotek" in page


def test_bad_inputs_name_file_line_field(tmp_path: Path) -> None:
    bad = tmp_path / "factors.yaml"
    bad.write_text(
        "factors:\n  - {carrier: electricity, year: 2026, value: 1, unit: g/kWh,\n"
        "     method: location-based, source: x y z, preliminary: false}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"factors.yaml:2: factors\[0\]"):
        load_factor_table(bad)
    csv = tmp_path / "h.csv"
    csv.write_text("HourUTC,PriceArea,CO2Emission\n2026-03-01T00:00,DK1,lots\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"h.csv:2: CO2Emission: 'lots' is not a number"):
        load_hourly_factors(csv)
    dd = tmp_path / "dd.csv"
    dd.write_text("date,degree_days\n2026-03-01,1\n2026-13-01,2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dd.csv:3: date"):
        load_degree_days(dd)


def test_shipped_factor_table_is_honest() -> None:
    table = load_factor_table()
    assert {r.area for r in table.rows if r.carrier == EL} == {"DK1", "DK2"}
    assert {r.supplier for r in table.rows if r.carrier == DH} >= {"Kredsløb", "HOFOR"}
    for row in table.rows:
        assert row.source and row.year >= 2020
        assert row.preliminary or row.verified  # an unverified value is never shown as final
    assert schema.Carrier(EL) and schema.Carrier(DH)


def test_cli_from_a_gateway_config_reports_its_branch_only(
    store: Path, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"branch: {{id: kbh, name: KBH, timezone: Europe/Copenhagen}}\n"
        f"store: {{path: {store.name}}}\ndevices: []\n",
        encoding="utf-8",
    )  # the store path is relative to the config's folder
    out = tmp_path / "kbh.csv"
    args = [
        "report", "energy", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "csv",
        "--config", str(config), "--factors", str(inputs["factors"]), "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0
    assert "report: 1 branches" in capsys.readouterr().out
    rows = out.read_text(encoding="utf-8").splitlines()[1:]
    assert [r.split(",")[:5] for r in rows] == [["kbh", "2026-03", EL, "kWh", "2961.000"]]
    # no branches file: no price area, so no CO2e, and the report says why
    summary = (tmp_path / "kbh-summary.csv").read_text(encoding="utf-8")
    assert "kbh: no electricity factor (price area unknown)" in summary
    assert "kbh: no floor area" in summary


def test_a_branch_in_another_time_zone_has_its_own_months(
    store: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    utc = tmp_path / "utc.yaml"
    utc.write_text(
        "branches:\n  - {id: aby, floor_area_m2: 500, timezone: UTC, price_area: DK1}\n",
        encoding="utf-8",
    )
    r = report_from_store(store, options(inputs, branches=load_branches([utc])))
    # March in UTC: 744 hours, 1 March 00:00Z .. 1 April 00:00Z; aby main has points from
    # 28 Feb 23:00Z (which is February in UTC) to 31 March 21:00Z: 742 of them in March UTC,
    # of which 2.5 kWh each: 1855 kWh; the 22:00Z and 23:00Z hours are missing.
    m = month(r, "aby", EL)
    assert (m.hours_in_period, m.hours_present, m.consumption) == (744, 742, D("1855.0"))


def test_unreachable_influxdb_is_one_line(
    tmp_path: Path, inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "report", "energy", "--from", "2026-03-01", "--to", "2026-03-31",
        "--influx", "http://127.0.0.1:9", "--db", "x", "--out", str(tmp_path / "r.html"),
    ]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("report: InfluxDB http://127.0.0.1:9")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.services
def test_influxdb_max_row_limit_is_worked_around(store: Path, inputs: dict[str, Path]) -> None:
    """A server that cuts answers at 500 rows (InfluxDB's max-row-limit marks them "partial")
    gets smaller windows of time until each answer is whole: the same report as the store."""
    server = start_or_fail(lambda: Influxd(extra_http="  max-row-limit = 500\n"))
    try:
        server.query('CREATE DATABASE "capped"')
        server.write("\n".join(handmade.march_lines()), "capped")
        opts = options(inputs, baseline_year=2025)
        with InfluxSource(url=server.url, database="capped") as source:
            central = build_report(source, opts)
    finally:
        server.close()
    local = report_from_store(store, opts)
    assert central.totals() == local.totals() == {EL: D("4818.5"), DH: D("3830.0")}
    for a, b in zip(report_tables(local), report_tables(central), strict=True):
        if a.name not in ("Summary", "Method"):
            assert a.rows == b.rows, a.name
