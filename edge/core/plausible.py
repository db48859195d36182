"""Plausibility at the source: a people counter's value is believed only if a door could have
produced it. Pure; every refusal says why.

A counter (``occupancy.entered``, ``occupancy.exited``: the running totals of one counting
line) is checked against the last value of the same device and field that was believed:

- in range: ``0 <= value <= MAX_COUNT``; a negative count is refused, so is 2**62.
- monotonic, at a door's pace: it may grow by at most ``MAX_RATE`` people a second of the
  readings' times since that value, plus ``BURST`` (a counter that reports in steps; a clock
  that went back counts as no time at all).
- a drop is a reset only when the counter is back near zero: at most what could have been
  counted since the last value (``MAX_RATE`` a second plus ``BURST``). Any other drop is
  refused: a counter that lost 1 of 500 did not restart.

The first value of a counter (after a start) is checked for its range only: there is nothing
to compare it with. A refused value is never the reference: the next one is compared with
the last value believed, so a single spoofed or garbled message cannot move the baseline.

``CounterFilter`` applies the rule to a stream of readings (the coordinator runs every
device's readings through one): refused fields are taken out of their reading, a reading left
without fields is dropped, and each refusal comes back as a reason starting "implausible:".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading, Value

__all__ = [
    "BURST",
    "COUNTERS",
    "MAX_COUNT",
    "MAX_RATE",
    "CounterFilter",
    "check_counter",
    "value_range",
]

MAX_RATE = 10.0  # people a second one counting line can pass (a wide door, a crowd leaving)
BURST = 10  # people on top of the rate: a counter that reports in steps
MAX_COUNT = 100_000_000  # a running total: 10,000 visitors a day for 27 years

#: The (measurement, field) pairs that are people counters' running totals.
COUNTERS = frozenset(
    {
        (schema.OCCUPANCY.name, schema.OCCUPANCY_ENTERED.key),
        (schema.OCCUPANCY.name, schema.OCCUPANCY_EXITED.key),
    }
)


def value_range(measurement: str, field: str) -> tuple[int, int] | None:
    """The values a field can plausibly have, where the vocabulary knows it."""
    return (0, MAX_COUNT) if (measurement, field) in COUNTERS else None


def check_counter(previous: tuple[int, datetime] | None, value: int, when: datetime) -> str | None:
    """None when ``value`` at ``when`` is a plausible next value of a counter whose last
    believed value was ``previous`` (value, time); else the reason."""
    if value < 0:
        return f"negative: a count is never below 0 (got {value:,})"
    if value > MAX_COUNT:
        return f"out of range: {value:,} is above {MAX_COUNT:,}"
    if previous is None:
        return None
    last, then = previous
    elapsed = max(0.0, (when - then).total_seconds())
    allowed = int(MAX_RATE * elapsed) + BURST
    if value >= last and value - last > allowed:
        return (
            f"jump: +{value - last:,} in {elapsed:g} s, more than a door passes "
            f"({MAX_RATE:g} a second, {BURST} at once)"
        )
    if allowed < value < last:  # a reset goes back near zero and counts again
        return f"drop: {last:,} to {value:,} is neither counting on nor a reset to zero"
    return None


class CounterFilter:
    """``check_counter`` over a stream of readings, remembering each counter's last believed
    value per (device, measurement, tags, field)."""

    def __init__(self) -> None:
        self._last: dict[tuple[object, ...], tuple[int, datetime]] = {}

    def filter(self, readings: Sequence[Reading]) -> tuple[list[Reading], list[str]]:
        """The readings with their implausible counter fields taken out, and a reason for
        each one taken out."""
        kept: list[Reading] = []
        refused: list[str] = []
        for reading in readings:
            name = reading.measurement.name
            fields: dict[str, Value] = {}
            for key, value in reading.fields.items():
                if (name, key) in COUNTERS and isinstance(value, int):
                    ident = (reading.device, name, tuple(sorted(reading.tags.items())), key)
                    reason = check_counter(self._last.get(ident), value, reading.time)
                    if reason is not None:
                        refused.append(f"implausible: {name}.{key} = {value}: {reason}")
                        continue
                    self._last[ident] = (value, reading.time)
                fields[key] = value
            if len(fields) == len(reading.fields):
                kept.append(reading)
            elif fields:
                kept.append(dataclasses.replace(reading, fields=fields))
        return kept, refused
