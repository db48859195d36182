"""Waste in closed hours: each meter's closed-hour base load, and the hours that run above it.

A branch that is closed should draw its base load only: the fridge, the servers, the
ventilation's night setting, the heating's setback. Lights left on after closing, heating on a
closed holiday and a tap running at 03:00 show as closed hours well above it (KL's guidance on
data-driven energy management finds most of its savings there).

``WasteDetector`` runs at the gateway (decision 86): it is handed each ``energy_hourly`` reading
as the energy accounts close the hour, asks the branch calendar whether the whole hour was
closed, and judges it. It is pure: the state to persist and the alerts to raise come out, and
nothing here reads a clock, a file or the network.

The rules (decision 87), per meter (branch, device, carrier), all figures in the meter's unit
(kWh, m³ for water):

- A *closed hour* is a UTC hour wholly closed by the calendar (holidays, exceptions and the
  overrides in force included); the hour in which the branch closes or opens is not one.
- The *base load* is the 20th percentile (nearest rank: the value at rank ceil(0.2 n) of the n
  sorted) of the meter's measured closed hours over the last 28 days before the hour. Until it
  has 24 of them the meter is ``learning``: its hours are recorded, not judged.
- An hour is ``excess`` when its consumption is above base + max(50 % of base, the carrier's
  minimum margin: 0.2 kWh electricity, 1 kWh district heating, 0.01 m³ = 10 litres water);
  otherwise ``normal``. Its *excess* (the estimated waste) is consumption - base, and 0 for a
  normal hour. An interpolated hour (spread from a gap, so its shape is invented) is
  ``not_measured``: not judged, not in the base, and it neither extends nor ends a run.
- Three excess hours in a row raise ``closed_hours_waste:<device>`` (warning); the first
  normal closed hour after them, or the first hour that is not closed (the branch opened),
  clears it, saying how much went above the base load during the run.

Every closed hour becomes a ``closed_hours`` reading (consumption, base load, excess,
verdict), so dashboards and the climate report sum what the gateway judged, not a second
opinion of their own.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading, to_ns
from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.calendar import Calendar, Override

__all__ = [
    "MARGIN_MIN",
    "AlertChange",
    "Judgement",
    "MeterState",
    "Verdict",
    "WasteDetector",
    "WasteOutcome",
    "WastePolicy",
    "closed_by",
    "nearest_rank",
]

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
_HOUR_NS = 3_600 * 10**9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATE_VERSION = 1

#: The smallest margin above the base load that counts, per carrier (in its unit).
MARGIN_MIN: Mapping[str, float] = MappingProxyType(
    {
        schema.Carrier.ELECTRICITY.value: 0.2,  # kWh: a 200 W load for the hour
        schema.Carrier.DISTRICT_HEATING.value: 1.0,  # kWh
        schema.Carrier.WATER.value: 0.01,  # m³: 10 litres in the hour
    }
)


class Verdict(StrEnum):
    """The ``closed_hours.verdict`` choices."""

    LEARNING = "learning"  # fewer closed hours than ``min_hours`` in the window: no base yet
    NORMAL = "normal"  # at or below the margin above the base load
    EXCESS = "excess"  # above it
    NOT_MEASURED = "not_measured"  # interpolated over a gap: not judged


if [v.value for v in Verdict] != list(schema.CLOSED_VERDICT.choices):
    raise AssertionError("Verdict and schema.CLOSED_VERDICT's choices differ")


@dataclass(frozen=True, slots=True, kw_only=True)
class WastePolicy:
    """The detector's figures (the module docstring says what each means)."""

    window: timedelta = timedelta(days=28)
    percentile: int = 20
    min_hours: int = 24
    margin_ratio: float = 0.5
    margin_min: Mapping[str, float] = field(default_factory=lambda: MARGIN_MIN)
    run_hours: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile {self.percentile} is not in 1..100")
        if self.min_hours < 1 or self.run_hours < 1:
            raise ValueError("min_hours and run_hours must be at least 1")
        if self.window < HOUR or self.margin_ratio < 0:
            raise ValueError("window must be at least an hour, margin_ratio at least 0")

    def threshold(self, base: float, carrier: str) -> float:
        """Consumption above this is an excess hour."""
        return base + max(self.margin_ratio * base, self.margin_min.get(carrier, 0.0))


