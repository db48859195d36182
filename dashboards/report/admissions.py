"""Cards admitted in self-service hours, from the gateway's ``admission`` points: shared by
the climate report's branches table (a column beside the visitors) and the annual statistics.

The gateway writes, per UTC hour and branch mode, the hour's running count again with each
decision (``edge.runtime.entry``): the last point of an hour and mode is its total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from openbranch.dashboards.report.source import Point
from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode

__all__ = ["admissions"]


def admissions(points: Iterable[Point], periods: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """Cards admitted in self-service mode per branch within its period [lo, hi) in ns; a
    branch without any point in its period is left out (no entry control)."""
    hours: dict[tuple[str, str, int], int] = {}
    mode_key, admitted = schema.Tag.MODE.value, schema.ADMISSION_ADMITTED.key
    for p in points:
        branch = p.tags.get(schema.Tag.BRANCH.value, "")
        period = periods.get(branch)
        value = p.fields.get(admitted)
        if period is None or not period[0] <= p.time_ns < period[1]:
            continue
        if not isinstance(value, Decimal):
            continue
        hours[(branch, p.tags.get(mode_key, ""), p.time_ns)] = int(value)  # the later wins
    out: dict[str, int] = {}
    for (branch, mode, _), count in hours.items():
        out[branch] = out.get(branch, 0) + (count if mode == Mode.SELF_SERVICE.value else 0)
    return out
