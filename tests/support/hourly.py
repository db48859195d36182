"""``energy_hourly`` readings as a gateway's energy accounts close them, from a function of the
local hour: for tests of what is computed from hourly consumption (closed-hours waste)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading

__all__ = ["hourly"]


def hourly(
    *,
    branch: str,
    device: str,
    carrier: str,
    first: date,
    last: date,
    tz: ZoneInfo,
    use: Callable[[datetime], float],
) -> Iterator[Reading]:
    """A measured reading for every UTC hour of the local days ``first``..``last`` (included);
    ``use(local start of the hour)`` is its consumption."""
    t = datetime.combine(first, time(0), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(0), tz).astimezone(UTC)
    while t < end:
        yield Reading(
            branch=branch,
            device=device,
            measurement=schema.ENERGY_HOURLY,
            fields={
                schema.HOURLY_CONSUMPTION.key: use(t.astimezone(tz)),
                schema.HOURLY_QUALITY.key: "measured",
                schema.HOURLY_COVERAGE.key: 1.0,
            },
            tags={schema.Tag.CARRIER.value: carrier},
            time=t,
        )
        t += timedelta(hours=1)
