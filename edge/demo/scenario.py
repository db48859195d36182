"""A simulated branch: what its devices would report through a day, driven by meaning.

The scenario never names a device model: it looks at each simulated point's measurement and
field (from the schema) and moves it the way the physical quantity moves — meters count up with
their power, visitors come and go with the hour, CO2 follows the people in the building.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from openbranch.edge.core import schema
from openbranch.edge.core.device import PointInfo, SimulatedDevice
from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.calendar import Calendar

__all__ = ["BranchScenario"]


@dataclass(slots=True)
class _Meter:
    kwh: float
    power_w: float = 0.0


@dataclass(slots=True)
class _Counter:
    entered: int = 0
    exited: int = 0


@dataclass(slots=True)
class BranchScenario:
    """Moves every simulated device of one branch forward in time."""

    devices: Mapping[str, SimulatedDevice]
    timezone: ZoneInfo
    seed: int = 7
    visitors_per_hour: float = 60.0
    present: int = 0
    calendar: Calendar | None = None  # when given, visitors follow the branch's hours
    straggler_until: time | None = None  # one visitor stays after closing until this time
    #: The counter at the door with the card reader: in self-service hours visitors wait
    #: there (``at_door``) and come in only when a card lets them (``walk_in``).
    card_door: str | None = None
    at_door: int = 0
    _walk_ins: int = field(init=False, default=0)
    _rng: random.Random = field(init=False)
    _meters: dict[str, _Meter] = field(init=False, default_factory=dict)
    _counters: dict[str, _Counter] = field(init=False, default_factory=dict)
    _counters_in_turn: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._counters_in_turn = [
            d
            for d, dev in self.devices.items()
            if any(p.measurement == schema.OCCUPANCY.name for p in dev.points())
        ]
        for device_id in self.devices:
            self._meters[device_id] = _Meter(kwh=10_000.0 + 1_000 * len(self._meters))
            self._counters[device_id] = _Counter()

    def open_fraction(self, when: datetime) -> float:
        """How busy the branch is at ``when``: 0 closed, 1 at the afternoon peak."""
        local = when.astimezone(self.timezone)
        hour = local.hour + local.minute / 60
        shape = 0.35 + 0.65 * max(0.0, math.sin(math.pi * (hour - 8) / 14))
        if self.calendar is not None:
            mode = self.calendar.mode_at(when).mode
            return {Mode.STAFFED: shape, Mode.SELF_SERVICE: 0.4 * shape}.get(mode, 0.0)
        return shape if 8 <= hour < 22 else 0.0

    def walk_in(self, people: int) -> None:
        """``people`` come in through the card door (a card admitted them, or a tailgater)."""
        self._walk_ins += people

    def _card_entry(self, when: datetime) -> bool:
        return (
            self.card_door is not None
            and self.calendar is not None
            and self.calendar.mode_at(when).mode is Mode.SELF_SERVICE
        )

    def step(self, when: datetime, seconds: float) -> None:
        """Advance the world by ``seconds`` ending at ``when`` and update every device."""
        busy = self.open_fraction(when)
        arrivals = self._poisson(self.visitors_per_hour * busy * seconds / 3600)
        through_door, self._walk_ins = self._walk_ins, 0
        if self._card_entry(when):  # they wait at the reader; admitted ones come in
            self.at_door += arrivals
            arrivals = 0
        else:
            self.at_door = 0  # no card needed (or closed): nobody waits at the reader
        leave_rate = 1 / 2700 if busy > 0 else 1 / 600  # a 45-minute visit; closing clears out
        departures = sum(
            1 for _ in range(self.present) if self._rng.random() < leave_rate * seconds
        )
        self.present = max(0, self.present + arrivals + through_door - departures)
        if self.card_door is not None:
            self._counters[self.card_door].entered += through_door
        for device_id, device in self.devices.items():
            self._update(
                device_id=device_id,
                device=device,
                busy=busy,
                seconds=seconds,
                arrivals=arrivals,
                departures=departures,
            )

    def _poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self._rng.random()
            if p <= limit:
                return k
            k += 1

    def _update(
        self,
        *,
        device_id: str,
        device: SimulatedDevice,
        busy: float,
        seconds: float,
        arrivals: int,
        departures: int,
    ) -> None:
        meter = self._meters[device_id]
        counter = self._counters[device_id]
        points = device.points()
        if device_id in self._counters_in_turn:  # entrances share the visitors
            share = self._counters_in_turn.index(device_id)
            n = len(self._counters_in_turn)
            counter.entered += arrivals // n + (1 if share < arrivals % n else 0)
            counter.exited += departures // n + (1 if share < departures % n else 0)
        meter.power_w = 2_500 + 9_000 * busy + self._rng.uniform(-150, 150)
        meter.kwh += meter.power_w * seconds / 3_600_000
        for point in points:
            value = self._value(point, meter, counter, busy)
            if value is not None:
                try:
                    device.set(point.id, value)
                except ValueError:  # a value this device cannot express; skip it
                    continue

    def _value(  # noqa: PLR0911, PLR0912 - one return per quantity reads best
        self, point: PointInfo, meter: _Meter, counter: _Counter, busy: float
    ) -> float | int | bool | None:
        if point.measurement is None or point.writable:
            return None  # actuators are the gateway's to move
        f = schema.measurement(point.measurement).field(point.field or "")
        jitter = self._rng.uniform(-1, 1)
        if f is schema.ENERGY_REGISTER:
            return round(meter.kwh, 2)
        if f is schema.ENERGY_POWER:
            return round(meter.power_w, 1)
        if f in (schema.ENERGY_VOLTAGE, schema.ELECTRICAL_VOLTAGE):
            return round(230 + 2 * jitter, 1)
        if f is schema.ENERGY_CURRENT:
            return round(meter.power_w / 230, 2)
        if f is schema.ELECTRICAL_CURRENT:
            return round(meter.power_w / 230 / 3 * (1 + 0.05 * jitter), 2)
        if f is schema.ELECTRICAL_POWER:
            return round(meter.power_w / 3 * (1 + 0.05 * jitter), 1)
        if f is schema.ELECTRICAL_APPARENT_POWER:
            return round(meter.power_w / 3 / 0.95, 1)
        if f is schema.ELECTRICAL_REACTIVE_POWER:
            return round(meter.power_w / 3 * 0.33, 1)
        if f is schema.ELECTRICAL_POWER_FACTOR:
            return round(0.95 + 0.02 * jitter, 3)
        if f is schema.ELECTRICAL_FREQUENCY:
            return round(50 + 0.02 * jitter, 2)
        if f is schema.ENERGY_FLOW:
            return round(0.4 + 0.8 * busy + 0.02 * jitter, 3)
        if f is schema.ENERGY_SUPPLY_TEMP:
            return round(70 + jitter, 1)
        if f is schema.ENERGY_RETURN_TEMP:
            return round(40 + jitter, 1)
        if f is schema.OCCUPANCY_ENTERED:
            return counter.entered
        if f is schema.OCCUPANCY_EXITED:
            return counter.exited
        if f is schema.OCCUPANCY_PRESENT:
            return self.present
        if f is schema.INDOOR_TEMPERATURE:
            return round(20.5 + 1.5 * busy + 0.2 * jitter, 1)
        if f is schema.INDOOR_CO2:
            return round(420 + 12 * self.present + 10 * jitter)
        if f is schema.INDOOR_HUMIDITY:
            return round(35 + 5 * busy + jitter, 1)
        if f is schema.ALERT_ACTIVE:
            if point.tags.get(schema.Tag.KIND.value) == "help_call":  # now and then, when open
                return True if busy > 0 and self._rng.random() < 0.002 else None
            return False  # fire and other safety inputs stay quiet in the demo
        if f is schema.DOOR_OPEN:
            return self._rng.random() < 0.1 * busy
        if f is schema.LIGHT_ON:
            return busy > 0
        if f is schema.LIGHT_LEVEL:
            return 80.0 if busy > 0 else 0.0
        return None
