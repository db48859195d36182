"""Faults as data: one small dataclass per kind, with ``apply`` and ``revert``.

A soak or a test builds a list of ``Scheduled`` faults (when, and which) and hands each to its
runner, which applies it, holds it at least ``hold`` seconds of world time (and until the alert
it should raise is shown), reverts it, and waits until the alert is cleared. Every fault acts
on the real part: the broker and the database are stopped or killed, a proxy in front of the
database delays, cuts or refuses, a simulated device goes silent or answers exceptions or
garbage, the gateway process is sent SIGTERM or SIGKILL, its wall clock is stepped, its store
is remounted read-only, and its file-size and descriptor limits are lowered (``prlimit``).

``alert`` names the alert (a kind, or the prefix of one) a person must see while the fault
lasts; None where none is due (a clean restart, a clock step). Blocking work runs in a thread,
so the world's devices keep answering while a server stops.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from bench.soaklib.world import World

__all__ = [
    "Bound",
    "ClockStep",
    "DeviceExceptions",
    "DeviceGarbage",
    "DeviceSilent",
    "DiskFull",
    "Fault",
    "GatewayKill",
    "GatewayTerm",
    "InfluxdDown",
    "MosquittoDown",
    "NoFiles",
    "ProxyRefuses",
    "ProxySlow",
    "ReadOnlyStore",
    "Scheduled",
]

FSIZE_LIMIT = 300_000  # bytes a file of the gateway may have while the "disk is full"
NaN32 = [0x7FC0, 0x0000]  # a float32 NaN as two registers


@dataclass
class Fault:
    kind: ClassVar[str] = "fault"
    alert: ClassVar[str | None] = None
    restarts: ClassVar[bool] = False  # the gateway process is replaced
    seen_on_mqtt: ClassVar[bool] = False  # the alert is looked for on the MQTT state topic
    hold: float = 1200.0  # seconds of world time the fault lasts at least
    within: float = 30.0  # real seconds it may take to be over (``done``)

    def describe(self) -> str:
        return self.kind

    async def apply(self, world: World) -> None:
        raise NotImplementedError

    async def revert(self, world: World) -> None:
        raise NotImplementedError

    def done(self, world: World) -> bool:
        """Whether the fault may be reverted (beyond ``hold`` and its alert shown)."""
        return True


@dataclass
class Scheduled:
    at: datetime  # world time (local to the branch) to apply it
    fault: Fault


# -- the broker and the database ------------------------------------------------------------


@dataclass
class MosquittoDown(Fault):
    """Mosquitto stopped (SIGTERM) or killed, then started again on the same port."""

    kind: ClassVar[str] = "mosquitto"
    alert: ClassVar[str | None] = "mqtt_down"
    kill: bool = False
    hold: float = 1200.0

    def describe(self) -> str:
        return "mosquitto killed" if self.kill else "mosquitto stopped"

    async def apply(self, world: World) -> None:
        world.broker_down_since = world.gateway_ns()
        await asyncio.to_thread(world.mosquitto.kill if self.kill else world.mosquitto.stop)

    async def revert(self, world: World) -> None:
        await asyncio.to_thread(world.mosquitto.start)
        world.broker_downs.append((world.broker_down_since, world.gateway_ns()))
        if self.kill:
            world.broker_kills.append((world.broker_down_since, world.gateway_ns()))


@dataclass
class InfluxdDown(Fault):
    """influxd stopped or killed (both sinks lose their database), then started again."""

    kind: ClassVar[str] = "influxd"
    alert: ClassVar[str | None] = "sink_down"
    kill: bool = False
    hold: float = 1800.0

    def describe(self) -> str:
        return "influxd killed" if self.kill else "influxd stopped"

    async def apply(self, world: World) -> None:
        await asyncio.to_thread(world.influxd.kill if self.kill else world.influxd.stop)

    async def revert(self, world: World) -> None:
        await asyncio.to_thread(world.influxd.start)


@dataclass
class ProxySlow(Fault):
    """The link to the database slows down (every chunk held), then drops connections."""

    kind: ClassVar[str] = "slow_link"
    alert: ClassVar[str | None] = "sink_down"
    delay: float = 0.3  # real seconds per chunk
    hold: float = 1800.0
    _phase: int = field(default=0, init=False)

    def describe(self) -> str:
        return f"influxd link slow ({self.delay:g} s a chunk), then cutting"

    async def apply(self, world: World) -> None:
        world.proxy.set("slow", delay=self.delay)
        await asyncio.sleep(3 * self.delay + 1.0)  # a few slow writes go through
        world.proxy.set("cut")
        world.proxy.cut_all()

    async def revert(self, world: World) -> None:
        world.proxy.set("pass")


@dataclass
class ProxyRefuses(Fault):
    """The database answers every write with ``status`` (503 or 429) and a Retry-After."""

    kind: ClassVar[str] = "refusing"
    alert: ClassVar[str | None] = "sink_down"
    status: int = 503
    hold: float = 1800.0

    def describe(self) -> str:
        return f"influxd answers {self.status}"

    async def apply(self, world: World) -> None:
        world.proxy.set("status", status=self.status, retry_after=1.0)
        world.proxy.cut_all()  # the next write meets the refusal

    async def revert(self, world: World) -> None:
        world.proxy.set("pass")


@dataclass
class Bound(Fault):
    """influxd stays away until the outbox reaches its bound and drops the oldest telemetry."""

    kind: ClassVar[str] = "bound"
    alert: ClassVar[str | None] = "outbox_dropped"
    hold: float = 1800.0
    within: float = 180.0
    _dropped: int = field(default=0, init=False)

    def describe(self) -> str:
        return "disk bound reached (influxd away until the bound drops telemetry)"

    async def apply(self, world: World) -> None:
        self._dropped = world.tailer.dropped
        await asyncio.to_thread(world.influxd.stop)

    def done(self, world: World) -> bool:
        return world.tailer.dropped > self._dropped

    async def revert(self, world: World) -> None:
        await asyncio.to_thread(world.influxd.start)


# -- devices ---------------------------------------------------------------------------------


@dataclass
class DeviceSilent(Fault):
    kind: ClassVar[str] = "device_silent"
    alert: ClassVar[str | None] = "device_down:"
    device: str = ""
    hold: float = 1800.0

    def describe(self) -> str:
        return f"{self.device} silent"

    async def apply(self, world: World) -> None:
        world.devices[self.device].set_silent(True)

    async def revert(self, world: World) -> None:
        world.devices[self.device].set_silent(False)


@dataclass
class DeviceExceptions(Fault):
    """Every read answered with Modbus exception 4 (server device failure)."""

    kind: ClassVar[str] = "device_exceptions"
    alert: ClassVar[str | None] = "device_down:"
    device: str = ""
    hold: float = 1800.0

    def describe(self) -> str:
        return f"{self.device} answers exceptions"

    async def apply(self, world: World) -> None:
        from openbranch.integrations.modbus.register import Table

        unit = world.devices[self.device]
        world.excuse_polls = f"{self.device} answers exceptions"
        for table in Table:
            unit.fail(table, 0, 65535, code=4)  # type: ignore[attr-defined]

    async def revert(self, world: World) -> None:
        world.devices[self.device].clear_failures()  # type: ignore[attr-defined]
        world.excuse_polls = ""


@dataclass
class DeviceGarbage(Fault):
    """A meter's float registers read NaN; MQTT devices publish bytes that are no JSON."""

    kind: ClassVar[str] = "device_garbage"
    alert: ClassVar[str | None] = None
    device: str = ""
    points: tuple[str, ...] = ()
    hold: float = 1800.0

    def describe(self) -> str:
        return f"{self.device} reads NaN; MQTT garbage"

    async def apply(self, world: World) -> None:
        for point in self.points:
            world.garbled[(self.device, point)] = NaN32
        world.passages.garble()

    async def revert(self, world: World) -> None:
        world.garbled.clear()
        world.passages.garble()


