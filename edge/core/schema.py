"""The time-series schema: every measurement, tag key and field key, with its type and unit.

This is the one module that names them. The gateway writes with it; profiles are checked
against it; dashboards and reports read with it. Elsewhere, code refers to the constants here
(``ENERGY``, ``ENERGY.fields["total"]`` via ``ENERGY_TOTAL``), never to a string literal.

A field has one type forever: InfluxDB refuses a point whose field changes type, so a change of
type is a new field name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "ADMISSION",
    "ALERT",
    "AUDIT",
    "BRANCH_HOURLY",
    "BRANCH_INFO",
    "BRANCH_MODE",
    "CLOSED_HOURS",
    "CLOSED_HOURS_WASTE",
    "DEVICE_DOWN",
    "DOOR",
    "ELECTRICAL",
    "ENERGY",
    "ENERGY_HOURLY",
    "ENTRY_FLOOD",
    "GATEWAY",
    "GATEWAY_DEVICE",
    "HOURS_STALE",
    "INDOOR",
    "LIBRARY_SYSTEM_DOWN",
    "LIGHT",
    "MEASUREMENTS",
    "MQTT_DOWN",
    "OCCUPANCY",
    "OUTBOX_DROPPED",
    "ROLLUPS",
    "ROLLUP_POLICY",
    "STORE_LOST",
    "TAILGATING",
    "UTILITY_DRIFT",
    "UTILITY_HOURLY",
    "UTILITY_TOKEN",
    "Carrier",
    "DoorMode",
    "Field",
    "FieldType",
    "Measurement",
    "SchemaError",
    "Tag",
    "measurement",
]


class SchemaError(ValueError):
    """A name or value that the schema does not know or does not allow."""


class FieldType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"


class Tag(StrEnum):
    """Every tag key. Tags identify a series; they are strings."""

    BRANCH = "branch"
    DEVICE = "device"
    CARRIER = "carrier"
    ZONE = "zone"
    KIND = "kind"
    PHASE = "phase"
    MODE = "mode"  # the branch mode a count belongs to (admission)


class Carrier(StrEnum):
    ELECTRICITY = "electricity"
    DISTRICT_HEATING = "district_heating"
    WATER = "water"


class DoorMode(StrEnum):
    LOCKED = "locked"
    ACCESS_CONTROL = "access_control"
    FREE = "free"
    UNKNOWN = "unknown"


# The Python type of each field type (a subclass is accepted too, except bool for int).
_PYTHON_TYPES: dict[FieldType, type] = {
    FieldType.FLOAT: float,
    FieldType.INT: int,
    FieldType.BOOL: bool,
    FieldType.STRING: str,
}


@dataclass(frozen=True, slots=True)
class Field:
    """One field key: its type, the units a value may be expressed in, and what it means.

    ``units`` is empty for dimensionless fields (booleans, states, counts of people).
    ``choices`` lists the allowed values of an enumerated string field. ``counter``: a total
    that only grows (energy registers, people counters): every change of it is written, so a
    profile may not give it a deadband.
    """

    key: str
    type: FieldType
    doc: str
    units: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    counter: bool = False

    def check(self, value: object) -> None:
        """Raise SchemaError unless ``value`` has this field's type (and is an allowed choice)."""
        expected = _PYTHON_TYPES[self.type]
        if type(value) is not expected and (
            not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        ):
            raise SchemaError(
                f"field {self.key!r} is {self.type}, got {type(value).__name__} {value!r}"
            )
        if self.choices and value not in self.choices:
            raise SchemaError(
                f"field {self.key!r}: {value!r} is not one of {', '.join(self.choices)}"
            )


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    doc: str
    tags: tuple[Tag, ...]
    fields: Mapping[str, Field] = field(default_factory=dict)

    @property
    def extra_tags(self) -> frozenset[str]:
        """Tag keys a reading may carry besides branch and device."""
        found = _EXTRA_TAGS.get(self.name)
        if found is None:
            found = frozenset(t.value for t in self.tags if t not in (Tag.BRANCH, Tag.DEVICE))
            _EXTRA_TAGS[self.name] = found
        return found

    def field(self, key: str) -> Field:
        try:
            return self.fields[key]
        except KeyError:
            known = ", ".join(self.fields)
            raise SchemaError(
                f"measurement {self.name!r} has no field {key!r} (known: {known})"
            ) from None

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields.values())


