"""systemd's notify protocol and watchdog, with the standard library: "alive" from the loop.

Under a unit with ``Type=notify`` and ``WatchdogSec=``, systemd hands the gateway a datagram
socket (``$NOTIFY_SOCKET``; a name starting with ``@`` is in Linux's abstract namespace) and
the watchdog period (``$WATCHDOG_USEC``, for the process ``$WATCHDOG_PID`` when set). The
gateway says:

- ``READY=1`` once, when it has started its parts (``ready()``); until then systemd reports
  the unit as "activating", and gives up on it after ``TimeoutStartSec``;
- ``WATCHDOG=1`` every half period (``run()``); when systemd misses a whole period it kills
  the gateway (SIGABRT) and ``Restart=`` starts it again;
- ``STOPPING=1`` when it begins to stop (``stopping()``), ``STATUS=...`` for
  ``systemctl status`` (``status()``).

``run()`` pings from the event loop itself, timed by the loop's monotonic clock (real time,
never the gateway's injected clock): a loop that is blocked or spinning cannot send its ping,
so a hung gateway is restarted, not only a dead one. Its ``alive`` check can withhold pings
for a reason of the gateway's own.

Without ``$NOTIFY_SOCKET`` (a gateway run by hand, the demo, the tests) every call is a no-op
and ``run()`` returns at once. A datagram that cannot be sent (systemd restarting, a full
queue) is logged once and dropped: the watchdog never stops or slows the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

__all__ = ["Watchdog"]

log = logging.getLogger(__name__)


class Watchdog:
    """One gateway's line to systemd (see the module docstring).

    ``environ`` is where to find ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``
    (default: the process environment); ``pid`` is this process's id (default: ``getpid()``),
    compared with ``WATCHDOG_PID``.
    """

    def __init__(self, *, environ: Mapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.interval = _interval(env, os.getpid() if pid is None else pid)
        self._socket: socket.socket | None = None
        self._ready = False
        self._failing: str | None = None  # the last send error logged (logged once)
        self._withheld = False
        self.sent = 0  # datagrams sent
        self.pings = 0  # of them WATCHDOG=1

    @property
    def enabled(self) -> bool:
        """Whether there is a systemd to talk to."""
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``assignments`` ("READY=1", "STATUS=...") in one datagram; whether it went."""
        if self.address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)  # a stuck receiver never blocks the loop
            self._socket.sendto(payload, self.address)
        except OSError as exc:
            if self._failing != str(exc):
                self._failing = str(exc)
                log.warning("systemd notify socket %r: %s (dropped)", self.address, exc)
            return False
        if self._failing is not None:
            self._failing = None
            log.info("systemd notify socket %r: sending again", self.address)
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> None:
        """``READY=1`` (with a status line): the gateway has started its parts. Once only."""
        if self._ready:
            return
        self._ready = True
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        """A one-line status for ``systemctl status``."""
        self.notify(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> None:
        """``STOPPING=1``: the gateway has begun its orderly stop."""
        self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def ping(self) -> None:
        """One ``WATCHDOG=1`` (``run()`` sends them on time; this is for a caller's own use)."""
        if self.notify("WATCHDOG=1"):
            self.pings += 1

    async def run(self, *, alive: Callable[[], bool] | None = None) -> None:
        """Ping every half watchdog period until cancelled; returns at once without one.

        The pings are sent by this coroutine, on the loop that runs the gateway, and the
        next one is due an interval after the previous one was sent (by the loop's monotonic
        clock): while the loop is blocked, none goes out. ``alive``, when given, is asked
        before each ping; while it answers False the pings are withheld (logged once), so
        systemd restarts the gateway after one period.
        """
        if self.address is None or self.interval is None:
            return
        log.info("systemd watchdog: a ping every %.3g s", self.interval)
        while True:
            if alive is None or alive():
                if self._withheld:
                    self._withheld = False
                    log.warning("systemd watchdog: pinging again")
                self.ping()
            elif not self._withheld:
                self._withheld = True
                log.error("systemd watchdog: the gateway is not alive; withholding pings")
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _address(name: str) -> str | None:
    """The socket address of ``$NOTIFY_SOCKET``: a path, or ``@name`` in the abstract
    namespace (a leading NUL byte on the wire); None when unset or not a Unix socket."""
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    if name:
        log.warning("NOTIFY_SOCKET %r is not a Unix socket path; not notifying systemd", name)
    return None


def _interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings: half of ``$WATCHDOG_USEC``, when it is meant for ``pid``."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None  # the watchdog is our parent's, not ours
    if not usec.isdigit() or int(usec) == 0:
        log.warning("WATCHDOG_USEC %r is not a positive number of microseconds; ignored", usec)
        return None
    return int(usec) / 2 / 1_000_000
