"""Modbus device profiles: where each point lives in the device's tables and how to decode it.

Addresses are 0-based protocol addresses, as they go on the wire. Datasheets often number
registers from 1 with a table prefix (30001 = input register 0, 40001 = holding register 0);
a profile converts once and says so in a comment.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openbranch.edge.core import schema
from openbranch.edge.core.yamlsource import LocatedValueError
from openbranch.integrations.modbus.planner import Footprint, Hole
from openbranch.integrations.modbus.register import ByteOrder, DataType, Table, word_count
from openbranch.integrations.profile import Catalogue, Point, Profile

__all__ = ["CATALOGUE", "HoleSpec", "ModbusPoint", "ModbusProfile"]

_INT_TYPES = frozenset(
    {
        DataType.INT16,
        DataType.UINT16,
        DataType.INT32,
        DataType.UINT32,
        DataType.INT64,
        DataType.UINT64,
    }
)
_FLOAT_TYPES = frozenset({DataType.FLOAT32, DataType.FLOAT64})
_UNSIGNED_BITS = {DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64}


class ModbusPoint(Point):
    table: Table
    address: int = Field(ge=0, le=65535)
    type: DataType
    order: ByteOrder | None = Field(default=None, description="default: the profile's byte_order")
    scale: float = 1.0
    offset: float = 0.0
    sentinels: list[int] = Field(
        default_factory=list, description="raw values meaning 'not available'"
    )
    length: int | None = Field(default=None, ge=1, le=125, description="registers of a string")
    bit: int | None = Field(default=None, ge=0, le=15, description="bit of a `bits` point")
    invert: bool = Field(default=False, description="for bool/bits: true when the bit is 0")
    range: tuple[float, float] | None = Field(
        default=None, description="allowed values for writes, in engineering units"
    )
    enum: dict[int, str] | None = Field(
        default=None, description="raw integer -> state name, for string fields"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModbusPoint:  # noqa: PLR0912 - one rule per branch, read in order
        where = f"point {self.id}"
        if self.table.is_bit != (self.type is DataType.BOOL):
            raise ValueError(
                f"{where}: {self.table} points must be {'' if self.table.is_bit else 'not '}bool"
            )
        if (self.type is DataType.BITS) != (self.bit is not None):
            raise ValueError(f"{where}: `bit` goes with type bits, and type bits needs `bit`")
        if (self.type is DataType.STRING) != (self.length is not None):
            raise ValueError(f"{where}: `length` goes with type string, and type string needs it")
        if self.writable and not self.table.writable:
            raise ValueError(
                f"{where}: {self.table} is read-only; writable points are coils or holding"
            )
        numeric = self.type in _INT_TYPES | _FLOAT_TYPES
        if self.writable and numeric and self.range is None and self.enum is None:
            raise ValueError(f"{where}: a writable register needs a `range` (or an `enum`)")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(f"{where}: range {self.range} is upside down")
        if self.enum is not None and self.type not in _INT_TYPES:
            raise ValueError(f"{where}: an enum needs an integer type")
        target = self.schema_field
        if target is not None:
            kind = target.type
            if kind is schema.FieldType.BOOL and self.type not in (DataType.BOOL, DataType.BITS):
                raise ValueError(
                    f"{where}: {self.measurement}.{self.field} is a bool; use bool or bits"
                )
            if kind is schema.FieldType.STRING:
                if self.enum is None and self.type is not DataType.STRING:
                    raise ValueError(
                        f"{where}: {self.measurement}.{self.field} is a string; add an enum"
                    )
                if self.enum is not None and target.choices:
                    bad = set(self.enum.values()) - set(target.choices)
                    if bad:
                        raise ValueError(
                            f"{where}: enum values {sorted(bad)} are not in {target.choices}"
                        )
            if kind in (schema.FieldType.INT, schema.FieldType.FLOAT) and not numeric:
                raise ValueError(f"{where}: {self.measurement}.{self.field} is numeric")
            if kind is schema.FieldType.INT and (
                self.scale != 1 or self.offset != 0 or self.type in _FLOAT_TYPES
            ):
                raise ValueError(f"{where}: {self.measurement}.{self.field} is an integer field")
        if self.address + self.count > 65536:
            raise ValueError(f"{where}: ends past address 65535")
        return self

    @property
    def rollover(self) -> float | None:
        """The value at which this point's reading wraps to 0 when its raw register overflows:
        ``2**bits * scale`` for an unsigned integer (a uint16 of 0.01 kWh reads 655.35 kWh,
        then 0). None when no width applies: floats do not wrap; a signed integer overflows
        into negative readings, which no counter takes; an offset or a scale below 0 moves
        the reading's zero."""
        bits = _UNSIGNED_BITS.get(self.type)
        if bits is None or self.offset != 0 or self.scale <= 0:
            return None
        return float(1 << bits) * self.scale

    @property
    def count(self) -> int:
        """Registers (or bits) this point occupies."""
        return word_count(self.type, self.length)

    def footprint(self) -> Footprint:
        return Footprint(key=self.id, table=self.table, address=self.address, count=self.count)


class HoleSpec(BaseModel):
    """Addresses the device refuses to read: no request may cover them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Table
    start: int = Field(ge=0, le=65535)
    end: int = Field(ge=0, le=65535)

    def hole(self) -> Hole:
        return Hole(table=self.table, start=self.start, end=self.end)


class ModbusProfile(Profile[ModbusPoint]):
    byte_order: ByteOrder = ByteOrder.ABCD
    max_gap: int = Field(
        default=125, ge=0, le=125, description="default planner gap for this model"
    )
    max_registers: int = Field(
        default=125,
        ge=1,
        le=125,
        description="the most registers this model answers in one read (the protocol allows 125)",
    )
    holes: list[HoleSpec] = Field(default_factory=list)
    pause_after_connect: float = Field(default=0.0, ge=0, description="seconds, device advice")
    pause_between_requests: float = Field(default=0.0, ge=0, description="seconds, device advice")

    @model_validator(mode="after")
    def _layout(self) -> ModbusProfile:
        taken: dict[tuple[Table, int], ModbusPoint] = {}
        for i, point in enumerate(self.points):
            for address in range(point.address, point.address + point.count):
                other = taken.get((point.table, address))
                bits = (
                    point.type is DataType.BITS
                    and other is not None
                    and other.type is DataType.BITS
                )
                if other is not None and not (bits and other.bit != point.bit):
                    raise LocatedValueError(
                        ("points", i),
                        f"point {point.id} overlaps point {other.id} at {point.table} {address}",
                    )
                taken[(point.table, address)] = point
            for hole in self.holes:
                if (
                    hole.table is point.table
                    and point.address <= hole.end
                    and hole.start < point.address + point.count
                ):
                    raise LocatedValueError(
                        ("points", i),
                        f"point {point.id} lies in the unreadable range {hole.start}..{hole.end}",
                    )
        return self

    def order_of(self, point: ModbusPoint) -> ByteOrder:
        return point.order or self.byte_order


CATALOGUE: Catalogue[ModbusProfile] = Catalogue(ModbusProfile, "openbranch.integrations.modbus")
