"""Report by exception: which device readings are worth a line in the outbox (issue 17).

A device polled every second mostly repeats itself: a closed door reports "closed" 86,400
times a day. ``ChangeFilter`` decides, per series (measurement and tags of one device), whether
a reading is written:

- the first reading of a series since the gateway started is written (nothing is restored
  from the store: a restart costs one line per series, and a value that changed while the
  gateway was down is never mistaken for the old one);
- a reading whose fields differ from the series' last *written* reading is written: a bool or
  a string (door open, lock, mode, an alert raised or cleared) on any change, a number when it
  moved by more than its point's deadband (declared per point in the device's profile; 0, the
  default, means any change). A counter (energy registers and totals, people counters) has no
  deadband (the profile refuses one), so every change of a total is written and an unchanged
  total is not;
- a reading ``heartbeat`` seconds or more after the series' last written one is written
  whatever its value, so a dashboard always has a recent point and a silent device stays
  distinguishable from an unchanged one; a reading stamped before the last written one (the
  wall clock stepped back) is written too;
- any other reading is *suppressed*: it is never accepted (never committed), and counted.

An hour's consumption (``energy_hourly``, made by the energy accounting from the readings) is
a record of its own interval, not an observation of a state: it is always written (two hours
that used the same are two hours, and a sum over them needs both).

Deciding does not change the filter: ``split`` returns a ``Split`` that ``apply`` takes once
the batch has committed, so a commit that fails and is retried is decided again from the same
state. ``heartbeat`` 0 writes every reading (report by exception off).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from openbranch.edge.core import schema
from openbranch.edge.core.config import DEFAULT_HEARTBEAT
from openbranch.edge.core.device import Series
from openbranch.edge.core.reading import Reading, Value

__all__ = ["ALWAYS_WRITTEN", "ChangeFilter", "Split", "changed"]

#: Measurements whose every reading is written: records of an interval, not states.
ALWAYS_WRITTEN = frozenset({schema.ENERGY_HOURLY.name})

_Last = tuple[Mapping[str, Value], int]  # a series' last written fields and time (ns)


def changed(value: Value, last: Value, deadband: float) -> bool:
    """Whether ``value`` differs from ``last`` enough to be written: numbers by more than
    ``deadband`` (any difference when it is 0), everything else on any difference."""
    if isinstance(value, bool) or isinstance(last, bool) or type(value) is str:
        return value != last or type(value) is not type(last)
    if isinstance(last, str):
        return True
    if deadband <= 0:
        return value != last
    return abs(float(value) - float(last)) > deadband


@dataclass(slots=True)
class Split:
    """One batch decided: the readings to write, and what the filter learns once they are
    committed (``ChangeFilter.apply``)."""

    written: list[Reading] = field(default_factory=list)
    suppressed: Counter[str] = field(default_factory=Counter)  # measurement -> readings
    last: dict[str, _Last] = field(default_factory=dict)  # series key -> its new last


class ChangeFilter:
    def __init__(
        self,
        *,
        heartbeat: float = DEFAULT_HEARTBEAT,
        deadbands: Mapping[str, Mapping[Series, float]] | None = None,
    ) -> None:
        """``deadbands``: per device, per (measurement, field), how far a number may move
        from its last written value and still not be written (absent: 0, any change)."""
        self.heartbeat = heartbeat
        self._heartbeat_ns = int(heartbeat * 1_000_000_000)
        self._deadbands = {device: dict(d) for device, d in (deadbands or {}).items()}
        self._last: dict[str, _Last] = {}
        self.suppressed: Counter[str] = Counter()  # measurement -> readings not written

    @property
    def suppressed_total(self) -> int:
        return sum(self.suppressed.values())

    def split(self, readings: Sequence[Reading]) -> Split:
        """Decide every reading, in order (a later reading of a series in the same batch is
        compared with the earlier one when that one is written)."""
        out = Split()
        if self._heartbeat_ns <= 0:
            out.written = list(readings)
            return out
        for reading in readings:
            if reading.measurement.name in ALWAYS_WRITTEN:
                out.written.append(reading)
                continue
            key = reading.series_key()
            last = out.last.get(key) or self._last.get(key)
            if last is None or self._due(reading, last):
                out.written.append(reading)
                out.last[key] = (reading.fields, reading.time_ns)
            else:
                out.suppressed[reading.measurement.name] += 1
        return out

    def apply(self, split: Split) -> None:
        """The batch ``split`` decided has committed: its written readings are the series'
        last, its suppressed ones are counted."""
        self._last.update(split.last)
        self.suppressed.update(split.suppressed)

    def _due(self, reading: Reading, last: _Last) -> bool:
        fields, at = last
        since = reading.time_ns - at
        if since < 0 or since >= self._heartbeat_ns or fields.keys() != reading.fields.keys():
            return True
        bands = self._deadbands.get(reading.device, {})
        name = reading.measurement.name
        return any(
            changed(value, fields[key], bands.get((name, key), 0.0))
            for key, value in reading.fields.items()
        )
