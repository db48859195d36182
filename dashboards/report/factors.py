"""Emission factors: the shipped table (``factors.yaml``), hourly electricity series, lookups.

Every factor is held in g CO2e per kWh (kg/MWh is the same number). A table row says what it
applies to (electricity per price area, district heating per supplier), its year, value, unit,
source, method and whether it is preliminary or verified; the report prints all of that in its
Factors sheet, so a reader sees what each CO2e figure rests on.

Hourly electricity factors come from a CSV in the shape of Energinet's published emission data
(Energi Data Service, ``CO2Emis``): columns ``HourUTC`` (or ``Minutes5UTC``), ``PriceArea`` and
``CO2Emission`` (g/kWh). 5-minute rows are averaged into their hour.

Exceptions: ``ConfigError`` (from ``edge.yamlsource``) with file:line: field for bad input.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openbranch.edge.core import schema
from openbranch.edge.core.yamlsource import ConfigError, Problem, load_yaml, validate

__all__ = [
    "DEFAULT_FACTORS",
    "FactorRow",
    "FactorTable",
    "HourlyFactors",
    "load_factor_table",
    "load_hourly_factors",
]

DEFAULT_FACTORS = Path(__file__).with_name("factors.yaml")
_PER_KWH = {"g/kWh": Decimal(1), "kg/MWh": Decimal(1), "kg/kWh": Decimal(1000)}


class FactorRow(BaseModel):
    """One factor of the table (see ``factors.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    carrier: Literal["electricity", "district_heating"]
    area: Literal["DK1", "DK2"] | None = None
    supplier: str | None = None
    year: int = Field(ge=1990, le=2100)
    value: Decimal = Field(ge=0)
    unit: Literal["g/kWh", "kg/MWh", "kg/kWh"]
    method: Literal["location-based", "market-based", "supplier-declaration"]
    source: str = Field(min_length=3)
    preliminary: bool
    verified: bool = False

    @model_validator(mode="after")
    def _applies_to_one_thing(self) -> FactorRow:
        if self.carrier == schema.Carrier.ELECTRICITY.value and self.area is None:
            raise ValueError("an electricity factor names its price area (area: DK1 or DK2)")
        if self.carrier == schema.Carrier.DISTRICT_HEATING.value and not self.supplier:
            raise ValueError("a district heating factor names its supplier")
        return self

    @property
    def g_per_kwh(self) -> Decimal:
        return self.value * _PER_KWH[self.unit]

    @property
    def applies_to(self) -> str:
        return self.area or self.supplier or ""


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")
    factors: list[FactorRow] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class FactorTable:
    """The annual factors, with a lookup that says which year it fell back to."""

    rows: tuple[FactorRow, ...]
    path: str

    def annual(self, carrier: str, applies_to: str, year: int) -> FactorRow | None:
        """The row for ``year``; else the latest earlier year; else the earliest later one."""
        rows = [r for r in self.rows if r.carrier == carrier and r.applies_to == applies_to]
        if not rows:
            return None
        exact = [r for r in rows if r.year == year]
        if exact:
            return exact[0]
        earlier = [r for r in rows if r.year < year]
        if earlier:
            return max(earlier, key=lambda r: r.year)
        return min(rows, key=lambda r: r.year)


def load_factor_table(path: Path | str = DEFAULT_FACTORS) -> FactorTable:
    """The factor table in ``path`` (the shipped one by default), validated with locations."""
    table = validate(_Table, load_yaml(path))
    seen: set[tuple[str, str, int]] = set()
    for row in table.factors:
        key = (row.carrier, row.applies_to, row.year)
        if key in seen:
            raise ConfigError(
                [Problem(str(path), None, ("factors",), f"two factors for {key}: keep one")]
            )
        seen.add(key)
    return FactorTable(tuple(table.factors), str(path))


@dataclass(frozen=True, slots=True)
class HourlyFactors:
    """Hourly g CO2e/kWh per price area, keyed by the UTC hour start (ns)."""

    by_area: Mapping[str, Mapping[int, Decimal]]
    path: str

    def get(self, area: str, hour_ns: int) -> Decimal | None:
        return self.by_area.get(area, {}).get(hour_ns)


_TIME_COLUMNS = ("HourUTC", "Minutes5UTC")


def _problem(path: Path, line: int, column: str, message: str) -> ConfigError:
    return ConfigError([Problem(str(path), line, (column,), message)])


def load_hourly_factors(path: Path | str) -> HourlyFactors:
    """An hourly emission CSV (Energinet's shape; ``;`` or ``,`` separated, decimal point or
    comma). Raises ConfigError naming file:line: column for a bad row."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    dialect = ";" if text.split("\n", 1)[0].count(";") > 0 else ","
    reader = csv.DictReader(text.splitlines(), delimiter=dialect)
    columns = reader.fieldnames or []
    time_col = next((c for c in _TIME_COLUMNS if c in columns), None)
    for needed in (time_col, "PriceArea", "CO2Emission"):
        if needed is None or needed not in columns:
            raise _problem(
                path, 1, needed or "HourUTC", f"missing column (have: {', '.join(columns)})"
            )
    assert time_col is not None
    sums: dict[str, dict[int, list[Decimal]]] = defaultdict(lambda: defaultdict(list))
    for number, row in enumerate(reader, start=2):
        try:
            when = datetime.fromisoformat(row[time_col].strip().replace(" ", "T"))
        except ValueError:
            raise _problem(path, number, time_col, f"{row[time_col]!r} is not a time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # the column is UTC by its name
        try:
            value = Decimal(row["CO2Emission"].strip().replace(",", "."))
        except InvalidOperation:
            raise _problem(
                path, number, "CO2Emission", f"{row['CO2Emission']!r} is not a number"
            ) from None
        if value < 0:
            raise _problem(path, number, "CO2Emission", f"{value} is below 0")
        area = row["PriceArea"].strip()
        seconds = int(when.timestamp())
        sums[area][(seconds - seconds % 3600) * 10**9].append(value)
    return HourlyFactors(
        {
            area: {hour: sum(vs, Decimal(0)) / len(vs) for hour, vs in hours.items()}
            for area, hours in sums.items()
        },
        str(path),
    )


def rows_of(table: FactorTable, used: Iterable[tuple[str, str, int]]) -> list[FactorRow]:
    """The table rows a report used (carrier, applies_to, year), in table order."""
    wanted = set(used)
    return [r for r in table.rows if (r.carrier, r.applies_to, r.year) in wanted]