def nearest_rank(values: Sequence[float], percentile: int) -> float:
    """The ``percentile``-th percentile by nearest rank (as InfluxQL's ``percentile()``)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class MeterState:
    """What one meter's judge remembers: its measured closed hours in the window (hour index
    since the epoch, consumption), the last hour seen, and the current run of excess hours."""

    hours: tuple[tuple[int, float], ...] = ()
    last_hour: int | None = None  # hours since the epoch
    run: int = 0  # consecutive excess closed hours
    run_start: int | None = None  # the run's first hour
    run_excess: float = 0.0  # consumption above the base load during the run
    raised: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": STATE_VERSION,
                "hours": [list(h) for h in self.hours],
                "last_hour": self.last_hour,
                "run": self.run,
                "run_start": self.run_start,
                "run_excess": self.run_excess,
                "raised": self.raised,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> MeterState:
        """Raises ValueError when ``text`` is not a state ``to_json`` wrote."""
        try:
            raw = json.loads(text)
            if raw["v"] != STATE_VERSION:
                raise ValueError(f"version {raw['v']!r}, this gateway reads {STATE_VERSION}")
            return cls(
                hours=tuple((int(h), float(c)) for h, c in raw["hours"]),
                last_hour=None if raw["last_hour"] is None else int(raw["last_hour"]),
                run=int(raw["run"]),
                run_start=None if raw["run_start"] is None else int(raw["run_start"]),
                run_excess=float(raw["run_excess"]),
                raised=bool(raw["raised"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a closed-hours state ({exc}): {text[:200]!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Judgement:
    """The verdict on one hour of one meter, and the figures behind it."""

    device: str
    carrier: str
    hour: datetime  # UTC start
    closed: bool
    consumption: float
    verdict: Verdict | None  # None for an hour that was not closed
    base_load: float | None = None
    threshold: float | None = None
    excess: float = 0.0
    run: int = 0  # consecutive excess hours, this one included


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertChange:
    kind: str
    active: bool
    message: str


@dataclass(slots=True)
class WasteOutcome:
    """What one batch of hours gave: judgements, ``closed_hours`` readings to record, states
    to save (key -> JSON) and alerts to raise or clear, in order."""

    judgements: list[Judgement] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    alerts: list[AlertChange] = field(default_factory=list)


def closed_by(
    calendar: Calendar, overrides: Callable[[datetime], Sequence[Override]] = lambda _: ()
) -> Callable[[datetime, datetime], bool]:
    """ "Was the branch closed all of [start, end)?" from its calendar and the overrides in
    force at ``start`` (``Overrides.active``)."""

    def closed(start: datetime, end: datetime) -> bool:
        spans = calendar.timeline(start, end, overrides(start))
        return all(span.mode is Mode.CLOSED for span in spans)

    return closed


class WasteDetector:
    """Judges each meter's closed hours (see the module docstring).

    ``closed(start, end)``: whether the branch was closed for all of it (``closed_by``).
    ``load(key)``: a saved state (None when there is none), as ``state_key`` names it; the
    states in each ``WasteOutcome`` are to be saved. ``tz``: the branch's zone, for messages.
    """

    def __init__(
        self,
        *,
        branch: str,
        closed: Callable[[datetime, datetime], bool],
        load: Callable[[str], str | None] = lambda _key: None,
        policy: WastePolicy | None = None,
        tz: ZoneInfo | str = "Europe/Copenhagen",
    ) -> None:
        self._branch = branch
        self._closed = closed
        self._load = load
        self.policy = policy or WastePolicy()
        self._tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._meters: dict[tuple[str, str], MeterState] = {}
        self.unreadable_states = 0

    @staticmethod
    def state_key(device: str, carrier: str) -> str:
        return f"waste:{device}:{carrier}"

    @staticmethod
    def alert_kind(device: str) -> str:
        return f"{schema.CLOSED_HOURS_WASTE}:{device}"

    def state(self, device: str, carrier: str) -> MeterState:
        key = (device, carrier)
        found = self._meters.get(key)
        if found is None:
            text = self._load(self.state_key(device, carrier))
            found = MeterState()
            if text:
                try:
                    # an alert a previous run left raised was cleared at the start (the
                    # gateway does so): the run raises it again if it goes on
                    found = replace(MeterState.from_json(text), raised=False)
                except ValueError as exc:
                    self.unreadable_states += 1
                    log.error("closed hours: %s: saved state unreadable, learning afresh: %s",
                              device, exc)  # fmt: skip
            self._meters[key] = found
        return found

    def observe(self, readings: Iterable[Reading]) -> WasteOutcome:
        """Judge every ``energy_hourly`` reading among ``readings`` (others are ignored); an
        hour at or before the last one judged for its meter is skipped (seen already)."""
        out = WasteOutcome()
        for reading in readings:
            if reading.measurement is not schema.ENERGY_HOURLY:
                continue
            consumption = reading.fields.get(schema.HOURLY_CONSUMPTION.key)
            if not isinstance(consumption, float):
                continue
            carrier = reading.tags.get(schema.Tag.CARRIER.value, "")
            measured = reading.fields.get(schema.HOURLY_QUALITY.key) == "measured"
            judged = self.judge(
                reading.device, carrier, reading.time, consumption, measured=measured
            )
            if judged is None:
                continue
            judgement, change = judged
            out.judgements.append(judgement)
            if judgement.verdict is not None:
                out.readings.append(self._reading(judgement))
            if change is not None:
                out.alerts.append(change)
            state = self.state(reading.device, carrier)
            out.state[self.state_key(reading.device, carrier)] = state.to_json()
        return out

    def judge(
        self, device: str, carrier: str, hour: datetime, consumption: float, *, measured: bool
    ) -> tuple[Judgement, AlertChange | None] | None:
        """One hour of one meter (``hour``: its UTC start); None if seen already."""
        index = to_ns(hour) // _HOUR_NS
        s = self.state(device, carrier)
        if s.last_hour is not None and index <= s.last_hour:
            return None
        start = _EPOCH + index * HOUR
        if not self._closed(start, start + HOUR):
            judgement = Judgement(
                device=device, carrier=carrier, hour=start, closed=False, consumption=consumption,
                verdict=None,
            )  # fmt: skip
            change = self._end_run(device, carrier, s, "the branch opened")
            self._meters[(device, carrier)] = replace(
                s, last_hour=index, run=0, run_start=None, run_excess=0.0, raised=False
            )
            return judgement, change
        p = self.policy
        oldest = index - p.window // HOUR
        history = tuple(h for h in s.hours if h[0] >= oldest)
        base = nearest_rank([c for _, c in history], p.percentile) if history else None
        base = base if len(history) >= p.min_hours else None
        threshold = None if base is None else p.threshold(base, carrier)
        verdict = functools.partial(
            Judgement, device=device, carrier=carrier, hour=start, closed=True,
            consumption=consumption,
        )  # fmt: skip
        if not measured:
            judgement = verdict(
                verdict=Verdict.NOT_MEASURED, base_load=base, threshold=threshold, run=s.run
            )
            self._meters[(device, carrier)] = replace(s, hours=history, last_hour=index)
            return judgement, None
        history += ((index, consumption),)
        if base is None or threshold is None:
            judgement = verdict(verdict=Verdict.LEARNING)
            change = self._end_run(device, carrier, s, "the base load is being learnt again")
            self._meters[(device, carrier)] = MeterState(hours=history, last_hour=index)
            return judgement, change
        if consumption <= threshold:
            judgement = verdict(verdict=Verdict.NORMAL, base_load=base, threshold=threshold)
            change = self._end_run(device, carrier, s, "closed-hour consumption is back")
            self._meters[(device, carrier)] = MeterState(hours=history, last_hour=index)
            return judgement, change
        excess = consumption - base
        run = s.run + 1
        run_start = s.run_start if s.run_start is not None else index
        judgement = verdict(
            verdict=Verdict.EXCESS, base_load=base, threshold=threshold, excess=excess, run=run
        )
        state = MeterState(
            hours=history,
            last_hour=index,
            run=run,
            run_start=run_start,
            run_excess=s.run_excess + excess,
            raised=s.raised or run >= p.run_hours,
        )
        self._meters[(device, carrier)] = state
        change = None
        if state.raised and not s.raised:
            unit = _unit(carrier)
            change = AlertChange(
                kind=self.alert_kind(device),
                active=True,
                message=(
                    f"{device} ({carrier}) has used more than {threshold:.2f} {unit} an hour"
                    f" for {run} closed hours since {self._local(run_start)}: base load"
                    f" {base:.2f} {unit}/h, last hour {consumption:.2f} {unit},"
                    f" {state.run_excess:.2f} {unit} above the base load so far"
                ),
            )
        return judgement, change

    def _end_run(self, device: str, carrier: str, s: MeterState, why: str) -> AlertChange | None:
        if not s.raised or s.run_start is None:
            return None
        unit = _unit(carrier)
        return AlertChange(
            kind=self.alert_kind(device),
            active=False,
            message=(
                f"{device} ({carrier}): {why}; {s.run} closed hours from"
                f" {self._local(s.run_start)} used {s.run_excess:.2f} {unit} above the base load"
            ),
        )

    def _local(self, index: int) -> str:
        return f"{(_EPOCH + index * HOUR).astimezone(self._tz):%Y-%m-%d %H:%M}"

    def _reading(self, j: Judgement) -> Reading:
        assert j.verdict is not None
        fields: dict[str, float | str] = {
            schema.CLOSED_CONSUMPTION.key: j.consumption,
            schema.CLOSED_EXCESS.key: j.excess,
            schema.CLOSED_VERDICT.key: j.verdict.value,
        }
        if j.base_load is not None:
            fields[schema.CLOSED_BASE_LOAD.key] = j.base_load
        return Reading(
            branch=self._branch,
            device=j.device,
            measurement=schema.CLOSED_HOURS,
            fields=dict(fields),
            tags={schema.Tag.CARRIER.value: j.carrier},
            time=j.hour,
        )


def _unit(carrier: str) -> str:
    return "m³" if carrier == schema.Carrier.WATER.value else "kWh"
