"""Readings built by hand for the tests: one branch ("b"), a device, a measurement, fields and
a time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading, Value

__all__ = ["reading_at"]


def reading_at(
    device: str,
    measurement: schema.Measurement,
    fields: Mapping[str, Value],
    at: datetime,
    tags: Mapping[str, str] | None = None,
) -> Reading:
    return Reading(
        branch="b", device=device, measurement=measurement, fields=fields, tags=tags or {}, time=at
    )
