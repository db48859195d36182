"""A gateway process on the soak's accelerated clock, and the soak's handle on it.

The child (``python -m bench.soaklib.gatewayproc CONFIG ...``) is ``openbranch gateway run``
with one difference: its clock is a ``ScaledClock`` that runs with the soak's world (the same
start instant and speed, on the machine's monotonic clock that every process shares), plus the
offset the soak has stepped it by. ``SIGUSR1`` makes it read ``<config>.clock`` (the offset
in seconds the soak wants now) and step its wall clock by the difference, the way NTP steps a
real one. It ignores SIGXFSZ, so a file-size limit is a failed write (as a full disk is), not
a dead process. Every alert and audit entry the gateway journals is written to a pipe first
(the gateway's own record, for the checker; a pipe, so no file-size limit cuts it).

The parent's ``GatewayProcess`` starts it, waits until its status file carries its pid, and
stops it with SIGTERM or SIGKILL; it sets its resource limits with ``prlimit`` and reads its
RSS and open descriptors from /proc.

A diagnostic: with ``OPENBRANCH_MEMLOG=<seconds>`` in its environment the child appends, every
that many seconds, a JSON line to ``<config>.mem``: its RSS and thread count (/proc), the
memory SQLite has allocated (``sqlite3_memory_used``, all connections of the process; its page
cache pages are counted in ``pagecache_overflow``, i.e. malloc'd) and glibc's ``mallinfo2``
(bytes the allocator holds from the system, in use, free), Python's allocated blocks and
objects tracked by its collector (every ten minutes by type). Read on the event loop, so the
probe adds no thread (a thread may bring its own malloc arena, which is what it looks at).
With ``OPENBRANCH_TRACEMALLOC=<frames>`` as well, Python's allocations are traced from the
child's start and a ``tracemalloc`` snapshot is dumped beside it every five minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import faulthandler
import gc
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.registry import default_registry, load_checked
from openbranch.edge.runtime.gateway import UNRECOVERED, Gateway, open_outbox
from openbranch.edge.runtime.statusfile import read_status
from openbranch.edge.telemetry.outbox import OutboxLocked

__all__ = ["GatewayProcess", "world_instant"]

ROOT = Path(__file__).resolve().parents[2]


def world_instant(start: datetime, mono0: float, speed: float, mono: float) -> datetime:
    """The world's instant at the machine's monotonic ``mono``."""
    return start + timedelta(seconds=(mono - mono0) * speed)


# -- the child -------------------------------------------------------------------------------


def _print_tasks(out: IO[str]) -> None:
    """A hung stop that still runs the loop: what each asyncio task awaits."""
    print(f"-- asyncio tasks at {datetime.now(UTC).isoformat()}", file=out)
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=out)
    out.flush()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _memlog(path: Path, every: float) -> None:
    """Append one memory sample to ``path`` now and every ``every`` seconds (the diagnostic
    of ``OPENBRANCH_MEMLOG``, see the module docstring)."""
    sqlite = ctypes.CDLL("libsqlite3.so.0")  # the library Python's sqlite3 module loaded
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()

    def sample() -> None:
        status = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        cur, high = ctypes.c_int64(), ctypes.c_int64()
        sqlite.sqlite3_status64(2, ctypes.byref(cur), ctypes.byref(high), 0)  # PAGECACHE_OVERFLOW
        info = libc.mallinfo2()
        row: dict[str, Any] = {
            "s": round(time.monotonic() - t0),
            "rss_kib": rss,
            "threads": len(os.listdir("/proc/self/task")),
            "sqlite_used": sqlite.sqlite3_memory_used(),
            "pagecache_overflow": cur.value,
            "malloc_system": info.arena,
            "malloc_mmapped": info.hblkhd,
            "malloc_in_use": info.uordblks,
            "malloc_free": info.fordblks,
            "py_blocks": sys.getallocatedblocks(),
            "gc_objects": len(gc.get_objects()),
        }
        if row["s"] % 600 < every:  # every ten minutes: the tracked objects by type
            row["types"] = Counter(type(o).__qualname__ for o in gc.get_objects())
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row) + "\n")
        if tracemalloc.is_tracing() and row["s"] % 300 < every:
            tracemalloc.take_snapshot().dump(f"{path}.{row['s']}.snapshot")
        loop.call_later(every, sample)

    sample()


def _child_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--start", required=True, help="the world's start instant (ISO)")
    parser.add_argument("--mono0", type=float, required=True)
    parser.add_argument("--speed", type=float, required=True)
    parser.add_argument("--offset", type=float, default=0.0, help="seconds the clock is off")
    parser.add_argument("--journal-fd", type=int, required=True)
    return parser.parse_args(argv)


def _child(argv: list[str]) -> int:
    args = _child_args(argv)
    if frames := os.environ.get("OPENBRANCH_TRACEMALLOC"):
        tracemalloc.start(int(frames))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # every thread's stack on SIGUSR2, into a file beside the config (a stop that hangs)
    stacks = Path(str(args.config) + ".stacks").open("a", encoding="utf-8")  # noqa: SIM115
    faulthandler.register(signal.SIGUSR2, file=stacks, all_threads=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    config = load_checked(args.config)
    start = datetime.fromisoformat(args.start)
    now = world_instant(start, args.mono0, args.speed, time.monotonic())
    clock = ScaledClock(start=now + timedelta(seconds=args.offset), speed=args.speed)
    offset = [args.offset]
    try:
        outbox = open_outbox(config)
    except OutboxLocked as exc:
        print(f"not started: {exc}", file=sys.stderr)
        return 1
    gateway = Gateway(config=config, registry=default_registry(), clock=clock, outbox=outbox)
    for drainer in gateway.drainers:
        # A drainer backs off in real seconds (1 s doubling to 60 s); on the accelerated clock
        # that would be hours of the branch's time (60 s is 12 h at 720x) and the bound would
        # drop what a real branch never would. The soak keeps the same times in branch time.
        drainer.backoff_min = max(0.02, drainer.backoff_min / args.speed)
        drainer.backoff_max = max(0.1, drainer.backoff_max / args.speed)
    # a pipe, not a file: a file-size limit (the disk-full fault) must not cut the record
    journal: IO[str] = os.fdopen(args.journal_fd, "w", encoding="utf-8")

    def journaled(kind: str, message: str) -> None:
        stamp = int(clock.now().timestamp() * 1e9)
        journal.write(json.dumps([stamp, kind, message, os.getpid()]) + "\n")
        journal.flush()

    gateway.journal.listeners.append(journaled)

    def step() -> None:
        with contextlib.suppress(OSError, ValueError):
            wanted = float(Path(str(args.config) + ".clock").read_text(encoding="utf-8"))
            clock.step(timedelta(seconds=wanted - offset[0]))
            logging.getLogger(__name__).warning("wall clock stepped by %+.0f s", wanted - offset[0])
            offset[0] = wanted

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, step)
        loop.add_signal_handler(signal.SIGHUP, _print_tasks, stacks)
        if memlog := os.environ.get("OPENBRANCH_MEMLOG"):
            _memlog(Path(str(args.config) + ".mem"), float(memlog))
        await gateway.run(stop)

    try:
        asyncio.run(main())
    finally:
        outbox.close()
        journal.close()
    print(f"stopped: {gateway.committer.accepted} readings accepted", flush=True)
    return 0


# -- the parent's handle ---------------------------------------------------------------------


class GatewayProcess:
    """One gateway process at a time on ``config``; ``start`` again after a stop or a kill.

    Its output goes to ``log`` and its journal into ``journaled`` (stamp in gateway time,
    kind, message, pid), each through a pipe read by a thread of ours."""

    def __init__(
        self,
        *,
        config: Path,
        store: Path,
        start: datetime,
        mono0: float,
        speed: float,
        log: Path,
    ) -> None:
        self.config = config
        self.store = store
        self.start_instant = start
        self.mono0 = mono0
        self.speed = speed
        self.log = log
        self.offset = 0.0  # seconds the gateway's wall clock is off the world's
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.journaled: list[tuple[int, str, str, int]] = []
        self.problems: list[str] = []
        self.store_losses: list[str] = []  # store_lost alerts (the store's files are kept)
        self._readers: list[threading.Thread] = []

    @property
    def _clock_file(self) -> Path:
        return Path(str(self.config) + ".clock")

    @property
    def pid(self) -> int | None:
        return None if self.proc is None or self.proc.poll() is not None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, *, within: float = 60.0) -> None:
        assert not self.running, "one gateway per store"
        self._clock_file.write_text(f"{self.offset}", encoding="utf-8")
        read_end, write_end = os.pipe()
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.soaklib.gatewayproc", str(self.config)),
                *("--start", self.start_instant.isoformat(), "--mono0", repr(self.mono0)),
                *("--speed", repr(self.speed), "--offset", repr(self.offset)),
                *("--journal-fd", str(write_end)),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        assert self.proc.stdout is not None
        self._readers = [
            threading.Thread(target=self._copy_log, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._read_journal, args=(read_end,), daemon=True),
        ]
        for thread in self._readers:
            thread.start()
        self.starts += 1
        deadline = time.monotonic() + within
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited at start: see {self.log}")
            with contextlib.suppress(ValueError, OSError):
                status = read_status(self.store)
                if status is not None and status.get("pid") == self.proc.pid:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start within {within:g} s: {self.log}")
            time.sleep(0.02)

    def _copy_log(self, stream: IO[bytes]) -> None:
        with self.log.open("ab") as out:
            for line in stream:
                out.write(line)
                out.flush()

    def _read_journal(self, fd: int) -> None:
        with os.fdopen(fd, "r", encoding="utf-8") as stream:
            for line in stream:
                with contextlib.suppress(ValueError):
                    stamp, kind, message, pid = json.loads(line)
                    self.journaled.append((int(stamp), str(kind), str(message), int(pid)))
                    if kind == f"alert {schema.STORE_LOST}" and message.startswith("RAISED"):
                        self._keep_store(message)

    def _keep_store(self, message: str) -> None:
        """The store lost committed entries: its files as they are now, for a look after the
        run (the run goes on, and its store with it). What the gateway could not commit again
        is a problem; the rest the checker judges (an entry committed again is accepted)."""
        self.store_losses.append(message)
        kept = self.log.parent / f"store-lost-{len(self.store_losses)}"
        kept.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                shutil.copy2(f"{self.store}{suffix}", kept)
        if UNRECOVERED in message:
            self.problems.append(f"the gateway raised {schema.STORE_LOST} ({message}): {kept}")

    def _reaped(self) -> None:
        for thread in self._readers:
            thread.join(10)

    def stop(self, *, within: float = 60.0) -> int:
        """SIGTERM, and wait for a clean stop; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(within)
        except subprocess.TimeoutExpired:  # a hung stop: its stacks for the report, then kill
            self.proc.send_signal(signal.SIGHUP)  # the asyncio tasks (if the loop still runs)
            time.sleep(1)
            self.proc.send_signal(signal.SIGUSR2)  # every thread
            time.sleep(2)
            self.proc.kill()
            self.proc.wait()
            self.problems.append(
                f"the gateway did not stop within {within:g} s of SIGTERM; killed (its threads' "
                f"stacks: {self.config}.stacks)"
            )
            code = -9
        self._reaped()
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._reaped()

    def step(self, offset: float) -> None:
        """Set the gateway's wall clock ``offset`` seconds off the world's (SIGUSR1)."""
        self.offset = offset
        self._clock_file.write_text(f"{offset}", encoding="utf-8")
        if self.proc is not None and self.running:
            self.proc.send_signal(signal.SIGUSR1)

    def limit(self, which: int, soft: int) -> tuple[int, int]:
        """Set a resource limit of the running gateway; returns the one it had."""
        assert self.pid is not None
        old = resource.prlimit(self.pid, which)
        resource.prlimit(self.pid, which, (soft, old[1]))
        return old

    def restore(self, which: int, old: tuple[int, int]) -> None:
        if self.pid is not None:
            resource.prlimit(self.pid, which, old)

    def usage(self) -> tuple[int, int] | None:
        """(RSS bytes, open descriptors) of the running gateway, or None."""
        pid = self.pid
        if pid is None:
            return None
        try:
            status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return None
        kib = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), 0)
        return int(kib) * 1024, fds

    def status(self) -> dict[str, Any] | None:
        with contextlib.suppress(ValueError, OSError):
            return read_status(self.store)
        return None


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
