"""The utility's meter: import Eloverblik's hours into ``utility_hourly`` and reconcile them,
month by month, with the gateway's own ``energy_hourly``.

Import (``import_hours``): each run asks the data hub again for the last ``days_back`` days, so
a day it publishes late is written by a later run (a point of the same series and hour
overwrites, never doubles); the summary lists the local days still incomplete.

Reconciliation (``reconcile``), per metering point and local month, each figure from one
source, named in its column:

- *utility kWh*: the data hub's hours (``utility_hourly``);
- *gateway kWh*: the gateway's hours (``energy_hourly`` of the configured meter);
- *compared*: the hours the gateway measured and the utility has: gateway against utility
  kWh, the difference in kWh and in percent of the utility's (positive: the gateway counts
  more). A month with at least ``min_hours`` compared hours whose difference exceeds
  ``margin_pct`` drifts, and raises ``utility_drift:<metering point>``;
- *checked*: the hours the gateway interpolated (or estimated) for which the utility has a
  value: the gateway's kWh there and the utility's;
- *filled*: the hours the gateway has no value for and the utility has;
- *reconciled kWh*: the gateway's measured hours, the utility's value for every checked or
  filled hour, and the gateway's interpolation only where the utility has nothing.

Alerts are written where the dashboards read alerts, as the ``alert`` measurement of the
branch in InfluxDB: raised when a month drifts or the refresh token is refused, cleared by the
first run that finds it no longer true.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

import influxdb

from openbranch.dashboards.report.source import HourRow, Source, SourceError
from openbranch.dashboards.report.tables import Column, Table, Value, q
from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading
from openbranch.integrations.eloverblik import (
    EloverblikClient,
    EloverblikFile,
    HourValue,
    MeteringPoint,
)

__all__ = [
    "ALERT_DEVICE",
    "AlertWriter",
    "ImportSummary",
    "InfluxAlerts",
    "MonthReconciliation",
    "drift_alerts",
    "import_hours",
    "reconcile",
    "utility_tables",
    "write_hours",
]

HOUR_NS = 3_600 * 10**9
ZERO = Decimal(0)
#: The ``device`` tag of the points this module writes besides the hours (alerts).
ALERT_DEVICE = "eloverblik"
_ELECTRICITY = schema.Carrier.ELECTRICITY.value
_MEASURED = schema.HOURLY_QUALITY.choices[0]
_CPH = "Europe/Copenhagen"  # DataHub's days are Danish days


def _ns(when: datetime) -> int:
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)) * 1000


def _local_day_ns(day: date, tz: ZoneInfo) -> int:
    return _ns(datetime(day.year, day.month, day.day, tzinfo=tz))


# -- import ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportSummary:
    metering_point: str
    branch: str
    hours: int  # hours received (and written)
    incomplete_days: tuple[date, ...]  # local days with fewer hours than the day has


def _reading(mp: MeteringPoint, value: HourValue) -> Reading:
    return Reading(
        branch=mp.branch,
        device=mp.id,
        measurement=schema.UTILITY_HOURLY,
        fields={
            schema.UTILITY_CONSUMPTION.key: float(value.kwh),
            schema.UTILITY_QUALITY.key: value.quality,
        },
        tags={schema.Tag.CARRIER.value: _ELECTRICITY},
        time=value.start,
    )


def _write(client: influxdb.InfluxDBClient, lines: list[str], what: str) -> None:
    try:
        client.write_points(lines, protocol="line", batch_size=5000)
    except Exception as exc:  # the client raises requests' and its own errors
        raise SourceError(f"InfluxDB: writing {what}: {exc}") from exc


def write_hours(
    client: influxdb.InfluxDBClient, points: Sequence[MeteringPoint], values: Iterable[HourValue]
) -> int:
    """Write ``values`` as ``utility_hourly`` points (checked by the schema); how many."""
    by_id = {p.id: p for p in points}
    lines = [
        _reading(by_id[v.metering_point], v).to_line() for v in values if v.metering_point in by_id
    ]
    if lines:
        _write(client, lines, f"{len(lines)} utility hours")
    return len(lines)


def import_hours(
    eloverblik: EloverblikClient,
    config: EloverblikFile,
    client: influxdb.InfluxDBClient,
    *,
    first: date,
    last: date,
    tz: ZoneInfo,
) -> list[ImportSummary]:
    """The data hub's hours of every configured metering point for the local days ``first`` to
    ``last``, written to InfluxDB; one summary per metering point."""
    values = eloverblik.time_series([p.id for p in config.metering_points], first, last)
    write_hours(client, config.metering_points, values)
    per_day: dict[tuple[str, date], int] = defaultdict(int)
    for v in values:
        per_day[(v.metering_point, v.start.astimezone(tz).date())] += 1
    out = []
    for p in config.metering_points:
        incomplete = []
        day = first
        while day <= last:
            nxt = day + timedelta(days=1)
            expected = (_local_day_ns(nxt, tz) - _local_day_ns(day, tz)) // HOUR_NS
            if per_day.get((p.id, day), 0) < expected:
                incomplete.append(day)
            day = nxt
        got = sum(n for (mp, _), n in per_day.items() if mp == p.id)
        out.append(ImportSummary(p.id, p.branch, got, tuple(incomplete)))
    return out


# -- reconciliation --------------------------------------------------------------------------


@dataclass(slots=True)
class MonthReconciliation:
    branch: str
    metering_point: str
    device: str
    month: date
    utility_hours: int = 0
    utility_kwh: Decimal = ZERO
    gateway_hours: int = 0
    gateway_kwh: Decimal = ZERO
    compared_hours: int = 0
    compared_gateway_kwh: Decimal = ZERO
    compared_utility_kwh: Decimal = ZERO
    checked_hours: int = 0
    checked_gateway_kwh: Decimal = ZERO
    checked_utility_kwh: Decimal = ZERO
    filled_hours: int = 0
    filled_kwh: Decimal = ZERO
    unchecked_hours: int = 0  # interpolated by the gateway, nothing from the utility
    reconciled_kwh: Decimal = ZERO
    judged: bool = False
    drift: bool = False
    margin_pct: Decimal = ZERO

    @property
    def difference_kwh(self) -> Decimal:
        return self.compared_gateway_kwh - self.compared_utility_kwh

    @property
    def difference_pct(self) -> Decimal | None:
        if not self.compared_utility_kwh:
            return None
        return self.difference_kwh / self.compared_utility_kwh * 100

    @property
    def status(self) -> str:
        if not self.judged:
            return "too few hours"
        return "drift" if self.drift else "within margin"


def _month_bounds(first: date, last: date, tz: ZoneInfo) -> list[tuple[date, int, int]]:
    """Each local month from ``first``'s to ``last``'s: (month, start ns, end ns), the last
    one ending after ``last``."""
    out, m = [], date(first.year, first.month, 1)
    while m <= last:
        nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
        out.append((m, _local_day_ns(m, tz), _local_day_ns(min(nxt, last + timedelta(1)), tz)))
        m = nxt
    return out


def reconcile(
    source: Source,
    config: EloverblikFile,
    first: date,
    last: date,
    timezones: Mapping[str, str] | None = None,
) -> list[MonthReconciliation]:
    """Each metering point's local months from ``first``'s month to ``last`` (included); two
    reads for every metering point at once (the gateway's hours, the utility's)."""
    settings = config.eloverblik
    points = config.metering_points
    bounds = {
        mp.id: _month_bounds(first, last, ZoneInfo((timezones or {}).get(mp.branch, _CPH)))
        for mp in points
    }
    lo = min(b[0][1] for b in bounds.values())
    hi = max(b[-1][2] for b in bounds.values())
    branches = sorted({mp.branch for mp in points})
    meters = {(mp.branch, mp.device) for mp in points}
    gateway: dict[tuple[str, str], dict[int, HourRow]] = defaultdict(dict)
    for row in source.hours(lo, hi, branches):
        if (row.branch, row.device) in meters and row.carrier == _ELECTRICITY:
            gateway[(row.branch, row.device)][row.hour_ns] = row  # a later point wins
    utility: dict[str, dict[int, Decimal]] = defaultdict(dict)
    kwh = schema.UTILITY_CONSUMPTION.key
    for p in source.points(schema.UTILITY_HOURLY, lo, hi, branches):
        value = p.fields.get(kwh)
        if isinstance(value, Decimal):
            utility[p.tags.get(schema.Tag.DEVICE.value, "")][p.time_ns] = value
    out = []
    for mp in points:
        ours, theirs = gateway[(mp.branch, mp.device)], utility[mp.id]
        for m, m_lo, m_hi in bounds[mp.id]:
            r = MonthReconciliation(mp.branch, mp.id, mp.device, m, margin_pct=settings.margin_pct)
            for h in range(m_lo - m_lo % HOUR_NS, m_hi, HOUR_NS):
                _hour(r, ours.get(h), theirs.get(h))
            r.judged = r.compared_hours >= settings.min_hours and r.compared_utility_kwh > 0
            pct = r.difference_pct
            r.drift = r.judged and pct is not None and abs(pct) > settings.margin_pct
            out.append(r)
    return out


def _hour(r: MonthReconciliation, gw: HourRow | None, ut: Decimal | None) -> None:
    """One hour into its month: which source gives the reconciled value, and why."""
    if ut is not None:
        r.utility_hours += 1
        r.utility_kwh += ut
    if gw is not None:
        r.gateway_hours += 1
        r.gateway_kwh += gw.consumption
    if gw is not None and gw.quality == _MEASURED:
        r.reconciled_kwh += gw.consumption
        if ut is not None:
            r.compared_hours += 1
            r.compared_gateway_kwh += gw.consumption
            r.compared_utility_kwh += ut
    elif gw is not None:  # interpolated or estimated by the gateway
        if ut is not None:
            r.checked_hours += 1
            r.checked_gateway_kwh += gw.consumption
            r.checked_utility_kwh += ut
            r.reconciled_kwh += ut
        else:
            r.unchecked_hours += 1
            r.reconciled_kwh += gw.consumption
    elif ut is not None:
        r.filled_hours += 1
        r.filled_kwh += ut
        r.reconciled_kwh += ut


# -- alerts ----------------------------------------------------------------------------------


class AlertWriter(Protocol):
    def active(self, branch: str, kind: str) -> bool:
        """Whether the last recorded state of ``kind`` at ``branch`` is raised."""
        ...

    def write(
        self, branch: str, kind: str, message: str, *, severity: str, active: bool
    ) -> None: ...


class InfluxAlerts:
    """Alerts as the ``alert`` measurement in InfluxDB, where the dashboards' alert table and
    alert rules read them."""

    def __init__(self, client: influxdb.InfluxDBClient, *, now: datetime | None = None) -> None:
        self._client = client
        self._now = now

    def active(self, branch: str, kind: str) -> bool:
        q = (
            f'SELECT last("{schema.ALERT_ACTIVE.key}") FROM "{schema.ALERT.name}"'  # noqa: S608
            f" WHERE \"{schema.Tag.BRANCH.value}\" = '{_quoted(branch)}'"
            f" AND \"{schema.Tag.KIND.value}\" = '{_quoted(kind)}'"
        )
        try:
            answer = self._client.query(q)
        except Exception as exc:  # the client raises requests' and its own errors
            raise SourceError(f"InfluxDB: {q}: {exc}") from exc
        rows = list(answer.get_points())
        return bool(rows and rows[0].get("last") is True)

    def write(self, branch: str, kind: str, message: str, *, severity: str, active: bool) -> None:
        alert = Reading(
            branch=branch,
            device=ALERT_DEVICE,
            measurement=schema.ALERT,
            fields={
                schema.ALERT_MESSAGE.key: message,
                schema.ALERT_SEVERITY.key: severity,
                schema.ALERT_ACTIVE.key: active,
            },
            tags={schema.Tag.KIND.value: kind},
            time=self._now or datetime.now(UTC),
        )
        _write(self._client, [alert.to_line()], f"alert {kind}")


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _pct(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value.quantize(Decimal('0.1'), ROUND_HALF_UP):+}"


def drift_alerts(rows: Sequence[MonthReconciliation], alerts: AlertWriter) -> list[str]:
    """Raise ``utility_drift:<metering point>`` where a judged month drifts, clear it where
    none does and it was raised; returns the kinds raised."""
    by_point: dict[tuple[str, str], list[MonthReconciliation]] = defaultdict(list)
    for r in rows:
        by_point[(r.branch, r.metering_point)].append(r)
    raised = []
    for (branch, mp), months in by_point.items():
        kind = f"{schema.UTILITY_DRIFT}:{mp}"
        drifting = [r for r in months if r.drift]
        if drifting:
            detail = ", ".join(f"{r.month:%Y-%m} {_pct(r.difference_pct)} %" for r in drifting)
            alerts.write(
                branch,
                kind,
                f"gateway meter {drifting[0].device} and the utility's metering point {mp}"
                f" differ by more than {drifting[0].margin_pct} %: {detail} (gateway against"
                " utility, measured hours both have)",
                severity="warning",
                active=True,
            )
            raised.append(kind)
        elif alerts.active(branch, kind):
            alerts.write(
                branch,
                kind,
                f"gateway meter and metering point {mp} agree again within the margin",
                severity="info",
                active=False,
            )
    return raised


# -- tables ----------------------------------------------------------------------------------


def _k(value: Decimal) -> Decimal | None:
    return q(value, "amount")


_COLUMNS = (
    ("branch", "text"),
    ("metering point (utility)", "text"),
    ("gateway meter", "text"),
    ("month", "text"),
    ("utility hours [utility]", "int"),
    ("utility kWh [utility]", "amount"),
    ("gateway hours [gateway]", "int"),
    ("gateway kWh [gateway]", "amount"),
    ("compared hours (gateway measured, utility present)", "int"),
    ("compared kWh [gateway]", "amount"),
    ("compared kWh [utility]", "amount"),
    ("difference kWh (gateway - utility)", "amount"),
    ("difference % of utility", "intensity"),
    ("margin %", "intensity"),
    ("status", "text"),
    ("interpolated hours checked", "int"),
    ("checked kWh [gateway, interpolated]", "amount"),
    ("checked kWh [utility]", "amount"),
    ("hours filled [utility]", "int"),
    ("filled kWh [utility]", "amount"),
    ("interpolated hours unchecked [gateway]", "int"),
    ("reconciled kWh [gateway measured + utility for checked and filled hours]", "amount"),
)


def utility_tables(
    rows: Sequence[MonthReconciliation],
    source: str,
    imported: Sequence[ImportSummary] = (),
) -> list[Table]:
    """The Reconciliation table, the Import table (when an import ran) and the Notes."""
    body: list[tuple[Value, ...]] = []
    for r in rows:
        pct = r.difference_pct
        body.append(
            (
                r.branch,
                r.metering_point,
                r.device,
                f"{r.month:%Y-%m}",
                r.utility_hours,
                _k(r.utility_kwh),
                r.gateway_hours,
                _k(r.gateway_kwh),
                r.compared_hours,
                _k(r.compared_gateway_kwh),
                _k(r.compared_utility_kwh),
                _k(r.difference_kwh),
                None if pct is None else pct.quantize(Decimal("0.01"), ROUND_HALF_UP),
                r.margin_pct,
                r.status,
                r.checked_hours,
                _k(r.checked_gateway_kwh),
                _k(r.checked_utility_kwh),
                r.filled_hours,
                _k(r.filled_kwh),
                r.unchecked_hours,
                _k(r.reconciled_kwh),
            )
        )
    tables = [
        Table(
            "Reconciliation",
            "Gateway against utility, per metering point and month",
            tuple(Column(t, k) for t, k in _COLUMNS),
            tuple(body),
        )
    ]
    if imported:
        tables.append(
            Table(
                "Import",
                "Hours imported from Eloverblik",
                (
                    Column("metering point", "text"),
                    Column("branch", "text"),
                    Column("hours received", "int"),
                    Column("local days still incomplete", "text"),
                ),
                tuple(
                    (s.metering_point, s.branch, s.hours, " ".join(map(str, s.incomplete_days)))
                    for s in imported
                ),
            )
        )
    notes: list[tuple[Value, ...]] = [
        ("data", source),
        (
            "[utility]",
            "the grid company's hourly readings from Eloverblik (DataHub), utility_hourly",
        ),
        ("[gateway]", "the gateway's own meter, energy_hourly (measured or interpolated hours)"),
        (
            "difference %",
            "(gateway - utility) / utility x 100 over the hours the gateway measured and the"
            " utility has; a month with fewer compared hours than min_hours is not judged",
        ),
        (
            "reconciled kWh",
            "the gateway's measured hours; the utility's value for every hour the gateway"
            " interpolated (checked) or lacks (filled); the gateway's interpolation only where"
            " the utility has nothing yet",
        ),
        (
            "alert",
            f"{schema.UTILITY_DRIFT}:<metering point> when a judged month exceeds the margin",
        ),
    ]
    tables.append(
        Table(
            "Notes",
            "Where each figure comes from",
            (Column("what", "text"), Column("how", "text")),
            tuple(notes),
        )
    )
    return tables