_EXTRA_TAGS: dict[str, frozenset[str]] = {}


def _measurement(name: str, doc: str, tags: tuple[Tag, ...], *fields: Field) -> Measurement:
    return Measurement(
        name=name, doc=doc, tags=tags, fields=MappingProxyType({f.key: f for f in fields})
    )


_F, _I, _B, _S = FieldType.FLOAT, FieldType.INT, FieldType.BOOL, FieldType.STRING
_ENERGY_UNITS = ("kWh", "m³")  # m³ for water only

ENERGY = _measurement(
    "energy",
    "Meter readings. `register` is the counter as read; `total` is reset-corrected.",
    (Tag.BRANCH, Tag.DEVICE, Tag.CARRIER),
    Field("register", _F, "counter as read from the meter", _ENERGY_UNITS, counter=True),
    Field("total", _F, "reset-corrected monotonic counter", _ENERGY_UNITS, counter=True),
    Field("power_w", _F, "active power (electricity) or thermal power (heat)", ("W",)),
    Field("flow_m3h", _F, "volume flow (district heating, water)", ("m³/h",)),
    Field("supply_temp_c", _F, "supply (forward) temperature", ("°C",)),
    Field("return_temp_c", _F, "return temperature", ("°C",)),
    Field("voltage_v", _F, "phase-to-neutral voltage, average of phases", ("V",)),
    Field("current_a", _F, "current, sum of phases", ("A",)),
)
ENERGY_HOURLY = _measurement(
    "energy_hourly",
    "Consumption of each closed UTC hour, computed once at the edge.",
    (Tag.BRANCH, Tag.DEVICE, Tag.CARRIER),
    Field("consumption", _F, "consumption in the hour", _ENERGY_UNITS),
    Field(
        "quality",
        _S,
        "how the hour's value was obtained",
        choices=("measured", "interpolated", "estimated"),
    ),
    Field("coverage", _F, "share of the hour covered by readings, 0..1"),
)
CLOSED_HOURS = _measurement(
    "closed_hours",
    "Each whole hour the branch was closed, per meter, judged against the closed-hour base"
    " load at the edge (edge/hours/waste.py): what it used and what of it was waste.",
    (Tag.BRANCH, Tag.DEVICE, Tag.CARRIER),
    Field("consumption", _F, "consumption in the closed hour", _ENERGY_UNITS),
    Field("base_load", _F, "the closed-hour base load it was judged against", _ENERGY_UNITS),
    Field(
        "excess", _F, "consumption above the base load, in an hour over the margin", _ENERGY_UNITS
    ),
    Field(
        "verdict",
        _S,
        "the detector's verdict on the hour",
        choices=("learning", "normal", "excess", "not_measured"),
    ),
)
ELECTRICAL = _measurement(
    "electrical",
    "Electrical quality per phase (tag phase: l1, l2, l3; no phase tag: the system value).",
    (Tag.BRANCH, Tag.DEVICE, Tag.PHASE),
    Field("voltage_v", _F, "phase-to-neutral voltage", ("V",)),
    Field("current_a", _F, "phase current", ("A",)),
    Field("power_w", _F, "active power of the phase", ("W",)),
    Field("apparent_power_va", _F, "apparent power", ("VA",)),
    Field("reactive_power_var", _F, "reactive power", ("var",)),
    Field("power_factor", _F, "power factor, -1..1"),
    Field("frequency_hz", _F, "mains frequency", ("Hz",)),
)
OCCUPANCY = _measurement(
    "occupancy",
    "People counters.",
    (Tag.BRANCH, Tag.DEVICE),
    Field("entered", _I, "people in, counter", counter=True),
    Field("exited", _I, "people out, counter", counter=True),
    Field("present", _I, "people in the building now"),
)
DOOR = _measurement(
    "door",
    "Doors and their access mode.",
    (Tag.BRANCH, Tag.DEVICE),
    Field("mode", _S, "reader mode", choices=tuple(m.value for m in DoorMode)),
    Field("locked", _B, "lock feedback: bolt thrown"),
    Field("open", _B, "door contact: leaf open"),
)
LIGHT = _measurement(
    "light",
    "Lighting per zone.",
    (Tag.BRANCH, Tag.DEVICE, Tag.ZONE),
    Field("on", _B, "any luminaire of the zone on"),
    Field("level", _F, "dimming level", ("%",)),
)
INDOOR = _measurement(
    "indoor",
    "Indoor climate.",
    (Tag.BRANCH, Tag.DEVICE, Tag.ZONE),
    Field("temperature_c", _F, "air temperature", ("°C",)),
    Field("co2_ppm", _F, "CO2 concentration", ("ppm",)),
    Field("humidity_pct", _F, "relative humidity", ("%",)),
)
BRANCH_MODE = _measurement(
    "branch_mode",
    "The branch's mode as decided by the opening-hours engine.",
    (Tag.BRANCH,),
    Field(
        "mode",
        _S,
        "branch mode",
        choices=("closed", "staffed", "self_service", "emergency", "maintenance"),
    ),
)
ALERT = _measurement(
    "alert",
    "Alerts raised and cleared by the gateway.",
    (Tag.BRANCH, Tag.KIND),
    Field("message", _S, "what a person should know"),
    Field("severity", _S, "how urgent", choices=("info", "warning", "critical")),
    Field("active", _B, "raised (true) or cleared (false)"),
)
#: The ``device`` tag of the gateway's own readings (alerts, audit, health, branch mode).
GATEWAY_DEVICE = "gateway"
#: Alert kind raised per device that stopped answering: ``device_down:<device id>``.
DEVICE_DOWN = "device_down"
#: Alert kind raised while the gateway's MQTT broker does not answer (no MQTT device is heard).
MQTT_DOWN = "mqtt_down"
#: Alert kind raised when the outbox's bound dropped undelivered telemetry; cleared once every
#: sink has caught up.
OUTBOX_DROPPED = "outbox_dropped"
#: Alert kind raised when the local store no longer holds entries it had committed (the file
#: system or the disk lost written data; the sinks may hold them); cleared like
#: ``outbox_dropped``, once every sink has caught up with what the store holds.
STORE_LOST = "store_lost"
#: Alert kind raised while the hours imported from the library's website were fetched longer
#: ago than ``website_hours.stale_after_hours`` (or never): the gateway runs on what it has.
HOURS_STALE = "hours_stale"
#: Alert kind raised per meter while its closed hours run above their base load (lights left
#: on, heating on a closed holiday, water running at night): ``closed_hours_waste:<device>``.
CLOSED_HOURS_WASTE = "closed_hours_waste"

