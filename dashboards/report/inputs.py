"""The report's other inputs: what each branch is (floor area, price area, heat supplier, time
zone) and the heating degree days.

Branches come from files in the fleet inventory's shape (``examples/inventories/*.yaml``):
``municipality`` (price_area, heat_supplier, timezone) and ``branches`` (id, name,
floor_area_m2, and overrides). Only those keys are read, with the inventory's located errors;
the rest of an inventory is left to ``provisioning`` (the report does not import it: provisioning
imports dashboards, not the other way round).

Degree days come from a CSV with a ``date`` column and either ``degree_days`` (already base
17 °C, as DMI publishes them) or ``mean_temp_c`` (the day's mean outdoor temperature, from which
degree days are max(0, 17 - T)).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from openbranch.edge.core.yamlsource import ConfigError, Problem, load_yaml, validate

__all__ = [
    "DEGREE_DAY_BASE_C",
    "BranchInfo",
    "load_branches",
    "load_degree_days",
]

DEGREE_DAY_BASE_C = Decimal(17)


@dataclass(frozen=True, slots=True)
class BranchInfo:
    """What the report needs to know about a branch besides its data."""

    id: str
    name: str
    timezone: str = "Europe/Copenhagen"
    price_area: str | None = None
    heat_supplier: str | None = None
    floor_area_m2: Decimal | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the rest of an inventory is provisioning's


class _Municipality(_Model):
    price_area: Literal["DK1", "DK2"] | None = None
    heat_supplier: str | None = None
    timezone: str = "Europe/Copenhagen"


class _Branch(_Model):
    id: str = Field(min_length=1)
    name: str = ""
    floor_area_m2: Decimal | None = Field(default=None, gt=0)
    timezone: str | None = None
    price_area: Literal["DK1", "DK2"] | None = None
    heat_supplier: str | None = None


class _File(_Model):
    municipality: _Municipality = _Municipality()
    branches: list[_Branch] = Field(default_factory=list)


def load_branches(paths: Sequence[Path | str]) -> dict[str, BranchInfo]:
    """Branch id -> info from inventory-shaped files (a later file wins for the same id)."""
    out: dict[str, BranchInfo] = {}
    for path in paths:
        doc = load_yaml(path)
        data = validate(_File, doc)
        town = data.municipality
        for i, b in enumerate(data.branches):
            zone = b.timezone or town.timezone
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise doc.error(("branches", i, "timezone"), f"unknown zone {zone!r}") from None
            out[b.id] = BranchInfo(
                id=b.id,
                name=b.name or b.id,
                timezone=zone,
                price_area=b.price_area or town.price_area,
                heat_supplier=b.heat_supplier or town.heat_supplier,
                floor_area_m2=b.floor_area_m2,
            )
    return out


def load_degree_days(path: Path | str) -> Mapping[date, Decimal]:
    """Heating degree days (base 17 °C) per date; ConfigError naming file:line: column."""
    path = Path(path)
    rows = csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines())
    columns = rows.fieldnames or []
    value_col = next((c for c in ("degree_days", "mean_temp_c") if c in columns), None)
    if "date" not in columns or value_col is None:
        raise ConfigError(
            [
                Problem(
                    str(path),
                    1,
                    ("date" if "date" not in columns else "degree_days",),
                    "need columns date and degree_days or mean_temp_c"
                    f" (have: {', '.join(columns)})",
                )
            ]
        )
    out: dict[date, Decimal] = {}
    for number, row in enumerate(rows, start=2):
        try:
            day = date.fromisoformat(row["date"].strip())
        except ValueError:
            raise ConfigError(
                [Problem(str(path), number, ("date",), f"{row['date']!r} is not a date")]
            ) from None
        try:
            value = Decimal(row[value_col].strip().replace(",", "."))
        except InvalidOperation:
            raise ConfigError(
                [Problem(str(path), number, (value_col,), f"{row[value_col]!r} is not a number")]
            ) from None
        if value_col == "mean_temp_c":
            value = max(Decimal(0), DEGREE_DAY_BASE_C - value)
        elif value < 0:
            raise ConfigError([Problem(str(path), number, (value_col,), f"{value} is below 0")])
        out[day] = value
    return out
