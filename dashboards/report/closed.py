"""The report's closed-hours section: per branch, local month and carrier, what was used while
the branch was closed, and the estimated waste above the closed-hour base load.

It sums what the gateways judged (``closed_hours``, edge/hours/waste.py, decision 86): every
whole UTC hour the calendar had the branch closed, per meter, with its consumption and its
*excess* (consumption above the base load, in an hour over the margin; 0 otherwise). The rules:

- An hour belongs, whole, to the local month its UTC start falls in (as in the rest of the
  report); a point written twice for one meter and hour counts once, the later one.
- Share: closed-hour consumption over the month's consumption of that carrier (the report's
  Monthly figure, every hour).
- Waste CO2e: the waste x the month's location-based factor as the report applied it (its
  CO2e over its kWh, so hourly electricity factors weigh in as they did); none for water or
  where the report has no factor.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape
from zoneinfo import ZoneInfo

from openbranch.dashboards.report.axis import nice_max
from openbranch.dashboards.report.source import Point
from openbranch.edge.core import schema

__all__ = ["CLOSED_COLOUR", "WASTE_COLOUR", "ClosedMonth", "closed_chart", "closed_months"]

CLOSED_COLOUR = "#56b4e9"  # closed-hours kWh up to the base load
WASTE_COLOUR = "#cc79a7"  # the estimated waste above it
_KWH = (schema.Carrier.ELECTRICITY.value, schema.Carrier.DISTRICT_HEATING.value)

_ZERO = Decimal(0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BRANCH, _DEVICE, _CARRIER = (
    t.value for t in (schema.Tag.BRANCH, schema.Tag.DEVICE, schema.Tag.CARRIER)
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosedMonth:
    branch: str
    month: date  # the first of the local month
    carrier: str
    hours: int  # closed meter-hours judged
    excess_hours: int  # of them, over the margin above the base load
    consumption: Decimal  # in closed hours
    total: Decimal  # the month's consumption of the carrier, every hour
    waste: Decimal  # above the base load, in excess hours
    waste_co2e_kg: Decimal | None

    @property
    def unit(self) -> str:
        return "m³" if self.carrier == schema.Carrier.WATER.value else "kWh"

    @property
    def share(self) -> Decimal | None:
        return self.consumption / self.total if self.total else None


def closed_months(
    points: Iterable[Point],
    *,
    first: date,
    last: date,
    zone_of: Callable[[str], ZoneInfo],
    totals: Mapping[tuple[str, date, str], tuple[Decimal, Decimal | None]],
) -> list[ClosedMonth]:
    """The section's rows from ``closed_hours`` points; ``first``..``last``: the report's local
    days (included); ``zone_of(branch)``: its time zone; ``totals``: (branch, month, carrier)
    -> (the month's consumption, its location-based kg CO2e or None)."""
    latest: dict[tuple[str, str, str, int], Point] = {}
    for p in points:
        key = (p.tags.get(_BRANCH, ""), p.tags.get(_DEVICE, ""), p.tags.get(_CARRIER, ""))
        latest[(*key, p.time_ns)] = p  # in time order per series: the later one stays
    sums: dict[tuple[str, date, str], list[Decimal]] = {}
    for (branch, _device, carrier, time_ns), p in latest.items():
        consumption = p.fields.get(schema.CLOSED_CONSUMPTION.key)
        excess = p.fields.get(schema.CLOSED_EXCESS.key)
        if not isinstance(consumption, Decimal):
            continue
        day = (_EPOCH + timedelta(microseconds=time_ns // 1000)).astimezone(zone_of(branch))
        if not first <= day.date() <= last:
            continue
        got = sums.setdefault((branch, day.date().replace(day=1), carrier), [_ZERO] * 4)
        waste = excess if isinstance(excess, Decimal) else _ZERO
        got[0] += 1
        got[1] += waste > 0
        got[2] += consumption
        got[3] += waste
    out = []
    for (branch, month, carrier), (hours, excess_hours, consumption, waste) in sorted(sums.items()):
        total, co2e = totals.get((branch, month, carrier), (_ZERO, None))
        factor = co2e / total if co2e is not None and total else None
        out.append(
            ClosedMonth(
                branch=branch,
                month=month,
                carrier=carrier,
                hours=int(hours),
                excess_hours=int(excess_hours),
                consumption=consumption,
                total=total,
                waste=waste,
                waste_co2e_kg=None if factor is None else waste * factor,
            )
        )
    return out


def closed_chart(rows: Iterable[ClosedMonth], names: Mapping[str, str]) -> str:
    """Horizontal stacked bars, one per branch, most closed-hours kWh first (electricity and
    district heating over the period): the part up to the base load, then the waste."""
    closed: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    waste: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    total: dict[str, Decimal] = defaultdict(lambda: _ZERO)
    for m in rows:
        if m.carrier in _KWH:
            closed[m.branch] += m.consumption
            waste[m.branch] += m.waste
            total[m.branch] += m.total
    ranked = sorted(closed, key=lambda b: (-closed[b], b))
    if not ranked:
        return (
            "<p>No closed-hours data in the period: the gateways judge closed hours from their"
            " opening hours (closed_hours); none were found.</p>"
        )
    top = nice_max(max(closed.values()))
    row_h, left, width = 26, 190, 1000
    plot_w = width - left - 330
    height = 34 + row_h * len(ranked) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%"'
        ' role="img" aria-label="kWh in closed hours per branch, waste above the base load">',
        f'<rect x="{left}" y="6" width="14" height="14" fill="{CLOSED_COLOUR}"/>'
        f'<text x="{left + 20}" y="17">closed hours, up to the base load (kWh)</text>'
        f'<rect x="{left + 300}" y="6" width="14" height="14" fill="{WASTE_COLOUR}"/>'
        f'<text x="{left + 320}" y="17">waste above the base load (kWh)</text>',
    ]
    for i, b in enumerate(ranked):
        y = 30 + i * row_h
        base_w = float((closed[b] - waste[b]) / top) * plot_w
        waste_w = float(waste[b] / top) * plot_w
        share = f", {closed[b] / total[b] * 100:.1f} % of all" if total[b] else ""
        label = f"{closed[b]:,.1f} kWh{share}; waste {waste[b]:,.1f} kWh".replace(",", "\u202f")
        out.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">'
            f"{escape(names.get(b, b))}</text>"
            f'<rect x="{left}" y="{y + 3}" width="{base_w:.1f}" height="{row_h - 6}"'
            f' fill="{CLOSED_COLOUR}"/>'
            f'<rect x="{left + base_w:.1f}" y="{y + 3}" width="{waste_w:.1f}"'
            f' height="{row_h - 6}" fill="{WASTE_COLOUR}"/>'
            f'<text x="{left + base_w + waste_w + 6:.1f}" y="{y + 16}">{escape(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
