"""Rules over every shipped Modbus profile: adding a YAML file gets it tested, no new test.

The rules are checked against ``edge.schema`` and the register vocabulary directly, not by
trusting the profile model's validators, so a validator that gets weaker is caught here.
The second half feeds small broken profiles to the model and checks that each is refused
with an error that names the file, the line and the point.
"""

from __future__ import annotations

import math
from collections import Counter
from importlib.resources.abc import Traversable
from pathlib import Path

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.yamlsource import ConfigError, parse_yaml, validate
from openbranch.integrations.modbus.decode import decode, encode
from openbranch.integrations.modbus.planner import MAX_BITS, MAX_REGISTERS, plan
from openbranch.integrations.modbus.profile import CATALOGUE, ModbusPoint, ModbusProfile
from openbranch.integrations.modbus.register import DataType, Table, word_count
from openbranch.integrations.profile import Catalogue

FILES: dict[str, Traversable] = {f.name.removesuffix(".yaml"): f for f in CATALOGUE.files()}
IDS = sorted(FILES)

INTEGER_TYPES = frozenset(
    {
        DataType.INT16,
        DataType.UINT16,
        DataType.INT32,
        DataType.UINT32,
        DataType.INT64,
        DataType.UINT64,
    }
)
FLOAT_TYPES = frozenset({DataType.FLOAT32, DataType.FLOAT64})
NUMERIC_TYPES = INTEGER_TYPES | FLOAT_TYPES
BIT_TYPES = frozenset({DataType.BOOL, DataType.BITS})
EXTRA_TAGS = {t.value for t in schema.Tag} - {schema.Tag.BRANCH.value, schema.Tag.DEVICE.value}

# One profile at least must feed each role the branch needs: (measurement, carrier tag).
ROLES = [
    (schema.ENERGY.name, schema.Carrier.ELECTRICITY.value),
    (schema.ENERGY.name, schema.Carrier.DISTRICT_HEATING.value),
    (schema.DOOR.name, None),
    (schema.LIGHT.name, None),
    (schema.INDOOR.name, None),
    (schema.OCCUPANCY.name, None),
]


@pytest.fixture(params=IDS)
def profile(request: pytest.FixtureRequest) -> ModbusProfile:
    """Each profile file, loaded on its own: a broken file fails its own tests only."""
    return CATALOGUE.load(FILES[request.param])


def _field(point: ModbusPoint) -> schema.Field:
    """The schema field a point feeds, looked up in the schema itself."""
    measurement = schema.MEASUREMENTS.get(point.measurement or "")
    assert measurement is not None, f"{point.id}: unknown measurement {point.measurement!r}"
    field = measurement.fields.get(point.field or "")
    assert field is not None, f"{point.id}: {measurement.name} has no field {point.field!r}"
    return field


# -- the catalogue as a whole ---------------------------------------------------------------


def test_the_catalogue_loads_every_file() -> None:
    profiles = Catalogue(ModbusProfile, "openbranch.integrations.modbus").all()  # fresh: no cache
    assert sorted(profiles) == IDS
    assert len(profiles) >= 7


def test_every_role_has_a_profile() -> None:
    profiles = Catalogue(ModbusProfile, "openbranch.integrations.modbus").all()
    roles = {
        (p.measurement, prof.tags.get(schema.Tag.CARRIER.value))
        for prof in profiles.values()
        for p in prof.points
        if p.measurement is not None
    }
    missing = [
        role
        for role in ROLES
        if not any(m == role[0] and (role[1] is None or c == role[1]) for m, c in roles)
    ]
    assert not missing, f"no profile feeds {missing}"


def test_profile_ids_are_unique_and_name_their_files() -> None:
    profiles = [CATALOGUE.load(f) for f in FILES.values()]
    ids = [p.id for p in profiles]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == IDS
    models = Counter((p.manufacturer, p.model) for p in profiles)
    assert [m for m, n in models.items() if n > 1] == [], "two profiles for one model"


# -- each profile ---------------------------------------------------------------------------


def test_id_matches_file_and_points_are_unique(profile: ModbusProfile) -> None:
    assert FILES[profile.id].name == f"{profile.id}.yaml"
    twice = [i for i, n in Counter(p.id for p in profile.points).items() if n > 1]
    assert twice == [], f"point ids used twice: {twice}"


def test_profile_names_its_datasheet(profile: ModbusProfile) -> None:
    text = FILES[profile.id].read_text(encoding="utf-8")
    assert text.startswith("#"), "the file opens with a comment naming the document it follows"
    assert len(profile.datasheet.strip()) >= 10
    assert profile.manufacturer.strip() and profile.model.strip()
    assert profile.description.strip(), "say what it is and how it is wired and set up"


def test_points_speak_the_schema(profile: ModbusProfile) -> None:
    for point in profile.points:
        if point.measurement is None:
            assert point.writable, f"{point.id}: a read-only point must feed a schema field"
            assert point.field is None and point.unit is None, point.id
            continue
        field = _field(point)
        if field.units:
            assert point.unit in field.units, (
                f"{point.id}: {point.measurement}.{field.key} is in {field.units}, not {point.unit}"
            )
        else:
            assert point.unit is None, f"{point.id}: {field.key} has no unit"
        allowed = {t.value for t in schema.MEASUREMENTS[point.measurement].tags} & EXTRA_TAGS
        assert set(point.tags) <= allowed, f"{point.id}: tags {point.tags} not in {allowed}"