#: Alert kind raised per metering point whose month, gateway against utility, differs by more
#: than the stated margin: ``utility_drift:<metering point>`` (the reconciliation raises it).
UTILITY_DRIFT = "utility_drift"
#: Alert kind raised when the utility's data hub refuses the refresh token (expired, revoked).
UTILITY_TOKEN = "utility_token"  # noqa: S105 - an alert kind, not a secret

#: Alert kind raised per door where more people came in than were admitted within the
#: tailgating window: ``tailgating:<door device id>``.
TAILGATING = "tailgating"
#: Alert kind raised while card readers present more than the entry flow can answer (the
#: surplus is dropped and counted).
ENTRY_FLOOD = "entry_flood"
#: Alert kind raised while the library system does not answer (the offline policy decides).
LIBRARY_SYSTEM_DOWN = "library_system_down"

ADMISSION = _measurement(
    "admission",
    "Self-service entry decisions per UTC hour (the point's time) and branch mode; each "
    "point is the hour's running count, written again with each decision, so the last one "
    "of an hour is its total.",
    (Tag.BRANCH, Tag.MODE),
    Field("admitted", _I, "cards admitted in the hour"),
    Field("refused", _I, "cards refused in the hour"),
)
AUDIT = _measurement(
    "audit",
    "What the engine decided and why: mode changes, commands, announcements, overrides.",
    (Tag.BRANCH, Tag.KIND),
    Field("message", _S, "the decision, in words"),
)
UTILITY_HOURLY = _measurement(
    "utility_hourly",
    "The utility's own hourly meter values (Eloverblik/DataHub), per metering point (device).",
    (Tag.BRANCH, Tag.DEVICE, Tag.CARRIER),
    Field("consumption", _F, "consumption in the UTC hour, as the grid company read it", ("kWh",)),
    Field(
        "quality",
        _S,
        "the data hub's quality of the hour (A04 measured, A03 estimated, A01 adjusted, A05"
        " incomplete)",
        choices=("measured", "estimated", "adjusted", "incomplete"),
    ),
)
GATEWAY = _measurement(
    "gateway",
    "The gateway's own health.",
    (Tag.BRANCH,),
    Field("outbox_depth", _I, "readings waiting in the outbox"),
    Field("dropped", _I, "readings dropped at the outbox bound, counter"),
    Field("poll_errors", _I, "failed poll requests, counter"),
    Field("devices_down", _I, "devices currently unavailable"),
    Field("write_latency_ms", _F, "latest sink write round trip", ("ms",)),
    Field("task_restarts", _I, "restarts of supervised tasks after a failure, counter"),
    Field("tasks_failing", _I, "supervised tasks that failed and have not yet recovered"),
    Field(
        "suppressed",
        _I,
        "device readings not written because unchanged (report by exception), counter",
    ),
)

