"""Plausibility of people counters at the source: a pure rule per (previous, new) reading,
table-tested, and the filter that applies it to every device's readings (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.plausible import (
    BURST,
    MAX_COUNT,
    MAX_RATE,
    CounterFilter,
    check_counter,
    value_range,
)
from openbranch.edge.core.reading import Reading

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# (previous accepted value and its time, or None; the new value and its time; the verdict:
# None when plausible, else the start of the reason)
TABLE = [
    pytest.param(None, 0, 0, None, id="first-zero"),
    pytest.param(None, 1_234, 0, None, id="first-in-range"),
    pytest.param(None, -5, 0, "negative", id="first-negative"),
    pytest.param(None, 4611686018427387904, 0, "out of range", id="first-2**62"),
    pytest.param(None, MAX_COUNT, 0, None, id="first-at-the-top"),
    pytest.param(None, MAX_COUNT + 1, 0, "out of range", id="first-above-the-top"),
    pytest.param((100, 0), 100, 10, None, id="unchanged"),
    pytest.param((100, 0), 150, 10, None, id="five-a-second"),
    pytest.param((100, 0), 100 + int(MAX_RATE * 10) + BURST, 10, None, id="at-the-rate-bound"),
    pytest.param((100, 0), 100 + int(MAX_RATE * 10) + BURST + 1, 10, "jump", id="over-the-bound"),
    pytest.param((100, 0), 100 + BURST, 0, None, id="a-burst-in-one-instant"),
    pytest.param((100, 0), 100 + BURST + 1, 0, "jump", id="more-than-a-burst-at-once"),
    pytest.param((100, 10), 4611686018427387904, 11, "out of range", id="jump-to-2**62"),
    pytest.param((98, 0), 1_000_098, 60, "jump", id="a-million-in-a-minute"),
    pytest.param((100, 0), 100 + 36_000, 3600, None, id="a-busy-hour-after-a-gap"),
    pytest.param((500, 0), 0, 10, None, id="reset-to-zero"),
    pytest.param((500, 0), 7, 1, None, id="reset-and-a-few-since"),
    pytest.param((500, 0), 499, 10, "drop", id="a-small-dip-is-no-reset"),
    pytest.param((500, 0), 250, 10, "drop", id="a-drop-to-half"),
    pytest.param((500, 0), -1, 10, "negative", id="negative-after-a-value"),
    pytest.param((100, 10), 110, 5, None, id="clock-back-a-burst"),
    pytest.param((100, 10), 200, 5, "jump", id="clock-back-more"),
]


@pytest.mark.parametrize(("previous", "value", "when", "verdict"), TABLE)
def test_counter_rule(
    previous: tuple[int, float] | None, value: int, when: float, verdict: str | None
) -> None:
    before = None if previous is None else (previous[0], at(previous[1]))
    reason = check_counter(before, value, at(when))
    if verdict is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(verdict), reason


def test_ranges_are_known_for_the_counter_fields_only() -> None:
    assert value_range(schema.OCCUPANCY.name, schema.OCCUPANCY_ENTERED.key) == (0, MAX_COUNT)
    assert value_range(schema.OCCUPANCY.name, schema.OCCUPANCY_EXITED.key) == (0, MAX_COUNT)
    assert value_range(schema.OCCUPANCY.name, schema.OCCUPANCY_PRESENT.key) is None
    assert value_range(schema.INDOOR.name, schema.INDOOR_TEMPERATURE.key) is None


def counter(entered: int | None, exited: int | None, when: float, **tags: str) -> Reading:
    fields = {}
    if entered is not None:
        fields[schema.OCCUPANCY_ENTERED.key] = entered
    if exited is not None:
        fields[schema.OCCUPANCY_EXITED.key] = exited
    return Reading(
        branch="b", device="door", measurement=schema.OCCUPANCY, fields=fields, time=at(when)
    )


def test_the_filter_drops_refused_fields_keeps_the_rest_and_says_why() -> None:
    check = CounterFilter()
    kept, refused = check.filter([counter(120, 98, 0)])
    assert [dict(r.fields) for r in kept] == [{"entered": 120, "exited": 98}]
    assert refused == []
    kept, refused = check.filter([counter(125, 4611686018427387904, 1)])
    assert [dict(r.fields) for r in kept] == [{"entered": 125}]
    assert len(refused) == 1
    assert refused[0].startswith("implausible: occupancy.exited = 4611686018427387904")
    kept, refused = check.filter([counter(-5, -1_000_000, 2)])
    assert kept == []
    assert len(refused) == 2
    # what was refused is not the reference: the next good value is checked against 98
    kept, refused = check.filter([counter(126, 99, 3)])
    assert [dict(r.fields) for r in kept] == [{"entered": 126, "exited": 99}]
    assert refused == []


def test_the_filter_passes_other_readings_untouched() -> None:
    other = Reading(
        branch="b",
        device="room",
        measurement=schema.INDOOR,
        fields={schema.INDOOR_TEMPERATURE.key: -40.0},
        time=T0,
    )
    kept, refused = CounterFilter().filter([other])
    assert kept == [other]
    assert refused == []