def test_profile_tags_are_schema_tags(profile: ModbusProfile) -> None:
    assert set(profile.tags) <= EXTRA_TAGS, profile.tags
    carrier = profile.tags.get(schema.Tag.CARRIER.value)
    assert carrier is None or carrier in {c.value for c in schema.Carrier}


def test_energy_points_sit_in_profiles_with_a_carrier(profile: ModbusProfile) -> None:
    feeds_energy = [
        p.id
        for p in profile.points
        if p.measurement in (schema.ENERGY.name, schema.ENERGY_HOURLY.name)
    ]
    if feeds_energy:
        carrier = profile.tags.get(schema.Tag.CARRIER.value)
        assert carrier in {c.value for c in schema.Carrier}, (
            f"{feeds_energy} feed energy, but the profile has no carrier tag"
        )


def test_each_series_is_fed_once(profile: ModbusProfile) -> None:
    series = Counter(
        (p.measurement, p.field, tuple(sorted(p.tags.items())))
        for p in profile.points
        if p.measurement is not None
    )
    assert [s for s, n in series.items() if n > 1] == []


def test_data_types_fit_field_types(profile: ModbusProfile) -> None:
    for point in profile.points:
        assert point.table.is_bit == (point.type is DataType.BOOL), point.id
        if point.measurement is None:
            continue
        kind = _field(point).type
        if kind is schema.FieldType.BOOL:
            assert point.type in BIT_TYPES, f"{point.id}: a bool field reads bool or bits"
        elif kind is schema.FieldType.INT:
            assert point.type in INTEGER_TYPES, f"{point.id}: an int field reads an integer"
            assert point.scale == 1 and point.offset == 0, f"{point.id}: int fields are unscaled"
        elif kind is schema.FieldType.STRING:
            assert point.enum is not None or point.type is DataType.STRING, point.id
        else:
            assert point.type in NUMERIC_TYPES, f"{point.id}: a float field reads a number"
            assert point.scale != 0 and math.isfinite(point.scale), point.id


def test_enums_name_schema_choices(profile: ModbusProfile) -> None:
    for point in profile.points:
        if point.enum is None:
            continue
        assert point.type in INTEGER_TYPES, point.id
        choices = _field(point).choices if point.measurement is not None else ()
        if choices:
            assert set(point.enum.values()) <= set(choices), f"{point.id}: {point.enum}"


def test_writable_points_can_be_written(profile: ModbusProfile) -> None:
    for point in profile.points:
        if not point.writable:
            continue
        assert point.table in (Table.COIL, Table.HOLDING), f"{point.id}: {point.table}"
        if point.type in BIT_TYPES:
            continue
        assert point.range is not None or point.enum is not None, (
            f"{point.id}: a writable register needs a range or an enum"
        )
        order = profile.order_of(point)
        ends: list[float] = list(point.range) if point.range is not None else []
        ends += list(point.enum or {})
        dtype, scale, offset, length = point.type, point.scale, point.offset, point.length
        for end in ends:  # encode raises ValueError if the type cannot hold it
            words = encode(end, dtype=dtype, order=order, scale=scale, offset=offset, length=length)
            assert len(words) == point.count
            back = decode(
                words, dtype=dtype, order=order, scale=scale, offset=offset, length=length
            )
            assert isinstance(back, int | float) and math.isclose(
                back, end, rel_tol=1e-6, abs_tol=abs(point.scale)
            ), f"{point.id}: {end} reads back as {back}"


def test_sentinels_fit_the_registers(profile: ModbusProfile) -> None:
    for point in profile.points:
        if not point.sentinels:
            continue
        assert point.type in NUMERIC_TYPES, f"{point.id}: sentinels are for numbers"
        bits = 16 * word_count(point.type, point.length)
        assert all(0 <= s < 1 << bits for s in point.sentinels), (
            f"{point.id}: a sentinel is the raw unsigned value of {bits} bits"
        )


def test_no_point_overlaps_another_or_a_hole(profile: ModbusProfile) -> None:
    taken: dict[tuple[Table, int], list[ModbusPoint]] = {}
    for point in profile.points:
        count = word_count(point.type, point.length)
        assert point.address + count <= 65536, f"{point.id} ends past address 65535"
        for address in range(point.address, point.address + count):
            taken.setdefault((point.table, address), []).append(point)
        for hole in profile.holes:
            assert hole.start <= hole.end
            inside = (
                hole.table is point.table
                and point.address <= hole.end
                and hole.start <= point.address + count - 1
            )
            assert not inside, f"{point.id} lies in the hole {hole.start}..{hole.end}"
    for (table, address), points in taken.items():
        if len(points) == 1:
            continue
        shared = ", ".join(p.id for p in points)
        assert all(p.type is DataType.BITS for p in points), (
            f"{shared} overlap at {table} {address}"
        )
        bits = [p.bit for p in points]
        assert len(bits) == len(set(bits)), f"{shared} read the same bit of {table} {address}"