# -- the gateway process --------------------------------------------------------------------


@dataclass
class GatewayTerm(Fault):
    kind: ClassVar[str] = "sigterm"
    restarts: ClassVar[bool] = True
    hold: float = 0.0

    async def apply(self, world: World) -> None:
        world.down_since = world.gateway_ns()
        code = await asyncio.to_thread(world.gateway.stop)
        if code not in (0, -9):  # -9: it hung and was killed (the handle says so)
            world.problems.append(f"SIGTERM: the gateway exited with {code}")

    async def revert(self, world: World) -> None:
        await asyncio.to_thread(world.gateway.start)
        world.downtimes.append((world.down_since, world.gateway_ns()))


@dataclass
class GatewayKill(Fault):
    """SIGKILL at a random moment, inside the closing sequence, or right as a commit lands."""

    kind: ClassVar[str] = "sigkill"
    restarts: ClassVar[bool] = True
    when: str = "random"  # random | closing | commit
    hold: float = 0.0

    def describe(self) -> str:
        return f"SIGKILL ({self.when})"

    async def apply(self, world: World) -> None:
        if self.when == "commit":
            await asyncio.to_thread(_kill_after_a_commit, world)
        else:
            world.note_kill()
            await asyncio.to_thread(world.gateway.kill)
        world.down_since = world.gateway_ns()

    async def revert(self, world: World) -> None:
        await asyncio.to_thread(world.gateway.start)
        world.downtimes.append((world.down_since, world.gateway_ns()))