MEASUREMENTS: Mapping[str, Measurement] = MappingProxyType(
    {
        m.name: m
        for m in (
            ENERGY,
            ENERGY_HOURLY,
            UTILITY_HOURLY,
            CLOSED_HOURS,
            ELECTRICAL,
            OCCUPANCY,
            DOOR,
            LIGHT,
            INDOOR,
            BRANCH_MODE,
            ALERT,
            AUDIT,
            GATEWAY,
            ADMISSION,
        )
    }
)


#: The retention policy that keeps hourly roll-ups forever (provisioning/influx.py creates it).
ROLLUP_POLICY = "forever"
#: Hourly roll-ups written by the database, not by a gateway: InfluxDB's continuous queries
#: (provisioning/influx.py) fold the raw points into one point per branch and hour (and per
#: people counter), so dashboards over months read hours, not raw points (issue 17).
BRANCH_HOURLY = _measurement(
    "branch_hourly",
    "Per branch and UTC hour, in the roll-up retention policy: each people counter's highest"
    " reading (tag device); the branch's visits and net entries, the mode at the end of the"
    " hour, kWh of electricity and heat, the gateway's alerts raised, and the hour's figures"
    " again under the name of its mode (<what>_<mode>), so sums per mode need no filter.",
    (Tag.BRANCH, Tag.DEVICE),
    Field("entered", _I, "the counter's highest entered reading in the hour"),
    Field("exited", _I, "the counter's highest exited reading in the hour"),
    Field(
        "mode",
        _S,
        "the branch mode at the end of the hour",
        choices=BRANCH_MODE.field("mode").choices,
    ),
    Field("kwh", _F, "electricity and district heating consumed in the hour", ("kWh",)),
    Field("electricity_kwh", _F, "electricity consumed in the hour", ("kWh",)),
    Field("heat_kwh", _F, "district heating consumed in the hour", ("kWh",)),
    Field("alerts", _I, "alerts the gateway raised in the hour"),
    Field("visits", _I, "people in: the counters' increases over the hour, summed"),
    Field("net", _I, "people in minus people out over the hour, summed over the counters"),
    *(
        Field(f"{what}_{mode}", kind, f"{doc} in the hour, if it ended {mode}", units)
        for mode in BRANCH_MODE.field("mode").choices
        for what, kind, doc, units in (
            ("hours", _I, "1", ()),
            ("kwh", _F, "kWh", ("kWh",)),
            ("visits", _I, "visits", ()),
            ("alerts", _I, "alerts raised", ()),
        )
    ),
)
#: Facts about a branch from the fleet inventory (provisioning writes them at time 0, in the
#: roll-up retention policy), so a dashboard divides by a branch's floor area in one query.
BRANCH_INFO = _measurement(
    "branch_info",
    "Facts about each branch from the fleet inventory, one point at the epoch per branch.",
    (Tag.BRANCH,),
    Field("floor_area_m2", _F, "heated floor area", ("m²",)),
)
ROLLUPS: Mapping[str, Measurement] = MappingProxyType(
    {m.name: m for m in (BRANCH_HOURLY, BRANCH_INFO)}
)
ROLLUP_ENTERED = BRANCH_HOURLY.field("entered")
ROLLUP_EXITED = BRANCH_HOURLY.field("exited")
ROLLUP_MODE = BRANCH_HOURLY.field("mode")
ROLLUP_KWH = BRANCH_HOURLY.field("kwh")
ROLLUP_ALERTS = BRANCH_HOURLY.field("alerts")
ROLLUP_VISITS = BRANCH_HOURLY.field("visits")
ROLLUP_NET = BRANCH_HOURLY.field("net")
ROLLUP_ELECTRICITY = BRANCH_HOURLY.field("electricity_kwh")
ROLLUP_HEAT = BRANCH_HOURLY.field("heat_kwh")
INFO_FLOOR_AREA = BRANCH_INFO.field("floor_area_m2")


