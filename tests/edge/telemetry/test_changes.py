"""Report by exception (``ChangeFilter``): which device readings are written, table by table.

The gateway around it (deadbands from the profiles, the count in ``gateway status`` and the
health reading, a failed commit decided again) is in tests/edge/runtime/test_exception_report.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading, Value
from openbranch.edge.telemetry.changes import ChangeFilter, changed
from tests.support.readings import reading_at

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
HEARTBEAT = 900.0
BANDS = {"climate": {("indoor", "temperature_c"): 0.2, ("indoor", "co2_ppm"): 20.0}}


def reading(
    measurement: schema.Measurement,
    fields: Mapping[str, Value],
    seconds: float,
    *,
    device: str = "climate",
    tags: Mapping[str, str] | None = None,
) -> Reading:
    return reading_at(device, measurement, fields, T0 + timedelta(seconds=seconds), tags)


def indoor(seconds: float, temperature: float, co2: float = 500.0) -> Reading:
    return reading(schema.INDOOR, {"temperature_c": temperature, "co2_ppm": co2}, seconds)


def door(seconds: float, *, open_: bool, device: str = "door") -> Reading:
    return reading(schema.DOOR, {"open": open_, "locked": False}, seconds, device=device)


def fire(seconds: float, *, active: bool) -> Reading:
    return reading(
        schema.ALERT, {"active": active}, seconds, device="door", tags={"kind": "fire_alarm"}
    )


def meter(seconds: float, register: float, power: float = 1000.0) -> Reading:
    return reading(
        schema.ENERGY,
        {"register": register, "total": register, "power_w": power},
        seconds,
        device="meter",
        tags={"carrier": "electricity"},
    )


def written(f: ChangeFilter, *readings: Reading) -> list[Reading]:
    """Decide the readings one batch each, as the committer does, and apply each."""
    out = []
    for r in readings:
        split = f.split([r])
        f.apply(split)
        out += split.written
    return out


@pytest.mark.parametrize(
    ("value", "last", "deadband", "expected"),
    [
        (21.0, 21.0, 0.0, False),
        (21.01, 21.0, 0.0, True),  # deadband 0: any change
        (21.2, 21.0, 0.2, False),  # at the deadband: not more than it
        (21.25, 21.0, 0.2, True),
        (20.7, 21.0, 0.2, True),  # down as well as up
        (5, 5, 0.0, False),
        (6, 5, 0.0, True),
        (True, True, 0.0, False),
        (False, True, 5.0, True),  # a bool changes on any change, whatever the deadband
        ("free", "locked", 0.0, True),
        ("locked", "locked", 0.0, False),
        (1, True, 0.0, True),  # a type change is a change
    ],
)
def test_changed(value: Value, last: Value, deadband: float, expected: bool) -> None:
    assert changed(value, last, deadband) is expected


def test_the_first_reading_of_each_series_is_written_then_only_changes() -> None:
    f = ChangeFilter(heartbeat=HEARTBEAT)
    out = written(
        f,
        door(0, open_=False),
        door(1, open_=False),
        door(2, open_=True),  # a state change: always written
        door(3, open_=True),
        door(4, open_=False),
        door(5, open_=False, device="other-door"),  # another series: its first reading
    )
    assert [(r.device, r.fields["open"], r.time) for r in out] == [
        ("door", False, T0),
        ("door", True, T0 + timedelta(seconds=2)),
        ("door", False, T0 + timedelta(seconds=4)),
        ("other-door", False, T0 + timedelta(seconds=5)),
    ]
    assert f.suppressed == {"door": 2}
    assert f.suppressed_total == 2


def test_a_number_is_written_when_it_moved_more_than_its_deadband_from_the_last_written() -> None:
    f = ChangeFilter(heartbeat=HEARTBEAT, deadbands=BANDS)
    out = written(
        f,
        indoor(0, 21.0),
        indoor(60, 21.1),
        indoor(120, 21.2),  # 0.2 from the last WRITTEN (21.0): not more than the deadband
        indoor(180, 21.3),  # 0.3 from 21.0: written, though only 0.1 from the last read
        indoor(240, 21.3, co2=519.0),  # co2 within its 20 ppm
        indoor(300, 21.3, co2=521.0),  # co2 beyond: the whole line is written
    )
    assert [(r.fields["temperature_c"], r.fields["co2_ppm"]) for r in out] == [
        (21.0, 500.0),
        (21.3, 500.0),
        (21.3, 521.0),
    ]
    assert f.suppressed == {"indoor": 3}


def test_a_device_without_deadbands_writes_every_change() -> None:
    f = ChangeFilter(heartbeat=HEARTBEAT, deadbands=BANDS)
    other = [
        reading(schema.INDOOR, {"temperature_c": t}, s, device="other")
        for s, t in ((0, 21.0), (60, 21.01), (120, 21.01))
    ]
    assert [r.fields["temperature_c"] for r in written(f, *other)] == [21.0, 21.01]


def test_a_counter_is_exact_an_unchanged_total_is_not_written_a_changed_one_always() -> None:
    f = ChangeFilter(heartbeat=HEARTBEAT, deadbands={"meter": {("energy", "power_w"): 500.0}})
    out = written(
        f,
        meter(0, 1000.0),
        meter(10, 1000.0, power=1100.0),  # total unchanged, power within its deadband
        meter(20, 1000.001, power=1100.0),  # the smallest step of the total: written
        meter(30, 1000.001),
    )
    assert [r.fields["total"] for r in out] == [1000.0, 1000.001]
    assert f.suppressed == {"energy": 2}


def test_an_alert_is_written_when_raised_and_cleared_and_at_the_heartbeat() -> None:
    f = ChangeFilter(heartbeat=HEARTBEAT)
    seconds = [0, 1, 2, 3, 4, 5, 904]
    states = [False, False, True, True, False, False, False]
    out = written(f, *(fire(s, active=a) for s, a in zip(seconds, states, strict=True)))
    assert [(r.time - T0).total_seconds() for r in out] == [0, 2, 4, 904]
    assert [r.fields["active"] for r in out] == [False, True, False, False]


def test_the_heartbeat_writes_an_unchanged_series_from_its_last_written_reading() -> None:
    f = ChangeFilter(heartbeat=HEARTBEAT)
    out = written(f, *(door(s, open_=False) for s in range(0, 1900, 100)))
    assert [(r.time - T0).total_seconds() for r in out] == [0, 900, 1800]
    assert f.suppressed == {"door": 19 - 3}


def test_a_reading_stamped_before_the_last_written_one_is_written() -> None:
    """The wall clock stepped back: the heartbeat must not wait for the old stamp."""
    f = ChangeFilter(heartbeat=HEARTBEAT)
    out = written(f, door(600, open_=False), door(0, open_=False), door(1, open_=False))
    assert [(r.time - T0).total_seconds() for r in out] == [600, 0]


def test_a_reading_with_other_fields_is_written() -> None:
    f = ChangeFilter(heartbeat=HEARTBEAT)
    both = reading(schema.DOOR, {"open": False, "locked": False}, 0, device="door")
    one = reading(schema.DOOR, {"open": False}, 1, device="door")
    assert written(f, both, one) == [both, one]


def test_a_batch_is_decided_in_order_and_learned_only_when_applied() -> None:
    """A batch decided but never applied (its commit failed) leaves the filter as it was: the
    retry decides the same readings the same way, and counts them once."""
    f = ChangeFilter(heartbeat=HEARTBEAT)
    batch = [door(0, open_=False), door(1, open_=False), door(2, open_=True)]
    failed = f.split(batch)
    assert [r.time for r in failed.written] == [T0, T0 + timedelta(seconds=2)]
    assert failed.suppressed == {"door": 1}
    assert f.suppressed_total == 0  # not applied: nothing learned, nothing counted
    retried = f.split(batch)
    assert retried.written == failed.written
    f.apply(retried)
    assert f.suppressed == {"door": 1}
    assert written(f, door(3, open_=True)) == []  # learned: True was written at 2 s


def test_heartbeat_zero_writes_every_reading() -> None:
    f = ChangeFilter(heartbeat=0)
    readings = [door(s, open_=False) for s in range(5)]
    assert written(f, *readings) == readings
    assert f.suppressed_total == 0


def test_every_hours_consumption_is_written_also_when_it_equals_the_last() -> None:
    """Two hours that used the same are two hours: a sum over them needs both."""
    f = ChangeFilter(heartbeat=HEARTBEAT)
    hours = [
        reading(
            schema.ENERGY_HOURLY,
            {"consumption": 2.0, "quality": "measured", "coverage": 1.0},
            3600 * h,
            device="meter",
            tags={"carrier": "electricity"},
        )
        for h in range(3)
    ]
    assert written(f, *hours) == hours
    assert f.suppressed_total == 0
