"""The energy and climate report: per branch, per local month, per carrier; kWh, coverage,
Scope 2 CO2e, indicators, data quality and method; as CSV, XLSX or HTML.

``build_report(source, options)`` computes it from an ``InfluxSource`` or a ``StoreSource``;
``write_csv``, ``write_xlsx`` and ``write_html`` write it. How to update the emission factor
table: ``README.md`` beside this file.
"""

from openbranch.dashboards.report.energy import (
    BranchRow,
    EnergyReport,
    MeterQuality,
    MonthRow,
    ReportOptions,
    build_report,
)
from openbranch.dashboards.report.factors import (
    DEFAULT_FACTORS,
    FactorTable,
    HourlyFactors,
    load_factor_table,
    load_hourly_factors,
)
from openbranch.dashboards.report.htmlpage import write_html
from openbranch.dashboards.report.inputs import BranchInfo, load_branches, load_degree_days
from openbranch.dashboards.report.source import (
    HourRow,
    InfluxSource,
    Source,
    SourceError,
    StoreSource,
)
from openbranch.dashboards.report.writers import write_csv, write_xlsx

__all__ = [
    "DEFAULT_FACTORS",
    "BranchInfo",
    "BranchRow",
    "EnergyReport",
    "FactorTable",
    "HourRow",
    "HourlyFactors",
    "InfluxSource",
    "MeterQuality",
    "MonthRow",
    "ReportOptions",
    "Source",
    "SourceError",
    "StoreSource",
    "build_report",
    "load_branches",
    "load_degree_days",
    "load_factor_table",
    "load_hourly_factors",
    "write_csv",
    "write_html",
    "write_xlsx",
]
