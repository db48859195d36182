"""The energy and climate report, computed: per branch, per local calendar month, per carrier.

One pass over the source's ``energy_hourly`` rows (and the raw registers for resets, and the
people counters for visitors) fills exact Decimal sums; rounding happens only when a figure is
written out. The rules (also printed in the report's Method section, ``method_notes``):

- An hour belongs, whole, to the local calendar month (the branch's time zone) its UTC start
  falls in. A local month has 743 hours when the clocks spring forward, 745 when they fall back.
- The period is ``first`` .. ``last`` (local dates, both included); a month at its edge counts
  only the hours inside it.
- Coverage of a carrier in a month: meter-hours present / (meters x hours in the period's part
  of the month), where the meters are those of the branch and carrier seen anywhere in the
  period. A meter that starts mid-month lowers its first month's coverage.
- Measured / interpolated share: of the consumption, the part from ``measured`` hours and from
  ``interpolated`` hours (a gap the gateway bridged by spreading its consumption).
- A point written twice for the same meter and hour counts once, the later one (as InfluxDB
  keeps it).
- Scope 2, location-based: electricity x the price area's factor, hourly when an hourly series
  holds the hour, else the annual factor of the month's year (or the nearest year, stated);
  district heating x the supplier's factor. Market-based: electricity x the supplier factor
  given, district heating as location-based. Water has no Scope 2 figure.
- Resets: a register reading below 90 % of the highest since the last reset (``edge.energy``),
  found from each meter's daily first/lowest/highest/last reading (``add_resets``).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from openbranch.dashboards.report.admissions import admissions
from openbranch.dashboards.report.closed import ClosedMonth, closed_months
from openbranch.dashboards.report.factors import FactorRow, FactorTable, HourlyFactors
from openbranch.dashboards.report.inputs import BranchInfo
from openbranch.dashboards.report.source import (
    DAY_NS,
    HOUR_NS,
    Counter,
    HourRow,
    InfluxSource,
    MeterRuns,
    MeterSums,
    RegisterDay,
    Source,
)
from openbranch.edge.core import schema
from openbranch.edge.telemetry.energy import RESET_RATIO, HourQuality

__all__ = [
    "BranchRow",
    "EnergyReport",
    "MeterQuality",
    "MonthRow",
    "ReportOptions",
    "build_report",
    "hours_between",
    "local_bounds_ns",
]

ZERO = Decimal(0)
_KWH_CARRIERS = (schema.Carrier.ELECTRICITY.value, schema.Carrier.DISTRICT_HEATING.value)
_MEASURED, _INTERPOLATED = HourQuality.MEASURED.value, HourQuality.INTERPOLATED.value
_ELECTRICITY = schema.Carrier.ELECTRICITY.value
_RESET_RATIO = Decimal(repr(RESET_RATIO))
_MARGIN_NS = 15 * HOUR_NS  # any UTC offset: the query window around local dates


def unit_of(carrier: str) -> str:
    return "m³" if carrier == schema.Carrier.WATER.value else "kWh"


def _ns(when: datetime) -> int:
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def local_bounds_ns(first: date, last: date, tz: ZoneInfo) -> tuple[int, int]:
    """[first 00:00 local, the day after last 00:00 local) in ns since the epoch."""
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    end_day = last + timedelta(days=1)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz)
    return _ns(start), _ns(end)


def hours_between(start_ns: int, end_ns: int) -> int:
    return (end_ns - start_ns) // HOUR_NS


def _month_starts(first: date, last: date) -> list[date]:
    out, m = [], date(first.year, first.month, 1)
    while m <= last:
        out.append(m)
        m = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
    return out


@dataclass(frozen=True, slots=True)
class _Months:
    """The period's local months for one time zone: their starts and bounds in ns."""

    months: tuple[date, ...]
    starts_ns: tuple[int, ...]  # start of each month's part of the period
    ends_ns: tuple[int, ...]

    @classmethod
    def of(cls, first: date, last: date, tz: ZoneInfo) -> _Months:
        months = _month_starts(first, last)
        starts, ends = [], []
        for m in months:
            nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
            lo, hi = local_bounds_ns(max(m, first), min(nxt - timedelta(days=1), last), tz)
            starts.append(lo)
            ends.append(hi)
        return cls(tuple(months), tuple(starts), tuple(ends))

    def index(self, time_ns: int) -> int | None:
        i = bisect.bisect_right(self.starts_ns, time_ns) - 1
        if i < 0 or time_ns >= self.ends_ns[i]:
            return None
        return i


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportOptions:
    first: date
    last: date  # included
    factors: FactorTable
    branches: Mapping[str, BranchInfo] = field(default_factory=dict)
    only: Sequence[str] | None = None  # branch ids to report (None: all in the source)
    default_timezone: str = "Europe/Copenhagen"
    hourly: HourlyFactors | None = None
    market_factor: Decimal | None = None  # electricity, g CO2e/kWh, from the supplier
    market_source: str = ""
    degree_days: Mapping[date, Decimal] | None = None
    normal_degree_days: Decimal | None = None  # a normal year's degree days, to normalise heat
    baseline_year: int | None = None


