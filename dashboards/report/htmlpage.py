"""The report as one self-contained HTML page: tables, and charts as inline SVG made here.

No script, no web font, no network: the page opens the same offline, in a mail client and on
paper. The print stylesheet puts each section on A4 with its table headers repeated.

Charts: monthly consumption per carrier (grouped bars, kWh carriers; water is in m³ and stays
in the tables), the branch ranking by kWh/m² per year (horizontal bars) and the closed-hours
energy per branch (stacked bars, ``closed.closed_chart``). Their colours are
``CARRIER_COLOURS`` and ``RANKING_COLOUR`` (a test finds them in a screenshot).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from html import escape
from pathlib import Path

from openbranch.dashboards.report.axis import nice_max as _nice_max
from openbranch.dashboards.report.closed import closed_chart
from openbranch.dashboards.report.energy import ZERO, EnergyReport
from openbranch.dashboards.report.tables import Table, Value, q, report_tables
from openbranch.edge.core import schema

__all__ = ["CARRIER_COLOURS", "RANKING_COLOUR", "monthly_chart", "ranking_chart", "write_html"]

CARRIER_COLOURS = {
    schema.Carrier.ELECTRICITY.value: "#e69f00",
    schema.Carrier.DISTRICT_HEATING.value: "#d55e00",
    schema.Carrier.WATER.value: "#0072b2",
}
RANKING_COLOUR = "#009e73"
_KWH = (schema.Carrier.ELECTRICITY.value, schema.Carrier.DISTRICT_HEATING.value)

_CSS = """
body { font: 14px/1.45 "DejaVu Sans", Arial, sans-serif; color: #222; margin: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px;
  border-bottom: 2px solid #444; padding-bottom: 2px; }
.meta { color: #555; margin-bottom: 12px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 12px; }
th, td { border: 1px solid #bbb; padding: 2px 6px; vertical-align: top; }
th { background: #eee; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.notes li { margin: 2px 0; } .chart { margin: 8px 0 16px; }
.scroll { overflow-x: auto; }
svg text { font: 11px "DejaVu Sans", Arial, sans-serif; fill: #222; }
@media print {
  @page { size: A4 portrait; margin: 14mm 12mm; }
  @page wide { size: A4 landscape; margin: 12mm 10mm; }
  body { margin: 0; font-size: 10.5pt; }
  h2 { break-after: avoid; } section { break-inside: auto; }
  table { font-size: 8pt; width: 100%; } thead { display: table-header-group; }
  tr, .chart, svg { break-inside: avoid; }
  section.wide { page: wide; }  /* the wide tables print across a landscape page */
  section.wide table { font-size: 7pt; }
  a { color: inherit; text-decoration: none; }
  .scroll { overflow: visible; }
}
"""


def _fmt(value: Value, kind: str) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        if kind == "share":
            return f"{value * 100:.1f} %"
        exponent = value.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) else 0
        places = min(max(places, 0), 3)
        if kind in ("amount", "kg"):
            places = 1
        return f"{value:,.{places}f}".replace(",", "\u202f")
    if isinstance(value, int):
        return str(value) if kind == "year" else f"{value:,}".replace(",", "\u202f")
    return escape(str(value))


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(c.title)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = "".join(
            f'<td class="n">{_fmt(v, c.kind)}</td>'
            if c.kind != "text" and not isinstance(v, str)
            else f"<td>{_fmt(v, c.kind)}</td>"
            for v, c in zip(row, table.columns, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _axis(value: Decimal) -> str:
    """An axis label: whole numbers from 10 up, two places below."""
    places = Decimal("0.01") if value < 10 else Decimal(1)
    return _fmt(value.quantize(places), "intensity")


def monthly_chart(report: EnergyReport) -> str:
    """Grouped bars: total kWh per local month and carrier, all branches of the report."""
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for m in report.months:
        if m.carrier in _KWH:
            sums[f"{m.month:%Y-%m}"][m.carrier] += m.consumption
    months = sorted(sums)
    carriers = [c for c in _KWH if any(c in sums[m] for m in months)]
    if not months or not carriers:
        return "<p>No electricity or district heating consumption in the period.</p>"
    top = _nice_max(max(v for m in months for v in sums[m].values()))
    width, height, left, bottom, top_pad = 1000, 320, 70, 40, 30
    plot_w, plot_h = width - left - 20, height - bottom - top_pad
    group = plot_w / len(months)
    bar = min(48.0, group * 0.8 / len(carriers))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%"'
        f' role="img" aria-label="Monthly consumption per carrier, kWh">'
    ]
    for i in range(5):
        v = top * i / 4
        y = top_pad + plot_h - float(v / top) * plot_h
        out.append(
            f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_axis(v)}</text>"
        )
    for gi, month in enumerate(months):
        x0 = left + gi * group + (group - bar * len(carriers)) / 2
        for ci, carrier in enumerate(carriers):
            v = sums[month].get(carrier, ZERO)
            h = float(v / top) * plot_h
            out.append(
                f'<rect x="{x0 + ci * bar:.1f}" y="{top_pad + plot_h - h:.1f}"'
                f' width="{bar - 2:.1f}" height="{h:.1f}" fill="{CARRIER_COLOURS[carrier]}">'
                f"<title>{month} {carrier}: {_fmt(q(v, 'amount'), 'amount')} kWh</title></rect>"
            )
        out.append(
            f'<text x="{left + gi * group + group / 2:.1f}" y="{height - bottom + 16}"'
            f' text-anchor="middle">{month}</text>'
        )
    for ci, carrier in enumerate(carriers):
        x = left + ci * 170
        out.append(
            f'<rect x="{x}" y="6" width="14" height="14" fill="{CARRIER_COLOURS[carrier]}"/>'
            f'<text x="{x + 20}" y="17">{escape(carrier.replace("_", " "))} (kWh)</text>'
        )
    out.append("</svg>")
    return "".join(out)


def ranking_chart(report: EnergyReport) -> str:
    """Horizontal bars: branches by kWh/m² per year (electricity + district heating)."""
    ranked = [b for b in report.ranking() if b.kwh_per_m2_year is not None]
    if not ranked:
        return "<p>No branch has a floor area in the branches file: no ranking.</p>"
    top = _nice_max(max(b.kwh_per_m2_year or ZERO for b in ranked))
    row_h, left, width = 26, 190, 1000
    height = 20 + row_h * len(ranked) + 20
    plot_w = width - left - 90
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%"'
        f' role="img" aria-label="Branches ranked by kWh per m² per year">'
    ]
    for i, b in enumerate(ranked):
        v = b.kwh_per_m2_year or ZERO
        w = float(v / top) * plot_w
        y = 10 + i * row_h
        out.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(b.info.name)}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}"'
            f' fill="{RANKING_COLOUR}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 16}">{_fmt(q(v, "intensity"), "x")}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def render_html(report: EnergyReport) -> str:
    tables = {t.name: t for t in report_tables(report)}
    names = {b.info.id: b.info.name for b in report.branches}
    o = report.options
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.notes)
    summary = tables["Summary"]
    summary_rows = Table(
        summary.name,
        summary.title,
        summary.columns,
        tuple(r for r in summary.rows if r[0] != "note"),
    )
    method = "".join(
        f"<dt><b>{escape(str(topic))}</b></dt><dd>{escape(str(text))}</dd>"
        for topic, text in tables["Method"].rows
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Energy and climate report {o.first} to {o.last}</title>
<style>{_CSS}</style></head>
<body>
<h1>Energy and climate report</h1>
<div class="meta">{o.first} to {o.last} · {escape(report.source)} ·
generated {report.generated:%Y-%m-%d %H:%M} UTC · OpenBranch</div>
<section id="summary"><h2>Summary</h2>{_table(summary_rows)}
{"<ul class='notes'>" + notes + "</ul>" if notes else ""}</section>
<section id="charts"><h2>Monthly consumption per carrier</h2>
<div class="chart">{monthly_chart(report)}</div>
<h2>Branches ranked by kWh/m² per year</h2>
<div class="chart">{ranking_chart(report)}</div></section>
<section id="closed" class="wide"><h2>Closed-hours energy</h2>
<p>What each branch used while it was closed (every whole hour its opening hours had it
closed, judged by its gateway), and the estimated waste: consumption above the closed-hour base
load in hours over the margin (lights left on, heating on a closed holiday).</p>
<div class="chart">{closed_chart(report.closed, names)}</div>
{_table(tables["ClosedHours"])}</section>
<section id="branches" class="wide"><h2>Branches</h2>{_table(tables["Branches"])}</section>
<section id="monthly" class="wide"><h2>Monthly</h2>{_table(tables["Monthly"])}</section>
<section id="factors"><h2>Emission factors</h2>{_table(tables["Factors"])}</section>
<section id="quality" class="wide"><h2>Data quality</h2>{_table(tables["DataQuality"])}</section>
<section id="method"><h2>Method</h2><dl>{method}</dl></section>
</body></html>
"""


def write_html(report: EnergyReport, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return [path]
