"""The report as tables: the same columns for CSV, XLSX and HTML, rounded once, here.

A value is a Decimal quantized to its column's places (half up), an int, a string or None
(empty). Shares are ratios 0..1 with 4 places (HTML shows them as percentages).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from openbranch.dashboards.report.closed import ClosedMonth
from openbranch.dashboards.report.energy import (
    BranchRow,
    EnergyReport,
    MeterQuality,
    MonthRow,
    method_notes,
    unit_of,
)
from openbranch.dashboards.report.factors import FactorRow
from openbranch.edge.core import schema

__all__ = ["Column", "Table", "Value", "report_tables"]

Value = Decimal | int | str | None

PLACES = {
    "amount": Decimal("0.001"),  # kWh, m³
    "kg": Decimal("0.001"),
    "share": Decimal("0.0001"),
    "intensity": Decimal("0.01"),  # kWh/m², kWh/visitor, kWh/degree day
    "dd": Decimal("0.1"),
}


def q(value: Decimal | None, kind: str) -> Decimal | None:
    """``value`` rounded half up to the places of ``kind`` (None stays None)."""
    return None if value is None else value.quantize(PLACES[kind], rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    kind: str  # amount | kg | share | intensity | dd | int | text


@dataclass(frozen=True, slots=True)
class Table:
    name: str  # the XLSX sheet name, the CSV file suffix, the HTML section id
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Value, ...], ...]


def _t(name: str, title: str, spec: Sequence[tuple[str, str]], rows: list[list[Any]]) -> Table:
    cols = tuple(Column(t, k) for t, k in spec)
    out = []
    for row in rows:
        out.append(
            tuple(
                q(v, c.kind) if isinstance(v, Decimal) and c.kind in PLACES else v
                for v, c in zip(row, cols, strict=True)
            )
        )
    return Table(name, title, cols, tuple(out))


def _iso_hour(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:00Z")


def _monthly(r: EnergyReport) -> Table:
    def row(m: MonthRow) -> list[Any]:
        return [
            m.branch, f"{m.month:%Y-%m}", m.carrier, m.unit, m.consumption, m.meters,
            m.hours_in_period, m.hours_present, m.coverage, m.measured_share,
            m.interpolated_share, m.co2e_location_kg, m.co2e_market_kg, m.factor_basis,
            m.degree_days, m.per_degree_day,
        ]  # fmt: skip

    spec = [
        ("branch", "text"), ("month", "text"), ("carrier", "text"), ("unit", "text"),
        ("consumption", "amount"), ("meters", "int"), ("hours in period", "int"),
        ("meter-hours present", "int"), ("coverage", "share"), ("measured share", "share"),
        ("interpolated share", "share"), ("CO2e location-based kg", "kg"),
        ("CO2e market-based kg", "kg"), ("factor basis", "text"), ("degree days", "dd"),
        ("heat kWh per degree day", "intensity"),
    ]  # fmt: skip
    return _t("Monthly", "Per branch, month and carrier", spec, [row(m) for m in r.months])


def _branches(r: EnergyReport) -> Table:
    el, dh, wa = (c.value for c in schema.Carrier)

    def row(b: BranchRow) -> list[Any]:
        return [
            b.info.id, b.info.name, b.info.price_area, b.info.heat_supplier,
            b.info.floor_area_m2, b.hours_in_period, b.consumption.get(el),
            b.consumption.get(dh), b.consumption.get(wa), b.energy_kwh, b.kwh_per_m2,
            b.kwh_per_m2_year, b.visitors, b.admissions_self_service, b.kwh_per_visitor,
            b.degree_days,
            b.heat_per_degree_day, b.heat_normalised_kwh, b.co2e_location_kg,
            b.co2e_market_kg, b.baseline_energy_kwh, b.change,
        ]  # fmt: skip

    spec = [
        ("branch", "text"), ("name", "text"), ("price area", "text"), ("heat supplier", "text"),
        ("floor area m²", "intensity"), ("hours in period", "int"), ("electricity kWh", "amount"),
        ("district heating kWh", "amount"), ("water m³", "amount"), ("energy kWh", "amount"),
        ("kWh/m²", "intensity"), ("kWh/m² per year", "intensity"), ("visitors", "int"),
        ("card admissions in self-service hours", "int"),
        ("kWh per visitor", "intensity"), ("degree days", "dd"),
        ("heat kWh per degree day", "intensity"), ("heat normalised kWh", "amount"),
        ("CO2e location-based kg", "kg"), ("CO2e market-based kg", "kg"),
        ("baseline energy kWh", "amount"), ("change vs baseline", "share"),
    ]  # fmt: skip
    return _t("Branches", "Per branch: totals and indicators", spec, [row(b) for b in r.branches])


def _quality(r: EnergyReport) -> Table:
    def row(m: MeterQuality) -> list[Any]:
        return [
            m.branch, m.device, m.carrier, _iso_hour(m.first_hour_ns), _iso_hour(m.last_hour_ns),
            m.hours_in_period, m.hours_present, m.missing_hours, m.missing_runs,
            m.interpolated_hours, m.interpolated_runs, m.interpolated_share, m.resets,
        ]  # fmt: skip

    spec = [
        ("branch", "text"), ("meter", "text"), ("carrier", "text"), ("first hour", "text"),
        ("last hour", "text"), ("hours in period", "int"), ("hours present", "int"),
        ("missing hours", "int"), ("missing runs", "int"), ("interpolated hours", "int"),
        ("interpolated runs (gaps)", "int"), ("interpolated share", "share"), ("resets", "int"),
    ]  # fmt: skip
    return _t("DataQuality", "Data quality per meter", spec, [row(m) for m in r.quality])


def _factors(r: EnergyReport) -> Table:
    def row(f: FactorRow) -> list[Any]:
        return [
            f.carrier, f.applies_to, f.year, f.value, f.unit, f.method, f.source,
            "yes" if f.preliminary else "no", "yes" if f.verified else "no",
        ]  # fmt: skip

    rows = [row(f) for f in r.factors_used]
    o = r.options
    if o.hourly is not None:
        rows.append([
            schema.Carrier.ELECTRICITY.value, ", ".join(sorted(o.hourly.by_area)), None, None,
            "g/kWh", "location-based, hourly", f"hourly series {o.hourly.path}", "no", "no",
        ])  # fmt: skip
    if o.market_factor is not None:
        rows.append([
            schema.Carrier.ELECTRICITY.value, "supplier", None, o.market_factor, "g/kWh",
            "market-based", o.market_source or "given on the command line", "no", "no",
        ])  # fmt: skip
    spec = [
        ("carrier", "text"), ("applies to", "text"), ("year", "year"), ("value", "text"),
        ("unit", "text"), ("method", "text"), ("source", "text"), ("preliminary", "text"),
        ("verified", "text"),
    ]  # fmt: skip
    return _t("Factors", "Emission factors used", spec, rows)


def _closed(r: EnergyReport) -> Table:
    def row(m: ClosedMonth) -> list[Any]:
        return [
            m.branch, f"{m.month:%Y-%m}", m.carrier, m.unit, m.hours, m.excess_hours,
            m.consumption, m.total, m.share, m.waste, m.waste_co2e_kg,
        ]  # fmt: skip

    spec = [
        ("branch", "text"), ("month", "text"), ("carrier", "text"), ("unit", "text"),
        ("closed meter-hours", "int"), ("hours over the base load", "int"),
        ("closed-hours consumption", "amount"), ("consumption, all hours", "amount"),
        ("closed share", "share"), ("waste above base load", "amount"),
        ("waste CO2e location-based kg", "kg"),
    ]  # fmt: skip
    return _t("ClosedHours", "Closed-hours energy", spec, [row(m) for m in r.closed])


def _summary(r: EnergyReport) -> Table:
    o = r.options
    rows: list[list[Any]] = [
        ["period", f"{o.first} to {o.last}", None],
        ["source", r.source, None],
        ["branches", len(r.branches), None],
        ["generated", r.generated.strftime("%Y-%m-%d %H:%M UTC"), None],
    ]
    for carrier, amount in sorted(r.totals().items()):
        rows.append([f"{carrier} ({unit_of(carrier)})", q(amount, "amount"), unit_of(carrier)])
    rows.append(["CO2e location-based (kg)", q(r.co2e_location_kg, "kg"), "kg"])
    market = r.co2e_market_kg
    rows.append(
        [
            "CO2e market-based (kg)",
            q(market, "kg") if market is not None else "not computed (no supplier factor)",
            "kg" if market is not None else None,
        ]
    )
    for note in r.notes:
        rows.append(["note", note, None])
    return Table(
        "Summary",
        "Summary",
        (Column("item", "text"), Column("value", "text"), Column("unit", "text")),
        tuple(tuple(x) for x in rows),
    )


def _method(r: EnergyReport) -> Table:
    return Table(
        "Method",
        "Method",
        (Column("topic", "text"), Column("method", "text")),
        tuple(method_notes(r)),
    )


TABLES: tuple[Callable[[EnergyReport], Table], ...] = (
    _summary,
    _monthly,
    _branches,
    _factors,
    _quality,
    _closed,
    _method,
)


def report_tables(report: EnergyReport) -> list[Table]:
    """Summary, Monthly, Branches, Factors, DataQuality, ClosedHours, Method: in that order."""
    return [make(report) for make in TABLES]