def _kill_after_a_commit(world: World) -> None:
    """Watch the outbox's newest seq and kill the gateway the moment it moves (the next
    commit is being formed or written: the riskiest moment)."""
    before = world.tailer.newest_seq()
    deadline = time.monotonic() + 10
    while world.tailer.newest_seq() == before and time.monotonic() < deadline:
        time.sleep(0.001)
    world.note_kill()
    world.gateway.kill()


@dataclass
class ClockStep(Fault):
    """The gateway's wall clock stepped to ``offset`` seconds off (0: corrected back)."""

    kind: ClassVar[str] = "clock_step"
    offset: float = 0.0
    hold: float = 0.0

    def describe(self) -> str:
        return f"clock stepped to {self.offset:+.0f} s"

    async def apply(self, world: World) -> None:
        before = world.gateway.offset
        world.gateway.step(self.offset)
        world.steps.append((world.gateway_ns(), int((self.offset - before) * 1e9)))
        world.excuse_until = time.monotonic() + 1.0  # polls in flight at the step

    async def revert(self, world: World) -> None:
        return


# -- the store ---------------------------------------------------------------------------------


@dataclass
class ReadOnlyStore(Fault):
    """The store's file system turns read-only, as ext4 does on an I/O error with
    ``errors=remount-ro`` (ext4's own ``trigger_fs_error``). Such a file system comes back
    only after an unmount and a check: the revert is what a person does (stop the gateway,
    ``e2fsck``, mount, start it). The status file is on the same file system, so the alert
    is looked for where a person still sees it: the gateway's MQTT state topic."""

    kind: ClassVar[str] = "read_only"
    alert: ClassVar[str | None] = "store_failed"
    restarts: ClassVar[bool] = True
    seen_on_mqtt: ClassVar[bool] = True
    hold: float = 1200.0

    def describe(self) -> str:
        return "store's file system read-only (ext4 error), repaired with a restart"

    async def apply(self, world: World) -> None:
        world.excuse_polls = "polled while the store was read-only (never accepted)"
        world.excuse_journal_from = world.gateway_ns()
        await asyncio.to_thread(_ext4_error, world)

    async def revert(self, world: World) -> None:
        world.down_since = world.gateway_ns()
        await asyncio.to_thread(_repair, world)
        world.downtimes.append((world.down_since, world.gateway_ns()))
        world.excuse_polls = ""
        world.journal_excused.append((world.excuse_journal_from, world.gateway_ns()))


def _ext4_error(world: World) -> None:
    name = world.store_device()
    Path(f"/sys/fs/ext4/{name}/trigger_fs_error").write_text("soak\n", encoding="ascii")


def _repair(world: World) -> None:
    world.gateway.stop()  # it cannot commit what it holds: never accepted, QoS 1 comes again
    world.tailer.pause()
    _run("umount", str(world.mounted))
    fsck = subprocess.run(["e2fsck", "-fy", str(world.image)], capture_output=True, check=False)
    if fsck.returncode not in (0, 1):  # 1: errors corrected
        raise RuntimeError(f"e2fsck {world.image}: {fsck.returncode}")
    world.mount_store()
    world.tailer.resume()
    world.gateway.start()


def _run(*command: str) -> None:
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


@dataclass
class DiskFull(Fault):
    """Every file of the gateway limited to ``FSIZE_LIMIT`` bytes: writes past it fail."""

    kind: ClassVar[str] = "disk_full"
    alert: ClassVar[str | None] = "store_failed"
    hold: float = 1200.0
    _old: tuple[int, int] = field(default=(0, 0), init=False)

    async def apply(self, world: World) -> None:
        self._old = world.gateway.limit(resource.RLIMIT_FSIZE, FSIZE_LIMIT)

    async def revert(self, world: World) -> None:
        world.gateway.restore(resource.RLIMIT_FSIZE, self._old)


@dataclass
class NoFiles(Fault):
    """The gateway out of file descriptors: its limit lowered below every descriptor it holds
    (open ones stay usable, no new one can be had), and the link to the database cut, so its
    drainer must open a new socket and cannot."""

    kind: ClassVar[str] = "no_files"
    alert: ClassVar[str | None] = "sink_down"
    hold: float = 1200.0
    _old: tuple[int, int] = field(default=(0, 0), init=False)

    async def apply(self, world: World) -> None:
        self._old = world.gateway.limit(resource.RLIMIT_NOFILE, 0)
        world.proxy.cut_all()

    async def revert(self, world: World) -> None:
        world.gateway.restore(resource.RLIMIT_NOFILE, self._old)
