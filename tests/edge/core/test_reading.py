"""Readings are checked against the schema and serialise to exact line protocol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.reading import Reading, to_ns
from openbranch.edge.core.schema import SchemaError

T = datetime(2026, 3, 29, 1, 0, 0, 123456, tzinfo=UTC)


def test_line_protocol_types_escapes_and_time() -> None:
    r = Reading(
        branch="hasle",
        device="main meter",
        measurement=schema.ENERGY,
        fields={"register": 1234.5, "power_w": 2000.0},
        tags={"carrier": "electricity"},
        time=T,
    )
    assert r.to_line() == (
        "energy,branch=hasle,carrier=electricity,device=main\\ meter "
        "power_w=2000.0,register=1234.5 1774746000123456000"
    )
    door = Reading(
        branch="b",
        device="d",
        measurement=schema.DOOR,
        fields={"mode": "free", "open": True},
        time=T,
    )
    assert door.to_line() == 'door,branch=b,device=d mode="free",open=true 1774746000123456000'
    occ = Reading(
        branch="b", device="c", measurement=schema.OCCUPANCY, fields={"entered": 12}, time=T
    )
    assert occ.to_line() == "occupancy,branch=b,device=c entered=12i 1774746000123456000"
    alert = Reading(
        branch="b",
        device="gw",
        measurement=schema.ALERT,
        fields={"message": 'say "hi" \\ bye'},
        tags={"kind": "x"},
        time=T,
    )
    assert 'message="say \\"hi\\" \\\\ bye"' in alert.to_line()


def test_to_ns_is_exact_across_zones() -> None:
    cet = timezone(timedelta(hours=1))
    assert to_ns(T) == to_ns(T.astimezone(cet)) == 1774746000123456000
    with pytest.raises(ValueError, match="naive"):
        to_ns(datetime(2026, 1, 1))


class _Float(float):
    """A float subclass, as numpy.float64 is."""


@pytest.mark.parametrize(
    ("measurement", "fields", "tags", "message"),
    [
        (schema.ENERGY, {"register": 5}, {}, "is float, got int"),
        (schema.OCCUPANCY, {"entered": 1.0}, {}, "is int, got float"),
        (schema.OCCUPANCY, {"entered": True}, {}, "is int, got bool"),
        (schema.DOOR, {"mode": "ajar"}, {}, "is not one of"),
        (schema.ENERGY, {"kwh": 1.0}, {}, "has no field 'kwh'"),
        (schema.ENERGY, {"register": float("nan")}, {}, "not a number"),
        (schema.ENERGY, {"register": _Float("inf")}, {}, "not a number"),  # a subclass too
        (schema.ENERGY, {"register": "5.0"}, {}, "is float, got str"),
        (schema.DOOR, {"open": 1}, {}, "is bool, got int"),
        (schema.DOOR, {"mode": 1}, {}, "is string, got int"),
        (schema.ENERGY, {}, {}, "needs a field"),
        (schema.ENERGY, {"register": 1.0}, {"zone": "x"}, "has no tag 'zone'"),
    ],
)
def test_schema_violations_are_refused(
    measurement: schema.Measurement, fields: dict, tags: dict, message: str
) -> None:
    with pytest.raises(SchemaError, match=message):
        Reading(branch="b", device="d", measurement=measurement, fields=fields, tags=tags, time=T)


def test_subclasses_of_a_field_type_are_accepted_and_written_as_it() -> None:
    reading = Reading(
        branch="b",
        device="d",
        measurement=schema.DOOR,
        fields={"mode": schema.DoorMode.LOCKED, "open": False},
        time=T,
    )
    energy = Reading(
        branch="b", device="d", measurement=schema.ENERGY, fields={"register": _Float(2.5)}, time=T
    )
    assert reading.to_line().split(" ")[1] == 'mode="locked",open=false'
    assert energy.to_line().split(" ")[1] == "register=2.5"


def test_schema_names_are_unique_and_typed() -> None:
    assert set(schema.MEASUREMENTS) == {
        "energy",
        "energy_hourly",
        "utility_hourly",
        "closed_hours",
        "electrical",
        "occupancy",
        "door",
        "light",
        "indoor",
        "branch_mode",
        "alert",
        "audit",
        "gateway",
        "admission",
    }
    for m in schema.MEASUREMENTS.values():
        assert m.tags[0] is schema.Tag.BRANCH
        for f in m:
            assert f.key and f.type in schema.FieldType


@pytest.mark.parametrize("zone", ["hall\nenergy,branch=x v=1 1", "a\rb", "a\tb", "a\x00b"])
def test_a_tag_value_with_a_control_character_is_refused(zone: str) -> None:
    with pytest.raises(SchemaError, match="control character"):
        Reading(
            branch="b",
            device="d",
            measurement=schema.INDOOR,
            fields={"temperature_c": 21.0},
            tags={"zone": zone},
            time=T,
        )


@pytest.mark.parametrize("device", ["d\n", "d\x1b"])
def test_a_device_or_branch_with_a_control_character_is_refused(device: str) -> None:
    with pytest.raises(SchemaError, match="control character"):
        Reading(branch="b", device=device, measurement=schema.DOOR, fields={"open": True}, time=T)
    with pytest.raises(SchemaError, match="control character"):
        Reading(branch=device, device="d", measurement=schema.DOOR, fields={"open": True}, time=T)


@pytest.mark.parametrize(
    "text",
    [
        "two\nlines",
        "cr\rlf\r\n",
        'quote " and \\ backslash\n',
        "nul \x00 and escape \x1b[31m",
        "a trailing backslash \\",
        "line separator \u2028 and next line \x85",
    ],
)
def test_a_string_field_is_always_one_line(text: str) -> None:
    r = Reading(
        branch="b",
        device="gateway",
        measurement=schema.AUDIT,
        fields={"message": text},
        tags={"kind": "engine"},
        time=T,
    )
    line = r.to_line()
    assert len(line.splitlines()) == 1, line
    assert line.endswith(" 1774746000123456000")
    body = line.split(" message=", 1)[1].rsplit(" ", 1)[0]
    assert body.startswith('"') and body.endswith('"')
    inner = body[1:-1]
    # every quote inside is escaped: the string ends where line protocol says it ends
    assert all(inner[i - 1] == "\\" for i, c in enumerate(inner) if c == '"')
