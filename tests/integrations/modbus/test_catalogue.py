"""Rules over every shipped Modbus profile: adding a YAML file gets it tested, no new test."""

from __future__ import annotations

from importlib import resources

import pytest

from edge import schema
from edge.yamlsource import ConfigError, parse_yaml, validate
from integrations.modbus.decode import encode
from integrations.modbus.profile import CATALOGUE, ModbusProfile
from integrations.modbus.register import DataType

PROFILES = CATALOGUE.all()
IDS = sorted(PROFILES)
INTEGER_TYPES = {
    DataType.INT16,
    DataType.UINT16,
    DataType.INT32,
    DataType.UINT32,
    DataType.INT64,
    DataType.UINT64,
}


def test_catalogue_covers_every_role() -> None:
    roles = {
        (p.measurement, prof.tags.get("carrier"))
        for prof in PROFILES.values()
        for p in prof.points
        if p.measurement
    }
    for needed in [
        ("energy", "electricity"),
        ("energy", "district_heating"),
        ("door", None),
        ("light", None),
        ("indoor", None),
        ("occupancy", None),
    ]:
        assert needed in roles, f"no profile provides {needed}"
    assert len(PROFILES) >= 7


def test_file_names_are_ids_and_ids_unique() -> None:
    files = [
        f.name
        for f in resources.files("integrations.modbus").joinpath("profiles").iterdir()
        if f.name.endswith(".yaml")
    ]
    assert sorted(files) == sorted(f"{i}.yaml" for i in PROFILES)


@pytest.mark.parametrize("profile_id", IDS)
def test_points_speak_the_schema(profile_id: str) -> None:
    profile = PROFILES[profile_id]
    assert len({p.id for p in profile.points}) == len(profile.points)
    assert len(profile.datasheet) >= 10
    for point in profile.points:
        if point.measurement is None:
            assert point.writable, f"{point.id}: read-only point without meaning"
            continue
        measurement = schema.MEASUREMENTS[point.measurement]
        field = measurement.fields[point.field or ""]
        if field.units:
            assert point.unit in field.units, f"{point.id}: unit {point.unit}"
        else:
            assert point.unit is None, f"{point.id}: {field.key} has no unit"
        if measurement is schema.ENERGY:
            assert profile.tags.get("carrier") in {c.value for c in schema.Carrier}
        kind = field.type
        if kind is schema.FieldType.BOOL:
            assert point.type in (DataType.BOOL, DataType.BITS), point.id
        elif kind is schema.FieldType.INT:
            assert point.type in INTEGER_TYPES and point.scale == 1 and point.offset == 0
        elif kind is schema.FieldType.STRING:
            assert point.enum is not None or point.type is DataType.STRING
        else:
            assert point.type not in (DataType.BOOL, DataType.BITS, DataType.STRING)


@pytest.mark.parametrize("profile_id", IDS)
def test_writable_points_have_encodable_ranges(profile_id: str) -> None:
    profile = PROFILES[profile_id]
    for point in profile.points:
        if not point.writable or point.type is DataType.BOOL:
            continue
        assert point.range is not None or point.enum is not None, point.id
        if point.range is not None:
            for end in point.range:
                words = encode(
                    end,
                    dtype=point.type,
                    order=profile.order_of(point),
                    scale=point.scale,
                    offset=point.offset,
                )
                assert len(words) == point.count


@pytest.mark.parametrize("profile_id", IDS)
def test_no_overlapping_registers_and_none_in_holes(profile_id: str) -> None:
    profile = PROFILES[profile_id]
    seen: dict[tuple[str, int], set[int | None]] = {}
    for point in profile.points:
        for address in range(point.address, point.address + point.count):
            bits = seen.setdefault((point.table, address), set())
            assert point.type is DataType.BITS or not bits, f"{point.id} overlaps at {address}"
            assert point.bit not in bits
            bits.add(point.bit)
        for hole in profile.holes:
            inside = (
                hole.table is point.table
                and point.address <= hole.end
                and hole.start <= point.address + point.count - 1
            )
            assert not inside, point.id


BASE = """\
id: broken
manufacturer: Test
model: Broken
datasheet: made up for a test
points:
  - {id: ok, table: input, address: 0, type: float32, measurement: energy, field: power_w, unit: W}
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "  - {id: x, table: input, address: 9, type: float32, measurement: energy, field: kwh, unit: kWh}",
            "broken.yaml:7: points[1]: Value error, measurement 'energy' has no field 'kwh'",
        ),
        (
            "  - {id: x, table: input, address: 9, type: float32, measurement: energy, field: power_w, unit: kW}",
            "broken.yaml:7: points[1]: point x: energy.power_w is in W, not kW",
        ),
        (
            "  - {id: x, table: input, address: 1, type: float32, measurement: energy, field: power_w, unit: W}",
            "broken.yaml:1: point x overlaps point ok at input 1",
        ),
        (
            "  - {id: x, table: input, address: 9, type: uint16, writable: true}",
            "broken.yaml:7: points[1]: point x: input is read-only",
        ),
        (
            "  - {id: x, table: holding, address: 9, type: uint16, writable: true}",
            "broken.yaml:7: points[1]: point x: a writable register needs a `range`",
        ),
        (
            "  - {id: x, table: coil, address: 9, type: uint16, writable: true}",
            "broken.yaml:7: points[1]: point x: coil points must be bool",
        ),
        (
            "  - {id: x, table: input, address: 9, type: float32, measurement: energy, field: power_w, unit: W, colour: red}",
            "broken.yaml:7: points[1].colour: unknown field",
        ),
        ("holes: [{table: input, start: 0, end: 3}]", "point ok lies in the unreadable range 0..3"),
    ],
)
def test_broken_profiles_are_refused_with_file_and_line(extra: str, message: str) -> None:
    doc = parse_yaml(BASE + extra + "\n", name="broken.yaml")
    with pytest.raises(ConfigError) as info:
        validate(ModbusProfile, doc)
    assert message.replace("Value error, ", "") in str(info.value)