@dataclass(slots=True, kw_only=True)
class MonthRow:
    branch: str
    month: date
    carrier: str
    unit: str
    meters: int
    hours_in_period: int
    hours_present: int = 0  # meter-hours
    consumption: Decimal = ZERO
    measured: Decimal = ZERO
    interpolated: Decimal = ZERO
    other: Decimal = ZERO  # estimated or unknown quality
    co2e_location_kg: Decimal | None = None
    co2e_market_kg: Decimal | None = None
    factor_basis: str = ""
    degree_days: Decimal | None = None

    @property
    def coverage(self) -> Decimal:
        expected = self.meters * self.hours_in_period
        return Decimal(self.hours_present) / expected if expected else ZERO

    @property
    def measured_share(self) -> Decimal | None:
        return self.measured / self.consumption if self.consumption else None

    @property
    def interpolated_share(self) -> Decimal | None:
        return self.interpolated / self.consumption if self.consumption else None

    @property
    def per_degree_day(self) -> Decimal | None:
        if self.carrier != schema.Carrier.DISTRICT_HEATING.value or not self.degree_days:
            return None
        return self.consumption / self.degree_days


@dataclass(slots=True, kw_only=True)
class MeterQuality:
    branch: str
    device: str
    carrier: str
    hours_in_period: int
    hours_present: int = 0
    missing_runs: int = 0
    interpolated_hours: int = 0
    interpolated_runs: int = 0
    consumption: Decimal = ZERO
    interpolated: Decimal = ZERO
    resets: int = 0
    first_hour_ns: int | None = None
    last_hour_ns: int | None = None

    @property
    def missing_hours(self) -> int:
        return self.hours_in_period - self.hours_present

    @property
    def interpolated_share(self) -> Decimal | None:
        return self.interpolated / self.consumption if self.consumption else None


@dataclass(slots=True, kw_only=True)
class BranchRow:
    info: BranchInfo
    hours_in_period: int
    consumption: dict[str, Decimal] = field(default_factory=dict)  # per carrier
    co2e_location_kg: Decimal = ZERO
    co2e_market_kg: Decimal | None = None
    visitors: int | None = None
    admissions_self_service: int | None = None  # cards admitted; None: no entry control
    degree_days: Decimal | None = None
    baseline: dict[str, Decimal] | None = None  # per carrier, same months of the baseline year
    normal_degree_days: Decimal | None = None

    @property
    def energy_kwh(self) -> Decimal:
        return sum((self.consumption.get(c, ZERO) for c in _KWH_CARRIERS), ZERO)

    @property
    def kwh_per_m2(self) -> Decimal | None:
        area = self.info.floor_area_m2
        return self.energy_kwh / area if area else None

    @property
    def kwh_per_m2_year(self) -> Decimal | None:
        """kWh/m² scaled linearly to a year of 8760 hours (exact for a whole year)."""
        per = self.kwh_per_m2
        if per is None or not self.hours_in_period:
            return None
        return per * Decimal(8760) / Decimal(self.hours_in_period)

    @property
    def kwh_per_visitor(self) -> Decimal | None:
        return self.energy_kwh / self.visitors if self.visitors else None

    @property
    def heat_per_degree_day(self) -> Decimal | None:
        heat = self.consumption.get(schema.Carrier.DISTRICT_HEATING.value)
        return heat / self.degree_days if heat is not None and self.degree_days else None

    @property
    def heat_normalised_kwh(self) -> Decimal | None:
        """Heat at this period's kWh per degree day over a normal year's degree days."""
        per = self.heat_per_degree_day
        return (
            per * self.normal_degree_days if per is not None and self.normal_degree_days else None
        )

    @property
    def baseline_energy_kwh(self) -> Decimal | None:
        if self.baseline is None:
            return None
        return sum((self.baseline.get(c, ZERO) for c in _KWH_CARRIERS), ZERO)

    @property
    def change(self) -> Decimal | None:
        """Change of energy (kWh, electricity + heat) against the baseline's same months."""
        base = self.baseline_energy_kwh
        return (self.energy_kwh - base) / base if base else None


