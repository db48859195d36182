"""The plugin interfaces: how the gateway finds the driver for a device's transport, and the
extensions that run beside it (such as Home Assistant discovery).

Integrations register themselves through the ``openbranch.integrations`` entry point group
(declared in pyproject.toml): each entry is a callable taking the ``Registry``. Edge never
imports an integration by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from openbranch.edge.core.admission import LibrarySystem
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.config import (
    DeviceConfig,
    GatewayConfig,
    MqttConfig,
    Sip2Config,
    load_gateway_config,
)
from openbranch.edge.core.device import DeviceSource, Simulation
from openbranch.edge.core.messaging import MqttLink

__all__ = [
    "EXTENSION_GROUP",
    "BuildContext",
    "Driver",
    "Extension",
    "ExtensionContext",
    "LibrarySystemFactory",
    "Registry",
    "default_registry",
    "load_checked",
    "load_extensions",
]

ENTRY_POINT_GROUP = "openbranch.integrations"
EXTENSION_GROUP = "openbranch.extensions"  # entry points: (ExtensionContext) -> Extension | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildContext:
    """What a driver gets to build devices for one gateway.

    ``shared`` is per-gateway state an integration keeps across its devices (for Modbus: one
    session per physical bus, shared by every unit id on it).
    """

    branch: str
    clock: Clock
    mqtt: MqttLink | None = None
    shared: dict[str, Any] = field(default_factory=dict)


class Driver(Protocol):
    name: str
    transports: frozenset[str]

    def check(self, device: DeviceConfig) -> None:
        """Raise ValueError when the device's profile is unknown or does not fit."""
        ...

    def build(self, device: DeviceConfig, context: BuildContext) -> DeviceSource: ...

    def simulate(
        self, devices: Sequence[DeviceConfig], *, mqtt: MqttConfig | None = None
    ) -> Simulation:
        """Simulated devices serving ``devices`` on their configured addresses (demo, tests);
        ``mqtt`` is the broker that devices pushing over MQTT publish to."""
        ...


#: builds the client of a library system (``library_system:`` in the config) by its type
LibrarySystemFactory = Callable[[Sip2Config], LibrarySystem]


class Registry:
    def __init__(self) -> None:
        self._drivers: dict[str, Driver] = {}
        self._library_systems: dict[str, LibrarySystemFactory] = {}

    def add_library_system(self, kind: str, factory: LibrarySystemFactory) -> None:
        if kind in self._library_systems:
            raise ValueError(f"library system {kind!r} is registered twice")
        self._library_systems[kind] = factory

    def library_system(self, config: Sip2Config) -> LibrarySystem:
        """The client for the configured library system (not connected until first asked)."""
        try:
            factory = self._library_systems[config.type]
        except KeyError:
            raise ValueError(
                f"no integration handles library system {config.type!r}"
                f" (installed: {', '.join(sorted(self._library_systems)) or 'none'})"
            ) from None
        return factory(config)

    def add(self, driver: Driver) -> None:
        for transport in driver.transports:
            if transport in self._drivers:
                other = self._drivers[transport].name
                raise ValueError(f"transport {transport!r} is claimed by {other} and {driver.name}")
            self._drivers[transport] = driver

    def driver_for(self, device: DeviceConfig) -> Driver:
        try:
            return self._drivers[device.transport.type]
        except KeyError:
            raise ValueError(
                f"no integration handles transport {device.transport.type!r}"
                f" (installed: {', '.join(sorted(self._drivers)) or 'none'})"
            ) from None

    def check_device(self, device: DeviceConfig) -> None:
        self.driver_for(device).check(device)

    def build(self, device: DeviceConfig, context: BuildContext) -> DeviceSource:
        return self.driver_for(device).build(device, context)

    def simulate(
        self, devices: Sequence[DeviceConfig], *, mqtt: MqttConfig | None = None
    ) -> list[Simulation]:
        """One simulation per driver, covering every device that driver handles."""
        by_driver: dict[str, tuple[Driver, list[DeviceConfig]]] = {}
        for device in devices:
            driver = self.driver_for(device)
            by_driver.setdefault(driver.name, (driver, []))[1].append(device)
        return [driver.simulate(group, mqtt=mqtt) for driver, group in by_driver.values()]


_default: Registry | None = None


def default_registry() -> Registry:
    """The registry with every installed integration, loaded once."""
    global _default  # noqa: PLW0603 - a process-wide cache of installed plugins
    if _default is None:
        registry = Registry()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            register: Callable[[Registry], None] = ep.load()
            register(registry)
        _default = registry
    return _default


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionContext:
    """What an extension (such as Home Assistant discovery) gets from the gateway."""

    config: GatewayConfig
    mqtt: MqttLink | None
    clock: Clock
    #: Call with a listener to hear each alert kind the gateway raises, from the gateway
    #: itself (not from its MQTT state topic, which a broker without the rendered ACL would
    #: let anyone write).
    on_alert: Callable[[Callable[[str], None]], None] = lambda _listener: None


class Extension(Protocol):
    """Something that runs beside the gateway's loop, from the ``openbranch.extensions`` entry
    point group (edge never imports it by name)."""

    name: str

    async def run(self) -> None:
        """Run until cancelled (the gateway stops)."""
        ...


def load_extensions(context: ExtensionContext) -> list[Extension]:
    """Every installed extension that wants to run for this gateway (a factory may say no)."""
    found = []
    for ep in sorted(entry_points(group=EXTENSION_GROUP), key=lambda e: e.name):
        make: Callable[[ExtensionContext], Extension | None] = ep.load()
        extension = make(context)
        if extension is not None:
            found.append(extension)
    return found


def load_checked(path: Path) -> GatewayConfig:
    """A gateway config validated against the models and the installed integrations."""
    return load_gateway_config(path, check_device=default_registry().check_device)
