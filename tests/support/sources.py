"""Device sources and a driver for tests that need a device the simulators cannot be: one that
raises, one that is slow, one that records. Subclasses override what they test; the rest of
``edge.core.device.DeviceSource`` is here once."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from openbranch.edge.core.command import Command
from openbranch.edge.core.config import DeviceConfig, MqttConfig
from openbranch.edge.core.device import PollResult
from openbranch.edge.core.reading import Value
from openbranch.edge.core.registry import BuildContext, Registry

__all__ = ["StubDriver", "StubSource", "registry_of"]


class StubSource:
    """A device that pushes nothing, polls nothing and takes every write as it is."""

    kind = "a test device"

    def __init__(self, device_id: str, context: BuildContext | None = None) -> None:
        self._id = device_id
        self.context = context

    @property
    def device_id(self) -> str:
        return self._id

    def intervals(self) -> Mapping[str, float]:
        return {}

    def describe_plan(self) -> str:
        return f"{self._id}: {self.kind}"

    async def poll(self, groups: Collection[str]) -> PollResult:
        return PollResult()

    async def listen(self, accept: object, reject: object) -> None:
        return None

    async def write(self, command: Command) -> Value:
        return command.value

    async def close(self) -> None:
        return None


class StubDriver:
    """Builds ``make(device_id, context)`` for every device of the Modbus TCP transport (the
    config needs a transport; nothing is connected) and keeps what it built."""

    name = "stub"
    transports = frozenset({"modbus_tcp"})

    def __init__(self, make: Callable[[str, BuildContext], StubSource]) -> None:
        self._make = make
        self.built: list[StubSource] = []

    def check(self, device: DeviceConfig) -> None:
        return None

    def build(self, device: DeviceConfig, context: BuildContext) -> StubSource:
        source = self._make(device.id, context)
        self.built.append(source)
        return source

    def simulate(self, devices: object, *, mqtt: MqttConfig | None = None) -> object:
        raise NotImplementedError("stub devices are not simulated")


def registry_of(driver: StubDriver) -> Registry:
    registry = Registry()
    registry.add(driver)
    return registry