@dataclass(slots=True, kw_only=True)
class EnergyReport:
    options: ReportOptions
    source: str
    months: list[MonthRow]
    branches: list[BranchRow]
    quality: list[MeterQuality]
    factors_used: list[FactorRow]
    hourly_factor_hours: int  # electricity hours priced with the hourly series
    annual_factor_hours: int  # electricity hours priced with an annual factor
    notes: list[str]  # what a reader must know (missing factors, preliminary values, ...)
    generated: datetime
    closed: list[ClosedMonth] = field(default_factory=list)  # the closed-hours section

    def totals(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for m in self.months:
            out[m.carrier] += m.consumption
        return dict(out)

    @property
    def co2e_location_kg(self) -> Decimal:
        return sum((b.co2e_location_kg for b in self.branches), ZERO)

    @property
    def co2e_market_kg(self) -> Decimal | None:
        values = [b.co2e_market_kg for b in self.branches]
        if not values or any(v is None for v in values):
            return None
        return sum((v for v in values if v is not None), ZERO)

    def ranking(self) -> list[BranchRow]:
        """Branches by kWh/m² (per year), highest first; those without a floor area last."""
        return sorted(
            self.branches,
            key=lambda b: (b.kwh_per_m2_year is None, -(b.kwh_per_m2_year or ZERO), b.info.id),
        )


class _Builder:
    """One pass over a source's rows for one period."""

    def __init__(self, options: ReportOptions, first: date, last: date) -> None:
        self.o = options
        self.first, self.last = first, last
        self.months_by_tz: dict[str, _Months] = {}
        self.months_of: dict[str, _Months] = {}
        self.rows: dict[tuple[str, int, str], MonthRow] = {}
        self.meters: dict[tuple[str, str, str], MeterQuality] = {}
        self.pending: dict[tuple[str, str, str], HourRow] = {}
        self.prev_hour: dict[tuple[str, str, str], tuple[int, bool]] = {}
        self.hourly_hours = 0
        self.annual_hours = 0
        self.used: set[tuple[str, str, int]] = set()
        self.notes: set[str] = set()
        self.hourly_g: dict[tuple[str, int], Decimal] = defaultdict(lambda: ZERO)
        self.annual_kwh: dict[tuple[str, int], Decimal] = defaultdict(lambda: ZERO)

    def info(self, branch: str) -> BranchInfo:
        found = self.o.branches.get(branch)
        if found is None:
            found = BranchInfo(id=branch, name=branch, timezone=self.o.default_timezone)
        return found

    def months(self, branch: str) -> _Months:
        got = self.months_of.get(branch)
        if got is None:
            zone = self.info(branch).timezone
            got = self.months_by_tz.get(zone)
            if got is None:
                got = self.months_by_tz[zone] = _Months.of(self.first, self.last, ZoneInfo(zone))
            self.months_of[branch] = got
        return got

    def bounds(self, branch: str) -> tuple[int, int]:
        m = self.months(branch)
        return m.starts_ns[0], m.ends_ns[-1]

    def window(self) -> tuple[int, int]:
        lo, hi = local_bounds_ns(self.first, self.last, ZoneInfo("UTC"))
        return lo - _MARGIN_NS, hi + _MARGIN_NS

    # -- hours ---------------------------------------------------------------------------

    def add_hours(self, rows: Iterable[HourRow]) -> None:
        only = set(self.o.only) if self.o.only else None
        for row in rows:
            if only is not None and row.branch not in only:
                continue
            key = (row.branch, row.device, row.carrier)
            before = self.pending.get(key)
            if before is not None and before.hour_ns != row.hour_ns:
                self._commit(before)
            self.pending[key] = row  # the later of two points for the same hour wins
        for row in self.pending.values():
            self._commit(row)
        self.pending.clear()

    def _commit(self, row: HourRow) -> None:
        months = self.months(row.branch)
        i = months.index(row.hour_ns)
        if i is None:
            return
        key = (row.branch, row.device, row.carrier)
        meter = self.meters.get(key)
        if meter is None:
            lo, hi = self.bounds(row.branch)
            meter = self.meters[key] = MeterQuality(
                branch=row.branch,
                device=row.device,
                carrier=row.carrier,
                hours_in_period=hours_between(lo, hi),
            )
        month_key = (row.branch, i, row.carrier)
        month = self.rows.get(month_key)
        if month is None:
            month = self.rows[month_key] = MonthRow(
                branch=row.branch,
                month=months.months[i],
                carrier=row.carrier,
                unit=unit_of(row.carrier),
                meters=0,
                hours_in_period=hours_between(months.starts_ns[i], months.ends_ns[i]),
            )
        interpolated = row.quality == _INTERPOLATED
        month.hours_present += 1
        month.consumption += row.consumption
        if row.quality == _MEASURED:
            month.measured += row.consumption
        elif interpolated:
            month.interpolated += row.consumption
        else:
            month.other += row.consumption
        # the meter's data quality
        prev = self.prev_hour.get(key)
        gap_from = prev[0] + HOUR_NS if prev is not None else months.starts_ns[0]
        if row.hour_ns > gap_from:
            meter.missing_runs += 1
        if interpolated:
            meter.interpolated_hours += 1
            meter.interpolated += row.consumption
            if prev is None or not prev[1] or prev[0] + HOUR_NS != row.hour_ns:
                meter.interpolated_runs += 1
        self.prev_hour[key] = (row.hour_ns, interpolated)
        meter.hours_present += 1
        meter.consumption += row.consumption
        if meter.first_hour_ns is None:
            meter.first_hour_ns = row.hour_ns
        meter.last_hour_ns = row.hour_ns
        if row.carrier == _ELECTRICITY:
            self._price_electricity(row, i)

    def _meter(self, branch: str, device: str, carrier: str) -> MeterQuality:
        key = (branch, device, carrier)
        meter = self.meters.get(key)
        if meter is None:
            lo, hi = self.bounds(branch)
            meter = self.meters[key] = MeterQuality(
                branch=branch, device=device, carrier=carrier, hours_in_period=hours_between(lo, hi)
            )
        return meter

    def _month(self, branch: str, i: int, carrier: str) -> MonthRow:
        months = self.months(branch)
        month = self.rows.get((branch, i, carrier))
        if month is None:
            month = self.rows[(branch, i, carrier)] = MonthRow(
                branch=branch,
                month=months.months[i],
                carrier=carrier,
                unit=unit_of(carrier),
                meters=0,
                hours_in_period=hours_between(months.starts_ns[i], months.ends_ns[i]),
            )
        return month

    def add_sums(self, sums: Iterable[MeterSums]) -> None:
        """What ``add_hours`` makes of the rows, from each meter's sums per month (the
        server's): the months' and the meters' hours and consumption by quality."""
        only = set(self.o.only) if self.o.only else None
        for s in sums:
            if (only is not None and s.branch not in only) or not s.hours:
                continue
            meter = self._meter(s.branch, s.device, s.carrier)
            month = self._month(s.branch, s.span, s.carrier)
            month.hours_present += s.hours
            month.consumption += s.consumption
            month.measured += s.measured
            month.interpolated += s.interpolated
            if s.hours != s.measured_hours + s.interpolated_hours:
                month.other += s.consumption - s.measured - s.interpolated
            meter.hours_present += s.hours
            meter.consumption += s.consumption
            meter.interpolated_hours += s.interpolated_hours
            meter.interpolated += s.interpolated
            if s.carrier == _ELECTRICITY:  # annual factors only (else the rows are read)
                self.annual_kwh[(s.branch, s.span)] += s.consumption
                self.annual_hours += s.hours

    def add_runs(self, runs: Iterable[MeterRuns]) -> None:
        """Each meter's first and last hour, its missing and interpolated runs."""
        for r in runs:
            meter = self.meters.get((r.branch, r.device, r.carrier))
            if meter is None:
                continue
            lo, _ = self.bounds(r.branch)
            meter.first_hour_ns, meter.last_hour_ns = r.first_hour_ns, r.last_hour_ns
            meter.missing_runs = int(r.first_hour_ns > lo) + r.gaps
            meter.interpolated_runs = meter.interpolated_hours - r.interpolated_continued
            self.prev_hour[(r.branch, r.device, r.carrier)] = (r.last_hour_ns, False)

    def _price_electricity(self, row: HourRow, i: int) -> None:
        area = self.info(row.branch).price_area
        factor = (
            self.o.hourly.get(area, row.hour_ns) if self.o.hourly is not None and area else None
        )
        if factor is not None:
            self.hourly_g[(row.branch, i)] += row.consumption * factor
            self.hourly_hours += 1
        else:
            self.annual_kwh[(row.branch, i)] += row.consumption
            self.annual_hours += 1

    def finish_meters(self) -> None:
        for key, meter in self.meters.items():
            _, hi = self.bounds(meter.branch)
            prev = self.prev_hour.get(key)
            if prev is not None and prev[0] + HOUR_NS < hi:
                meter.missing_runs += 1
        meters_of: dict[tuple[str, str], int] = defaultdict(int)
        for b, _d, c in self.meters:
            meters_of[(b, c)] += 1
        for (b, _i, c), month in self.rows.items():
            month.meters = meters_of[(b, c)]
        # months where a carrier has meters but no data at all
        for (b, c), _n in meters_of.items():
            months = self.months(b)
            for i, m in enumerate(months.months):
                if (b, i, c) not in self.rows:
                    self.rows[(b, i, c)] = MonthRow(
                        branch=b,
                        month=m,
                        carrier=c,
                        unit=unit_of(c),
                        meters=meters_of[(b, c)],
                        hours_in_period=hours_between(months.starts_ns[i], months.ends_ns[i]),
                    )

    # -- CO2e ------------------------------------------------------------------------------

    def _annual(self, carrier: str, applies_to: str | None, year: int) -> FactorRow | None:
        if not applies_to:
            return None
        row = self.o.factors.annual(carrier, applies_to, year)
        if row is not None:
            self.used.add((row.carrier, row.applies_to, row.year))
            if row.year != year:
                self.notes.add(
                    f"No {carrier} factor for {applies_to} in {year}: the {row.year} factor was"
                    " used."
                )
        return row

    def price(self) -> None:
        for (b, i, c), month in self.rows.items():
            info = self.info(b)
            year = month.month.year
            if c == schema.Carrier.ELECTRICITY.value:
                grams = self.hourly_g.get((b, i), ZERO)
                annual_kwh = self.annual_kwh.get((b, i), ZERO)
                basis = []
                if (b, i) in self.hourly_g:
                    basis.append(f"hourly {info.price_area}")
                row = self._annual(c, info.price_area, year) if annual_kwh or not grams else None
                if annual_kwh:
                    if row is None:
                        self.notes.add(
                            f"{b}: no electricity factor (price area "
                            f"{info.price_area or 'unknown'}): no location-based CO2e."
                        )
                        month.factor_basis = "no factor"
                        continue
                    grams += annual_kwh * row.g_per_kwh
                    basis.append(f"annual {row.applies_to} {row.year}")
                month.co2e_location_kg = grams / 1000
                month.factor_basis = " + ".join(basis) or "no consumption"
                if self.o.market_factor is not None:
                    month.co2e_market_kg = month.consumption * self.o.market_factor / 1000
            elif c == schema.Carrier.DISTRICT_HEATING.value:
                row = self._annual(c, info.heat_supplier, year)
                if row is None:
                    self.notes.add(
                        f"{b}: no district heating factor for supplier "
                        f"{info.heat_supplier or 'unknown'}: no CO2e for heat."
                    )
                    month.factor_basis = "no factor"
                    continue
                month.co2e_location_kg = month.consumption * row.g_per_kwh / 1000
                month.co2e_market_kg = month.co2e_location_kg
                month.factor_basis = f"supplier {row.supplier} {row.year}"
            if self.o.degree_days is not None and c == schema.Carrier.DISTRICT_HEATING.value:
                month.degree_days = self._degree_days(b, i)

    def _degree_days(self, branch: str, i: int) -> Decimal:
        assert self.o.degree_days is not None
        m = self.months(branch).months[i]
        day, total, missing = max(m, self.first), ZERO, 0
        nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
        while day < nxt and day <= self.last:
            value = self.o.degree_days.get(day)
            if value is None:
                missing += 1
            else:
                total += value
            day += timedelta(days=1)
        if missing:
            self.notes.add(f"Degree days: {missing} day(s) of {m:%Y-%m} missing from the file.")
        return total

    # -- counters --------------------------------------------------------------------------

    def add_resets(self, days: Iterable[RegisterDay]) -> None:
        """Count resets from each meter's daily first/lowest/highest/last register.

        A day has a reset when its lowest reading is below 90 % of the highest before it
        (the reference carried from earlier days, or the day's first reading), or when it ends
        below 90 % of its own highest; after a reset the day's last reading is the reference.
        A dip (at or above 90 %) is never a reset; two resets in one day count as one.
        """
        reference: dict[tuple[str, str, str], Decimal] = {}
        for d in days:
            key = (d.branch, d.device, d.carrier)
            lo, hi = self.bounds(d.branch)
            if d.day_ns + DAY_NS <= lo or d.day_ns >= hi:
                continue
            ref = max(reference.get(key, d.first), d.first)
            if d.low < _RESET_RATIO * ref or d.last < _RESET_RATIO * d.high:
                meter = self.meters.get(key)
                if meter is not None:
                    meter.resets += 1
                reference[key] = d.last
            else:
                reference[key] = max(ref, d.high)

    def visitors(self, counters: Iterable[Counter]) -> dict[str, int]:
        last: dict[tuple[str, str], Decimal] = {}
        out: dict[str, int] = defaultdict(int)
        for r in counters:
            lo, hi = self.bounds(r.branch)
            if not lo <= r.time_ns < hi:
                continue
            key = (r.branch, r.device)
            before = last.get(key)
            last[key] = r.value
            if before is None:
                out[r.branch] += 0
                continue
            out[r.branch] += int(r.value - before if r.value >= before else r.value)
        return dict(out)


def _summed_by_server(source: Source, options: ReportOptions) -> InfluxSource | None:
    """The source, when it may sum each meter's months itself and the report needs no more:
    InfluxDB asked to (``summed``), annual electricity factors (hourly ones price each hour),
    one time zone."""
    if not isinstance(source, InfluxSource) or not source.summed or options.hourly is not None:
        return None
    zones = {info.timezone for info in options.branches.values()}
    return source if zones <= {options.default_timezone} else None


def _collect(source: Source, options: ReportOptions, first: date, last: date) -> _Builder:
    b = _Builder(options, first, last)
    lo, hi = b.window()
    only = list(options.only) if options.only else None
    server = _summed_by_server(source, options)
    if server is not None:
        months = _Months.of(first, last, ZoneInfo(options.default_timezone))
        spans = list(zip(months.starts_ns, months.ends_ns, strict=True))
        b.add_sums(server.hour_sums(spans, only))
        present = {k: (m.hours_present, m.interpolated_hours) for k, m in b.meters.items()}
        b.add_runs(server.hour_runs(months.starts_ns[0], months.ends_ns[-1], only, present))
    else:
        b.add_hours(source.hours(lo, hi, only))
    b.finish_meters()
    b.add_resets(source.register_days(lo - lo % DAY_NS, hi - hi % DAY_NS + DAY_NS, only))
    b.price()
    return b


def _shift_year(day: date, year: int) -> date:
    try:
        return day.replace(year=year)
    except ValueError:  # 29 February
        return day.replace(year=year, day=28)


def build_report(source: Source, options: ReportOptions) -> EnergyReport:
    """The report of ``options``' period from ``source``."""
    if options.last < options.first:
        raise ValueError(f"the period ends ({options.last}) before it starts ({options.first})")
    b = _collect(source, options, options.first, options.last)
    lo, hi = b.window()
    only = list(options.only) if options.only else None
    visitors = b.visitors(source.entered(lo, hi, only))
    periods = {m.branch: b.bounds(m.branch) for m in b.rows.values()}
    admitted = admissions(source.points(schema.ADMISSION, lo, hi, only), periods)
    baseline: dict[str, dict[str, Decimal]] | None = None
    if options.baseline_year is not None:
        shift = options.baseline_year - options.first.year
        base = _collect(
            source,
            options,
            _shift_year(options.first, options.first.year + shift),
            _shift_year(options.last, options.last.year + shift),
        )
        baseline = defaultdict(lambda: defaultdict(lambda: ZERO))
        for (branch, _i, carrier), month in base.rows.items():
            baseline[branch][carrier] += month.consumption
    branch_ids = sorted({m.branch for m in b.rows.values()})
    branches: list[BranchRow] = []
    for bid in branch_ids:
        lo_b, hi_b = b.bounds(bid)
        months = [m for m in b.rows.values() if m.branch == bid]
        row = BranchRow(
            info=b.info(bid),
            hours_in_period=hours_between(lo_b, hi_b),
            visitors=visitors.get(bid),
            admissions_self_service=admitted.get(bid),
            normal_degree_days=options.normal_degree_days,
        )
        for m in months:
            row.consumption[m.carrier] = row.consumption.get(m.carrier, ZERO) + m.consumption
            row.co2e_location_kg += m.co2e_location_kg or ZERO
        market = [m.co2e_market_kg for m in months if m.carrier in _KWH_CARRIERS]
        if options.market_factor is not None and all(v is not None for v in market):
            row.co2e_market_kg = sum((v for v in market if v is not None), ZERO)
        heat_dd = [
            m.degree_days
            for m in months
            if m.carrier == schema.Carrier.DISTRICT_HEATING.value and m.degree_days is not None
        ]
        if heat_dd:
            row.degree_days = sum(heat_dd, ZERO)
        if baseline is not None:
            row.baseline = dict(baseline.get(bid, {}))
            if not row.baseline:
                b.notes.add(f"{bid}: no data in the baseline year {options.baseline_year}.")
        if row.info.floor_area_m2 is None:
            b.notes.add(f"{bid}: no floor area in the branches file: no kWh/m².")
        branches.append(row)
    for f in b.o.factors.rows:
        if (f.carrier, f.applies_to, f.year) in b.used and (f.preliminary or not f.verified):
            b.notes.add(
                f"The {f.carrier} factor for {f.applies_to} {f.year} is "
                + ("preliminary" if f.preliminary else "final")
                + (", not verified against its source" if not f.verified else "")
                + ": CO2e figures resting on it are provisional."
            )
    months = sorted(b.rows.values(), key=lambda m: (m.branch, m.month, m.carrier))
    closed = closed_months(
        source.points(schema.CLOSED_HOURS, lo, hi, only),
        first=options.first,
        last=options.last,
        zone_of=lambda branch: ZoneInfo(b.info(branch).timezone),
        totals={
            (m.branch, m.month, m.carrier): (m.consumption, m.co2e_location_kg) for m in months
        },
    )
    return EnergyReport(
        options=options,
        source=source.description,
        months=months,
        closed=closed,
        branches=branches,
        quality=sorted(b.meters.values(), key=lambda q: (q.branch, q.device, q.carrier)),
        factors_used=[
            f for f in options.factors.rows if (f.carrier, f.applies_to, f.year) in b.used
        ],
        hourly_factor_hours=b.hourly_hours,
        annual_factor_hours=b.annual_hours,
        notes=sorted(b.notes),
        generated=datetime.now(UTC),
    )


def method_notes(report: EnergyReport) -> list[tuple[str, str]]:
    """The Method section: (heading, text) pairs, written from what the report did."""
    o = report.options
    hourly = (
        f"Hourly factors from {o.hourly.path} priced {report.hourly_factor_hours} electricity "
        f"meter-hours; {report.annual_factor_hours} hours not in it used the annual factor."
        if o.hourly is not None
        else "No hourly series was given: electricity is priced with the annual factor of the"
        " price area and year."
    )
    market = (
        f"Market-based: electricity x {o.market_factor} g CO2e/kWh"
        f" ({o.market_source or 'supplier factor given on the command line'}); district heating"
        " as location-based."
        if o.market_factor is not None
        else "Market-based: not computed (no supplier factor given)."
    )
    return [
        (
            "Source",
            f"{report.source}; measurement {schema.ENERGY_HOURLY.name}, the consumption"
            " of each closed UTC hour, computed once at the gateway from reset-corrected meter"
            " totals.",
        ),
        (
            "Period",
            f"{o.first} to {o.last} (both included), local calendar days and months in"
            " each branch's time zone. An hour belongs, whole, to the month its UTC start falls in;"
            " months have 743 hours when clocks spring forward and 745 when they fall back.",
        ),
        (
            "Coverage",
            "Meter-hours present / (meters x hours in the period's part of the month)."
            " Meters are those of the branch and carrier seen anywhere in the period.",
        ),
        (
            "Measured and interpolated",
            "Shares of consumption from hours the gateway measured"
            " throughout, and from hours inside a gap whose consumption it spread evenly"
            " (energy is conserved over a gap, never invented).",
        ),
        (
            "Scope 2, location-based",
            "Electricity x the emission factor of the branch's price"
            " area (DK1 West, DK2 East Denmark); district heating x the supplier's declared"
            " factor. " + hourly,
        ),
        ("Scope 2, market-based", market),
        (
            "Indicators",
            "kWh/m²: electricity + district heating over the floor area, and scaled"
            " linearly to 8760 hours. Heat per degree day: district heating over heating degree"
            " days (base 17 °C) of the period; normalised heat = that x the normal year's degree"
            " days" + (f" ({o.normal_degree_days})" if o.normal_degree_days else "") + "."
            " kWh per visitor: electricity + district heating over the people counters' entries"
            " (increases of each counter's last reading of every hour, from the first hour of"
            " the period; a counter that falls counts its new value in full)."
            + (
                f" Change: against the same months of {o.baseline_year}." if o.baseline_year else ""
            ),
        ),
        (
            "Data quality",
            "Missing hours: hours of the period with no point for a meter (also"
            " before a meter's first point). Interpolated runs: consecutive hours inside a gap."
            " Resets: register readings below 90 % of the highest since the last reset, found"
            " from each meter's daily first, lowest, highest and last reading (two in a day"
            " count once).",
        ),
        (
            "Closed hours",
            f"Measurement {schema.CLOSED_HOURS.name}: every whole UTC hour the branch's calendar"
            " had it closed (holidays, exceptions and overrides included), judged per meter at"
            " the gateway. Base load: the 20th percentile of the meter's measured closed hours"
            " of the 28 days before. Waste: consumption above the base load in hours above it by"
            " more than 50 % and the carrier's minimum (0.2 kWh electricity, 1 kWh heat, 10 l"
            " water); its CO2e uses the month's location-based factor as applied above.",
        ),
        ("Rounding", "Sums are exact (decimal); figures are rounded only when written."),
    ]
