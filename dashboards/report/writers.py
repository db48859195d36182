"""Writing the report: CSV files and an XLSX workbook (the HTML page is ``htmlpage``).

CSV: the Monthly table goes to the path given; the other tables go beside it as
``<stem>-<table>.csv`` (``report-branches.csv``, ...). Numbers are written with a decimal
point, exactly as rounded in ``tables``.

XLSX (openpyxl): one sheet per table, Summary, Monthly, Branches, Factors, DataQuality,
Method; numbers as numbers, headers bold and frozen, shares formatted as percentages.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from openbranch.dashboards.report.energy import EnergyReport
from openbranch.dashboards.report.tables import Table, Value, report_tables

__all__ = ["write_csv", "write_tables_csv", "write_tables_xlsx", "write_xlsx"]


def _cell(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def write_csv(report: EnergyReport, path: Path) -> list[Path]:
    """The Monthly table to ``path``, the others beside it; returns every file written."""
    return write_tables_csv(report_tables(report), path, main="Monthly")


def write_tables_csv(tables: Sequence[Table], path: Path, *, main: str) -> list[Path]:
    """Table ``main`` to ``path``, each other one beside it as ``<stem>-<name>.csv``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for table in tables:
        target = (
            path
            if table.name == main
            else path.with_name(f"{path.stem}-{table.name.lower()}{path.suffix or '.csv'}")
        )
        with target.open("w", encoding="utf-8", newline="") as out:
            w = csv.writer(out)
            w.writerow([c.title for c in table.columns])
            w.writerows([_cell(v) for v in row] for row in table.rows)
        written.append(target)
    return written


_FORMATS = {
    "amount": "#,##0.000",
    "kg": "#,##0.000",
    "share": "0.00%",
    "intensity": "#,##0.00",
    "dd": "0.0",
    "int": "0",
}


def _sheet(wb: Workbook, table: Table) -> None:
    ws = wb.create_sheet(table.name)
    ws.append([c.title for c in table.columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in table.rows:
        ws.append([v if v is not None else None for v in row])
    for i, col in enumerate(table.columns, start=1):
        letter = get_column_letter(i)
        fmt = _FORMATS.get(col.kind)
        width = max([len(col.title)] + [len(_cell(r[i - 1])) for r in table.rows]) + 2
        ws.column_dimensions[letter].width = min(80, width)
        if fmt is None:
            if table.name in ("Method", "Summary", "Notes"):
                for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
            continue
        for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
            cell.number_format = fmt
    ws.freeze_panes = "A2"


def write_xlsx(report: EnergyReport, path: Path) -> list[Path]:
    """The workbook with sheets Summary, Monthly, Branches, Factors, DataQuality, Method."""
    return write_tables_xlsx(report_tables(report), path)


def write_tables_xlsx(tables: Sequence[Table], path: Path) -> list[Path]:
    """A workbook with one sheet per table, in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    default = wb.active
    if default is not None:
        wb.remove(default)
    for table in tables:
        _sheet(wb, table)
    wb.save(path)
    wb.close()
    return [path]
