"""systemd's notify protocol against a real datagram socket, as systemd holds it.

Each datagram is stamped by the kernel when the sender queues it (``SO_TIMESTAMPNS``), so
"no ping while the loop was blocked" is read from the times the pings were *sent*, compared
with the wall clock read around the block, not from a receiving thread's wake-ups.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openbranch.edge.runtime.watchdog import Watchdog

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python 3.11 has no name for it
_STOP = b"stop the receiver"

Datagram = tuple[int, str]  # (kernel time it was queued, ns since the epoch; payload)


class Systemd:
    """The receiving end of ``NOTIFY_SOCKET``: every datagram with its kernel timestamp."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(address)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.received: list[Datagram] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            payload, ancillary, _flags, _addr = self._sock.recvmsg(4096, 256)
            if payload == _STOP:
                return
            stamps = [d for level, kind, d in ancillary if (level, kind) == (1, SO_TIMESTAMPNS)]
            assert stamps, "the kernel gave no timestamp"
            seconds, nanoseconds = struct.unpack("qq", stamps[0][:16])
            with self._changed:
                self.received.append((seconds * 10**9 + nanoseconds, payload.decode()))
                self._changed.notify_all()

    def wait_for(
        self, done: Callable[[list[Datagram]], bool], timeout: float = 10.0
    ) -> list[Datagram]:
        """Block until ``done(received)``; the datagrams so far."""
        with self._changed:
            assert self._changed.wait_for(lambda: done(self.received), timeout), self.received
            return list(self.received)

    def pings(self) -> list[int]:
        with self._changed:
            return [t for t, payload in self.received if payload == "WATCHDOG=1"]

    def close(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as waker:
            waker.sendto(_STOP, self.address)
        self._thread.join(10)
        self._sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    path = tmp_path / "notify"
    assert len(str(path)) < 108, "a Unix socket path must be shorter than 108 bytes"
    receiver = Systemd(str(path))
    yield receiver
    receiver.close()


def watchdog_for(systemd: Systemd, usec: int | None = None) -> Watchdog:
    env = {"NOTIFY_SOCKET": systemd.address}
    if usec is not None:
        env |= {"WATCHDOG_USEC": str(usec), "WATCHDOG_PID": str(os.getpid())}
    return Watchdog(environ=env)


def pings(n: int) -> Callable[[list[Datagram]], bool]:
    return lambda got: sum(p == "WATCHDOG=1" for _, p in got) >= n


def test_ready_once_then_status_and_stopping(systemd: Systemd) -> None:
    watchdog = watchdog_for(systemd)
    assert watchdog.enabled
    assert watchdog.interval is None  # no WATCHDOG_USEC: notify, but no pings asked for
    watchdog.ready("polling 3 devices")
    watchdog.ready("again")  # once only
    watchdog.status("outbox 12 pending")
    watchdog.stopping()
    got = systemd.wait_for(lambda got: len(got) >= 3)
    assert [payload for _, payload in got] == [
        "READY=1\nSTATUS=polling 3 devices",
        "STATUS=outbox 12 pending",  # the second ready() sent nothing: datagrams keep order
        "STOPPING=1",
    ]
    assert watchdog.sent == 3
    asyncio.run(watchdog.run())  # no watchdog asked for: returns at once
    watchdog.close()


def test_pings_every_half_period_from_the_loop(systemd: Systemd) -> None:
    watchdog = watchdog_for(systemd, usec=200_000)
    assert watchdog.interval == 0.1

    async def main() -> None:
        task = asyncio.create_task(watchdog.run())
        watchdog.ready()
        await asyncio.to_thread(systemd.wait_for, pings(6))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    watchdog.close()
    sent = systemd.pings()
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(sent)]
    assert len(sent) >= 6
    assert min(gaps) >= 0.1 - 0.002  # never more often than half the period
    assert sorted(gaps)[len(gaps) // 2] < 0.1 + 0.05  # and on time while the loop is free
    assert watchdog.pings == len(sent)


def test_a_blocked_loop_sends_no_ping_until_it_runs_again(systemd: Systemd) -> None:
    watchdog = watchdog_for(systemd, usec=200_000)  # a ping every 0.1 s
    block: dict[str, int] = {}

    async def hog() -> None:
        block["start"] = time.time_ns()
        time.sleep(0.6)  # noqa: ASYNC251 - the point: a coroutine that blocks the loop
        block["end"] = time.time_ns()

    async def main() -> None:
        task = asyncio.create_task(watchdog.run())
        await asyncio.to_thread(systemd.wait_for, pings(3))
        await hog()
        await asyncio.to_thread(
            systemd.wait_for, lambda _got: any(t > block["end"] for t in systemd.pings())
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    watchdog.close()
    sent = systemd.pings()
    before = [t for t in sent if t < block["start"]]
    during = [t for t in sent if block["start"] <= t <= block["end"]]
    after = [t for t in sent if t > block["end"]]
    assert len(before) >= 3
    assert during == []  # a ping was due every 0.1 s of the 0.6 s block; none went out
    assert after
    assert (after[0] - block["end"]) / 1e9 < 0.1  # the overdue ping goes out first thing
    assert block["start"] - before[-1] < 0.2e9  # the pings ran up to the block


def test_pings_are_withheld_while_the_gateway_is_not_alive(systemd: Systemd) -> None:
    watchdog = watchdog_for(systemd, usec=100_000)  # a ping every 0.05 s
    sick = threading.Event()
    span: dict[str, int] = {}

    async def main() -> None:
        asked_while_sick = 0
        checked = asyncio.Event()

        def alive() -> bool:
            nonlocal asked_while_sick
            if sick.is_set():
                asked_while_sick += 1
                if asked_while_sick == 3:
                    checked.set()
            return not sick.is_set()

        task = asyncio.create_task(watchdog.run(alive=alive))
        await asyncio.to_thread(systemd.wait_for, pings(2))
        span["off"] = time.time_ns()
        sick.set()
        await checked.wait()  # three pings were due and the gateway said no to each
        sick.clear()
        span["on"] = time.time_ns()
        await asyncio.to_thread(
            systemd.wait_for, lambda _got: any(t > span["on"] for t in systemd.pings())
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    watchdog.close()
    sent = systemd.pings()
    assert [t for t in sent if span["off"] < t < span["on"]] == []
    assert any(t > span["on"] for t in sent)  # alive again: pinging again


def test_an_abstract_namespace_socket() -> None:
    name = f"openbranch-test-{uuid.uuid4().hex}"
    systemd = Systemd("\0" + name)
    try:
        watchdog = Watchdog(environ={"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "200000"}, pid=1)
        assert watchdog.address == "\0" + name

        async def main() -> None:
            task = asyncio.create_task(watchdog.run())
            watchdog.ready()
            await asyncio.to_thread(systemd.wait_for, pings(2))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        watchdog.close()
        assert "READY=1" in [payload for _, payload in systemd.received]
        assert len(systemd.pings()) >= 2
    finally:
        systemd.close()


def test_without_a_socket_every_call_is_a_no_op() -> None:
    watchdog = Watchdog(environ={"WATCHDOG_USEC": "200000"})
    assert not watchdog.enabled
    assert watchdog.notify("READY=1") is False
    watchdog.ready()
    watchdog.status("x")
    watchdog.stopping()
    watchdog.ping()
    asyncio.run(watchdog.run())  # returns at once: nobody to ping
    assert (watchdog.sent, watchdog.pings) == (0, 0)
    watchdog.close()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),  # WatchdogSec=30s: a ping every 15 s
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 15.0),  # ours
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another pid
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_the_interval_is_half_of_watchdog_usec_for_this_process(
    env: dict[str, str], interval: float | None
) -> None:
    watchdog = Watchdog(environ={"NOTIFY_SOCKET": "/run/systemd/notify", **env}, pid=4242)
    assert watchdog.interval == interval


def test_a_socket_nobody_listens_on_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watchdog = Watchdog(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="openbranch.edge.runtime.watchdog"):
        assert watchdog.notify("WATCHDOG=1") is False
        assert watchdog.notify("WATCHDOG=1") is False
    assert len(caplog.records) == 1
    assert "No such file or directory (dropped)" in caplog.text
    watchdog.close()
