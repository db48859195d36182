"""How a schema field shows in Home Assistant: which entity platform, device class, state
class and unit. Data, not code: a field missing here gets no entity.

Everything is read-only (see docs/DECISIONS.md): lights and locks appear as sensors and
binary sensors, never as switchable ``light`` or ``lock`` entities, because Home Assistant
cannot sign the gateway's commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from openbranch.edge.core import schema

__all__ = ["KINDS", "Category", "Kind", "Platform", "kind_of"]


class Platform(StrEnum):
    SENSOR = "sensor"
    BINARY_SENSOR = "binary_sensor"


class Category(StrEnum):
    DIAGNOSTIC = "diagnostic"


@dataclass(frozen=True, slots=True, kw_only=True)
class Kind:
    """One field's entity.

    ``unit`` None takes the profile point's unit (the schema allows several for some fields).
    ``inverted`` binary sensors are on when the value is false (a ``lock`` binary sensor is on
    when unlocked). ``options`` makes an enum sensor. ``field`` is the field whose value is
    shown, when it is not the point's own (an energy register shows the corrected total).
    """

    platform: Platform
    name: str
    device_class: str | None = None
    state_class: str | None = None
    unit: str | None = None
    category: Category | None = None
    inverted: bool = False
    options: tuple[str, ...] = ()
    field: schema.Field | None = None


_S, _B = Platform.SENSOR, Platform.BINARY_SENSOR
_DIAG = Category.DIAGNOSTIC
_M, _TI = "measurement", "total_increasing"

_ENERGY_TOTAL = Kind(
    platform=_S,
    name="Energy",
    device_class="energy",
    state_class=_TI,
    field=schema.ENERGY_TOTAL,
)

# fmt: off
KINDS = MappingProxyType(
    {
        (m.name, f.key): kind
        for m, f, kind in (
            # The raw register is never shown: its entity is the reset-corrected total.
            (schema.ENERGY, schema.ENERGY_REGISTER, _ENERGY_TOTAL),
            (schema.ENERGY, schema.ENERGY_TOTAL, _ENERGY_TOTAL),
            (schema.ENERGY, schema.ENERGY_POWER, Kind(platform=_S, name="Power",
                device_class="power", state_class=_M)),
            (schema.ENERGY, schema.ENERGY_FLOW, Kind(platform=_S, name="Flow",
                device_class="volume_flow_rate", state_class=_M)),
            (schema.ENERGY, schema.ENERGY_SUPPLY_TEMP, Kind(platform=_S,
                name="Supply temperature", device_class="temperature", state_class=_M)),
            (schema.ENERGY, schema.ENERGY_RETURN_TEMP, Kind(platform=_S,
                name="Return temperature", device_class="temperature", state_class=_M)),
            (schema.ENERGY, schema.ENERGY_VOLTAGE, Kind(platform=_S, name="Voltage",
                device_class="voltage", state_class=_M, category=_DIAG)),
            (schema.ENERGY, schema.ENERGY_CURRENT, Kind(platform=_S, name="Current",
                device_class="current", state_class=_M, category=_DIAG)),
            (schema.ELECTRICAL, schema.ELECTRICAL_VOLTAGE, Kind(platform=_S, name="Voltage",
                device_class="voltage", state_class=_M, category=_DIAG)),
            (schema.ELECTRICAL, schema.ELECTRICAL_CURRENT, Kind(platform=_S, name="Current",
                device_class="current", state_class=_M, category=_DIAG)),
            (schema.ELECTRICAL, schema.ELECTRICAL_POWER, Kind(platform=_S, name="Power",
                device_class="power", state_class=_M, category=_DIAG)),
            (schema.ELECTRICAL, schema.ELECTRICAL_APPARENT_POWER, Kind(platform=_S,
                name="Apparent power", device_class="apparent_power", state_class=_M,
                category=_DIAG)),
            (schema.ELECTRICAL, schema.ELECTRICAL_REACTIVE_POWER, Kind(platform=_S,
                name="Reactive power", device_class="reactive_power", state_class=_M,
                category=_DIAG)),
            (schema.ELECTRICAL, schema.ELECTRICAL_POWER_FACTOR, Kind(platform=_S,
                name="Power factor", device_class="power_factor", state_class=_M,
                category=_DIAG)),
            (schema.ELECTRICAL, schema.ELECTRICAL_FREQUENCY, Kind(platform=_S, name="Frequency",
                device_class="frequency", state_class=_M, category=_DIAG)),
            (schema.OCCUPANCY, schema.OCCUPANCY_ENTERED, Kind(platform=_S, name="Entered",
                state_class=_TI, category=_DIAG)),
            (schema.OCCUPANCY, schema.OCCUPANCY_EXITED, Kind(platform=_S, name="Exited",
                state_class=_TI, category=_DIAG)),
            (schema.OCCUPANCY, schema.OCCUPANCY_PRESENT, Kind(platform=_S,
                name="People present", state_class=_M)),
            (schema.DOOR, schema.DOOR_OPEN, Kind(platform=_B, name="Door",
                device_class="door")),
            (schema.DOOR, schema.DOOR_LOCKED, Kind(platform=_B, name="Lock",
                device_class="lock", inverted=True)),
            (schema.DOOR, schema.DOOR_MODE, Kind(platform=_S, name="Door mode",
                device_class="enum", options=schema.DOOR_MODE.choices)),
            (schema.LIGHT, schema.LIGHT_ON, Kind(platform=_B, name="Light",
                device_class="light")),
            (schema.LIGHT, schema.LIGHT_LEVEL, Kind(platform=_S, name="Light level",
                state_class=_M)),
            (schema.INDOOR, schema.INDOOR_TEMPERATURE, Kind(platform=_S, name="Temperature",
                device_class="temperature", state_class=_M)),
            (schema.INDOOR, schema.INDOOR_CO2, Kind(platform=_S, name="CO2",
                device_class="carbon_dioxide", state_class=_M)),
            (schema.INDOOR, schema.INDOOR_HUMIDITY, Kind(platform=_S, name="Humidity",
                device_class="humidity", state_class=_M)),
            (schema.ALERT, schema.ALERT_ACTIVE, Kind(platform=_B, name="Alert",
                device_class="problem")),
            (schema.BRANCH_MODE, schema.BRANCH_MODE_MODE, Kind(platform=_S, name="Branch mode",
                device_class="enum", options=schema.BRANCH_MODE_MODE.choices)),
            (schema.GATEWAY, schema.GATEWAY_OUTBOX_DEPTH, Kind(platform=_S,
                name="Outbox depth", state_class=_M, category=_DIAG)),
            (schema.GATEWAY, schema.GATEWAY_DROPPED, Kind(platform=_S, name="Dropped readings",
                state_class=_TI, category=_DIAG)),
            (schema.GATEWAY, schema.GATEWAY_POLL_ERRORS, Kind(platform=_S, name="Poll errors",
                state_class=_TI, category=_DIAG)),
            (schema.GATEWAY, schema.GATEWAY_DEVICES_DOWN, Kind(platform=_S,
                name="Devices down", state_class=_M, category=_DIAG)),
            (schema.GATEWAY, schema.GATEWAY_WRITE_LATENCY, Kind(platform=_S,
                name="Write latency", device_class="duration", state_class=_M,
                category=_DIAG)),
            (schema.GATEWAY, schema.GATEWAY_TASK_RESTARTS, Kind(platform=_S,
                name="Task restarts", state_class=_TI, category=_DIAG)),
            (schema.GATEWAY, schema.GATEWAY_TASKS_FAILING, Kind(platform=_S,
                name="Tasks failing", state_class=_M, category=_DIAG)),
            (schema.GATEWAY, schema.GATEWAY_SUPPRESSED, Kind(platform=_S,
                name="Suppressed unchanged", state_class=_TI, category=_DIAG)),
        )
    }
)
# fmt: on


def kind_of(measurement: str, field: str) -> Kind | None:
    """The entity of a schema field, or None when it gets none."""
    return KINDS.get((measurement, field))
