"""An RS-485 line for the simulator: pseudo-terminals made by socat, bytes paced at the baud rate.

::

    gateway ── pty ── socat ── pipes ── SerialLine ── pipes ── socat ── pty ── serial server
             (port)                    (the wire)                   (device_port)  (units)

The gateway opens ``port`` as it would open ``/dev/ttyUSB0``; the simulated units are served
by pymodbus's serial server on ``device_port`` (``simulator.ModbusRtuSimulator``). Between the
two the line carries bytes as a bus would: one talker at a time, every character taking its
time on the wire (11 bits at 9600 baud: 1.15 ms, ``rtu.character_time``), delivered to the
other side when its stop bit is through, and a device starting its answer only after t3.5 of
silence after the request. So the frame timing the gateway sees is what a real line gives,
although a pty itself has no speed.

Faults on demand, as on a real bus: garbage on the line (the gateway receives it; the units'
receivers drop it, and a request it runs into), a request garbled on its way, an answer cut
short, an answer with a bad CRC, and the gateway's port unplugged (its socat is stopped: the
pty disappears, and the gateway's open port fails) and plugged back in under the same name.
``frames`` records every frame with its time on the wire, so a test can check the silences
between them.

A pty cannot carry a parity bit (Linux refuses the setting), so a simulated line is 8N2: the
11 bits per character of the standard's 8E1, without the parity. socat is a Debian package
(``apt-get install socat``); ``start`` raises ``SocatMissing`` without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from openbranch.integrations.modbus.rtu import character_bits, character_time, frame_length, silence

__all__ = ["Frame", "Sender", "SerialLine", "SocatMissing"]

log = logging.getLogger(__name__)

_READY = b"starting data transfer loop"
_START_TIMEOUT = 5.0


class SocatMissing(RuntimeError):
    """socat is not installed: no serial line can be simulated."""


class Sender(StrEnum):
    GATEWAY = "gateway"
    DEVICE = "device"
    NOISE = "noise"


@dataclass(frozen=True, slots=True)
class Frame:
    """A burst of bytes on the wire: who sent it, and when its first and last characters
    were on the line (monotonic seconds)."""

    sender: Sender
    start: float
    end: float
    data: bytes


class _Socat:
    """One socat process joining a pty (under the name ``link``) to its stdin and stdout."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = shutil.which("socat")
        if binary is None:
            raise SocatMissing(
                "socat is not installed (Debian package socat: apt-get install socat)"
            )
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()  # a link left by a socat that was killed hard
        self.process = await asyncio.create_subprocess_exec(
            binary,
            "-d",
            "-d",
            f"pty,link={self.link},raw,echo=0",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self.process.stderr is not None
        said = b""
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                while _READY not in said:
                    line = await self.process.stderr.readline()
                    if not line:
                        break
                    said += line
        except TimeoutError:
            pass
        if _READY not in said or not self.link.exists():
            await self.stop()
            raise RuntimeError(f"socat did not make {self.link}: {said.decode(errors='replace')}")

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None:
            process.terminate()
        await process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    def write(self, data: bytes) -> None:
        process = self.process
        if process is not None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(data)

    async def read(self) -> bytes:
        """The next bytes from the pty; b"" once socat is gone."""
        process = self.process
        if process is None or process.stdout is None:
            return b""
        return await process.stdout.read(4096)


class _Outlet:
    """Bytes for one side, each handed over when its last bit has crossed the wire."""

    def __init__(self, socat: _Socat) -> None:
        self.socat = socat
        self._queue: deque[tuple[float, int]] = deque()
        self._wake = asyncio.Event()

    def put(self, start: float, data: bytes, char: float) -> None:
        self._queue.extend((start + (i + 1) * char, b) for i, b in enumerate(data))
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            due = bytearray()
            while self._queue and self._queue[0][0] <= now:
                due.append(self._queue.popleft()[1])
            if due:
                self.socat.write(bytes(due))
            if self._queue:
                await asyncio.sleep(self._queue[0][0] - now)


class SerialLine:
    """A simulated RS-485 line between the gateway's ``port`` and the units' ``device_port``."""

    def __init__(
        self, *, port: str | Path, baudrate: int = 9600, parity: str = "N", stopbits: int = 2
    ) -> None:
        if parity != "N":
            raise ValueError(
                f"{port}: a pseudo-terminal carries no parity bit (Linux refuses it), so a"
                " simulated line has parity N; 8N2 has the 11 bits of 8E1"
            )
        self.port = Path(port)
        self.device_port = Path(f"{port}.units")
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        bits = character_bits(parity, stopbits)
        self.char = character_time(baudrate, bits)
        self.silence = silence(baudrate, bits)
        self.frames: list[Frame] = []
        self._gateway = _Socat(self.port)
        self._units = _Socat(self.device_port)
        self._to_gateway = _Outlet(self._gateway)
        self._to_units = _Outlet(self._units)
        self._free_at = 0.0  # when the wire is quiet again
        self._last = Sender.NOISE
        self._cut = 0
        self._corrupt = 0
        self._garble = 0
        self._noise_end = float("-inf")  # when the last noise on the wire ended
        self.dropped = 0  # requests the units' receivers dropped (noise ran into them)
        self._tasks: list[asyncio.Task[None]] = []
        self._gateway_pump: asyncio.Task[None] | None = None

    @property
    def plugged(self) -> bool:
        return self._gateway.process is not None

    async def start(self) -> None:
        await self._units.start()
        try:
            await self._gateway.start()
        except BaseException:
            await self._units.stop()
            raise
        self._tasks = [
            asyncio.create_task(self._to_gateway.run(), name=f"line {self.port}: to gateway"),
            asyncio.create_task(self._to_units.run(), name=f"line {self.port}: to units"),
            asyncio.create_task(self._pump(self._units, Sender.DEVICE), name=f"line {self.port}"),
        ]
        self._gateway_pump = asyncio.create_task(self._pump(self._gateway, Sender.GATEWAY))

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._gateway_pump] if self._gateway_pump else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks, self._gateway_pump = [], None
        await self._gateway.stop()
        await self._units.stop()

    async def unplug(self) -> None:
        """The gateway's port disappears, as when its USB converter is pulled out."""
        if self._gateway_pump is not None:
            self._gateway_pump.cancel()
            await asyncio.gather(self._gateway_pump, return_exceptions=True)
            self._gateway_pump = None
        await self._gateway.stop()
        log.info("%s: unplugged", self.port)

    async def plug(self) -> None:
        """The gateway's port comes back under the same name."""
        await self._gateway.start()
        self._gateway_pump = asyncio.create_task(self._pump(self._gateway, Sender.GATEWAY))
        log.info("%s: plugged in again", self.port)

    def inject(self, garbage: bytes) -> None:
        """Put bytes on the wire now, between frames. The gateway receives them as they are;
        the units' receivers see a burst with a bad CRC and drop it, or, when the next
        request follows it within t3.5, drop that request with it (see ``_send``)."""
        start = self._place(len(garbage), Sender.NOISE)
        self._noise_end = start + len(garbage) * self.char
        self.frames.append(Frame(Sender.NOISE, start, self._noise_end, garbage))
        self._to_gateway.put(start, garbage, self.char)

    def garble_next_requests(self, count: int = 1) -> None:
        """Noise runs into each of the next ``count`` requests: the units drop them."""
        self._garble += count

    def cut_next_answers(self, count: int = 1) -> None:
        """The next ``count`` answers stop half way (a device reset, a loose wire)."""
        self._cut += count

    def corrupt_next_answers(self, count: int = 1) -> None:
        """One byte of each of the next ``count`` answers flips on the wire: a CRC error."""
        self._corrupt += count

    def _place(self, size: int, sender: Sender) -> float:
        """Schedule ``size`` characters from ``sender`` on the wire; returns their start."""
        start = max(time.monotonic(), self._free_at)
        if sender is Sender.DEVICE and self._last is not Sender.DEVICE:
            start = max(start, self._free_at + self.silence)  # a unit answers after t3.5
        end = start + size * self.char
        self._free_at, self._last = end, sender
        return start

    def _send(self, frame: bytes, sender: Sender) -> None:
        """Put a frame on the wire, with the faults asked for.

        The units are served by pymodbus's serial server, which finds frames by their length
        and CRC alone, and hunting through garbage can cost it later requests too. A device
        finds frames by the silence around them and drops one with a bad CRC, so the line
        delivers to the units only what such a receiver passes on: never the noise, and no
        request that noise ran into (less than t3.5 between them: one bad frame).
        """
        if sender is Sender.GATEWAY:
            start = self._place(len(frame), sender)
            self.frames.append(Frame(sender, start, start + len(frame) * self.char, frame))
            if self._garble or start - self._noise_end < self.silence:
                self._garble = max(0, self._garble - 1)
                self.dropped += 1
                return
            self._to_units.put(start, frame, self.char)
            return
        if sender is Sender.DEVICE:
            if self._corrupt:
                self._corrupt -= 1
                middle = len(frame) // 2
                frame = frame[:middle] + bytes([frame[middle] ^ 0x5A]) + frame[middle + 1 :]
            elif self._cut:
                self._cut -= 1
                frame = frame[: len(frame) // 2]
        start = self._place(len(frame), sender)
        self.frames.append(Frame(sender, start, start + len(frame) * self.char, frame))
        self._to_gateway.put(start, frame, self.char)

    async def _pump(self, side: _Socat, sender: Sender) -> None:
        """Cut what ``side`` writes into frames and put them on the wire."""
        pending = b""
        while data := await side.read():
            pending += data
            while pending:
                try:
                    size = frame_length(pending, from_device=sender is Sender.DEVICE)
                except ValueError:
                    size = len(pending)  # not a frame this line knows: send it as it came
                if size is None or size > len(pending):
                    break
                self._send(pending[:size], sender)
                pending = pending[size:]