def test_every_group_plans_into_valid_requests(profile: ModbusProfile) -> None:
    holes = [h.hole() for h in profile.holes]
    for group in sorted(profile.groups):
        points = [p for p in profile.points if p.group == group and p.measurement is not None]
        requests = plan([p.footprint() for p in points], max_gap=profile.max_gap, holes=holes)
        covered = {key for r in requests for key in r.keys}
        assert covered == {p.id for p in points}, group
        for r in requests:
            assert r.count <= (MAX_BITS if r.table.is_bit else MAX_REGISTERS)
            for h in holes:
                assert not (h.table is r.table and r.address <= h.end and h.start <= r.end)


# -- broken profiles are refused, with file, line and point ---------------------------------

BASE = """\
id: broken
manufacturer: Test
model: Broken
datasheet: made up for a test
points:
  - {id: ok, table: input, address: 0, type: float32, measurement: energy, field: power_w, unit: W}
"""
BROKEN = {
    "unknown field": (
        "  - {id: x, table: input, address: 9, type: float32, measurement: energy, field: kwh, unit: kWh}",
        "measurement 'energy' has no field 'kwh'",
    ),
    "unknown measurement": (
        "  - {id: x, table: input, address: 9, type: float32, measurement: energi, field: power_w, unit: W}",
        "unknown measurement 'energi'",
    ),
    "wrong unit": (
        "  - {id: x, table: input, address: 9, type: float32, measurement: energy, field: power_w, unit: kW}",
        "point x: energy.power_w is in W, not kW",
    ),
    "overlapping points": (
        "  - {id: x, table: input, address: 1, type: float32, measurement: energy, field: voltage_v, unit: V}",
        "point x overlaps point ok at input 1",
    ),
    "writable input register": (
        "  - {id: x, table: input, address: 9, type: uint16, writable: true, range: [0, 10]}",
        "point x: input is read-only; writable points are coils or holding",
    ),
    "writable without range": (
        "  - {id: x, table: holding, address: 9, type: uint16, writable: true}",
        "point x: a writable register needs a `range`",
    ),
    "point in a hole": (
        "  - {id: x, table: input, address: 20, type: uint16, measurement: occupancy, field: entered}\n"
        "holes: [{table: input, start: 18, end: 29}]",
        "point x lies in the unreadable range 18..29",
    ),
    "bool field from a register": (
        "  - {id: x, table: holding, address: 9, type: uint16, measurement: door, field: open}",
        "point x: door.open is a bool; use bool or bits",
    ),
    "scaled integer field": (
        "  - {id: x, table: input, address: 9, type: uint32, scale: 0.5, measurement: occupancy, field: entered}",
        "point x: occupancy.entered is an integer field",
    ),
    "enum value not a schema choice": (
        "  - {id: x, table: holding, address: 9, type: uint16, enum: {0: shut, 1: free}, measurement: door, field: mode}",
        "point x: enum values ['shut'] are not in",
    ),
    "coil that is not bool": (
        "  - {id: x, table: coil, address: 9, type: uint16, writable: true, range: [0, 1]}",
        "point x: coil points must be bool",
    ),
    "unknown key": (
        "  - {id: x, table: input, address: 9, type: uint16, measurement: occupancy, field: entered, colour: red}",
        "points[1].colour: unknown field",
    ),
}


def _refuse(extra: str) -> tuple[str, int]:
    """The error text for BASE plus ``extra``, and the line of the broken point."""
    text = BASE + extra + "\n"
    line = text.splitlines().index(extra.splitlines()[0]) + 1
    with pytest.raises(ConfigError) as info:
        validate(ModbusProfile, parse_yaml(text, name="bad.yaml"))
    return str(info.value), line


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_profile_is_refused_naming_file_and_point(case: str) -> None:
    extra, message = BROKEN[case]
    error, _ = _refuse(extra)
    assert error.startswith("bad.yaml:"), error
    assert message in error, error
    assert "point x" in error or "points[1]" in error, f"the point is not named: {error}"
    assert "\n" not in error, f"one problem, one line: {error}"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_profile_is_refused_at_the_line_of_the_point(case: str) -> None:
    extra, _ = BROKEN[case]
    error, line = _refuse(extra)
    assert error.startswith(f"bad.yaml:{line}: "), f"expected line {line}: {error}"


def test_a_catalogue_with_a_broken_file_refuses_to_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every problem of every file is reported, each with its file and line."""
    package = tmp_path / "catalogue_under_test"
    (package / "profiles").mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    extra, message = BROKEN["wrong unit"]
    (package / "profiles" / "broken.yaml").write_text(BASE + extra + "\n", encoding="utf-8")
    (package / "profiles" / "renamed.yaml").write_text(BASE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as info:
        Catalogue(ModbusProfile, "catalogue_under_test").all()
    assert str(info.value).splitlines() == [
        f"profiles/broken.yaml:7: points[1]: {message}",
        "profiles/renamed.yaml:1: id: profile id 'broken' must match its file name",
    ]
