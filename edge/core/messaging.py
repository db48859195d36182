"""The gateway's MQTT vocabulary, shared by the session, the devices and the extensions.

``Topics`` is the topic layout (prefix = ``mqtt.topic_prefix``, default ``openbranch``)::

    {prefix}/{branch}/status                  retained "online" after every connect;
                                              "offline" as the last will and on a clean stop
    {prefix}/{branch}/{device}/state          retained JSON: the device's last values per
                                              measurement (``state_key``), and "time"
    {prefix}/{branch}/{device}/availability   retained "online" / "offline"
    {prefix}/{branch}/control                 signed commands to the gateway (edge.hours.control)

``MqttLink`` is what a device driver or an extension may do with the gateway's one MQTT
session (``edge.runtime.mqtt.MqttSession`` implements it); integrations type against this
protocol and never import the runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from openbranch.edge.core.schema import Tag

__all__ = ["Handler", "MqttLink", "Topics", "state_key"]

Handler = Callable[[str, bytes, bool], None]  # topic, payload, retained

_SERIES_TAGS = (Tag.ZONE.value, Tag.PHASE.value, Tag.KIND.value)


def state_key(measurement: str, tags: Mapping[str, str]) -> str:
    """Where a series sits in its device's state JSON: the measurement's name, then ``/`` and
    the value of each tag that tells one device's series apart (zone, phase, kind), e.g.
    ``light/group-0``. The state also keeps one entry per measurement, merged."""
    return "/".join([measurement, *(tags[t] for t in _SERIES_TAGS if t in tags)])


@dataclass(frozen=True, slots=True)
class Topics:
    """The gateway's own topics (see the module docstring)."""

    prefix: str
    branch: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.branch}/status"

    @property
    def control(self) -> str:
        return f"{self.prefix}/{self.branch}/control"

    def state(self, device: str) -> str:
        return f"{self.prefix}/{self.branch}/{device}/state"

    def availability(self, device: str) -> str:
        return f"{self.prefix}/{self.branch}/{device}/availability"


class MqttLink(Protocol):
    """The gateway's MQTT session as devices and extensions see it."""

    @property
    def topics(self) -> Topics: ...

    @property
    def connected(self) -> bool: ...

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Call ``handler`` on the event loop for every message matching ``topic_filter``,
        from now on and again after every reconnect."""
        ...

    def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
    ) -> None:
        """Publish now; a retained message is published again after every reconnect."""
        ...