def measurement(name: str) -> Measurement:
    """The measurement called ``name``; SchemaError naming the known ones otherwise."""
    try:
        return MEASUREMENTS[name]
    except KeyError:
        raise SchemaError(
            f"unknown measurement {name!r} (known: {', '.join(MEASUREMENTS)})"
        ) from None


# Named fields, for code that reads or writes one field (profiles name fields in their YAML).
ENERGY_REGISTER = ENERGY.field("register")
ENERGY_TOTAL = ENERGY.field("total")
ENERGY_POWER = ENERGY.field("power_w")
ENERGY_FLOW = ENERGY.field("flow_m3h")
ENERGY_SUPPLY_TEMP = ENERGY.field("supply_temp_c")
ENERGY_RETURN_TEMP = ENERGY.field("return_temp_c")
ENERGY_VOLTAGE = ENERGY.field("voltage_v")
ENERGY_CURRENT = ENERGY.field("current_a")
ELECTRICAL_VOLTAGE = ELECTRICAL.field("voltage_v")
ELECTRICAL_CURRENT = ELECTRICAL.field("current_a")
ELECTRICAL_POWER = ELECTRICAL.field("power_w")
ELECTRICAL_APPARENT_POWER = ELECTRICAL.field("apparent_power_va")
ELECTRICAL_REACTIVE_POWER = ELECTRICAL.field("reactive_power_var")
ELECTRICAL_POWER_FACTOR = ELECTRICAL.field("power_factor")
ELECTRICAL_FREQUENCY = ELECTRICAL.field("frequency_hz")
HOURLY_CONSUMPTION = ENERGY_HOURLY.field("consumption")
HOURLY_QUALITY = ENERGY_HOURLY.field("quality")
HOURLY_COVERAGE = ENERGY_HOURLY.field("coverage")
UTILITY_CONSUMPTION = UTILITY_HOURLY.field("consumption")
UTILITY_QUALITY = UTILITY_HOURLY.field("quality")
CLOSED_CONSUMPTION = CLOSED_HOURS.field("consumption")
CLOSED_BASE_LOAD = CLOSED_HOURS.field("base_load")
CLOSED_EXCESS = CLOSED_HOURS.field("excess")
CLOSED_VERDICT = CLOSED_HOURS.field("verdict")
OCCUPANCY_ENTERED = OCCUPANCY.field("entered")
OCCUPANCY_EXITED = OCCUPANCY.field("exited")
OCCUPANCY_PRESENT = OCCUPANCY.field("present")
DOOR_MODE = DOOR.field("mode")
DOOR_LOCKED = DOOR.field("locked")
DOOR_OPEN = DOOR.field("open")
LIGHT_ON = LIGHT.field("on")
LIGHT_LEVEL = LIGHT.field("level")
INDOOR_TEMPERATURE = INDOOR.field("temperature_c")
INDOOR_CO2 = INDOOR.field("co2_ppm")
INDOOR_HUMIDITY = INDOOR.field("humidity_pct")
BRANCH_MODE_MODE = BRANCH_MODE.field("mode")
ALERT_MESSAGE = ALERT.field("message")
ALERT_SEVERITY = ALERT.field("severity")
ALERT_ACTIVE = ALERT.field("active")
AUDIT_MESSAGE = AUDIT.field("message")
GATEWAY_OUTBOX_DEPTH = GATEWAY.field("outbox_depth")
GATEWAY_DROPPED = GATEWAY.field("dropped")
GATEWAY_POLL_ERRORS = GATEWAY.field("poll_errors")
GATEWAY_DEVICES_DOWN = GATEWAY.field("devices_down")
GATEWAY_WRITE_LATENCY = GATEWAY.field("write_latency_ms")
GATEWAY_SUPPRESSED = GATEWAY.field("suppressed")
GATEWAY_TASK_RESTARTS = GATEWAY.field("task_restarts")
GATEWAY_TASKS_FAILING = GATEWAY.field("tasks_failing")
ADMISSION_ADMITTED = ADMISSION.field("admitted")
ADMISSION_REFUSED = ADMISSION.field("refused")
