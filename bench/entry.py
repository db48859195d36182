"""Self-service entry: card-to-unlock latency and admissions per second, with the library
system's SIP2 server on loopback.

The path measured is the gateway's own: a presentation handed to the entry desk as a reader
hands it (``EntryDesk.deliver``) -> the desk's queue -> lockout and the branch's gate -> the
SIP2 client (``Sip2LibrarySystem`` built by the registry: login, 63 with the PIN, AY/AZ
checksums, one connection) -> pysip2's ACS (a third-party SIP2 server, in a process of its own,
answering from the tests' patron table) -> the admission policy -> the allow-list (SQLite) ->
the unlock command handed to the door's driver; each decision's audit entry is committed to a
real local store (SQLite, synchronous=FULL) on the way. The one stand-in is the door's driver:
it notes the time it gets the unlock command (the Modbus or MQTT write after it is the
integrations' own, measured by their benches).

Two runs, printed as figures:

- paced: ``--rate`` presentations a second (default 10) for ``--seconds`` (default 20), from
  two readers: card-to-unlock p50, p99 and max (queueing included); target p99 < 300 ms;
- burst: ``--burst`` presentations at once (default 400, spread over 8 readers): admissions a
  second that one gateway sustains (one desk answers in order, as SIP2's one connection does).

    .venv/bin/python bench/entry.py [--rate 10] [--seconds 20] [--burst 400]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the ACS and its patrons are the tests'
    sys.path.insert(0, str(ROOT))

from openbranch.edge.core.admission import EntryConfig, Presentation  # noqa: E402
from openbranch.edge.core.clock import SystemClock  # noqa: E402
from openbranch.edge.core.command import Command  # noqa: E402
from openbranch.edge.core.config import Sip2Config  # noqa: E402
from openbranch.edge.core.privacy import pseudonym  # noqa: E402
from openbranch.edge.core.registry import default_registry  # noqa: E402
from openbranch.edge.core.schedule import Mode  # noqa: E402
from openbranch.edge.runtime.allowlist import AllowList, entry_key  # noqa: E402
from openbranch.edge.runtime.entry import BranchView, EntryDesk  # noqa: E402
from openbranch.edge.runtime.journal import Journal  # noqa: E402
from openbranch.edge.telemetry.outbox import Outbox  # noqa: E402
from tests.integrations.sip2.acs import (  # noqa: E402
    INSTITUTION,
    LOGIN_PASSWORD,
    LOGIN_USER,
    AcsProcess,
)

CARD, PIN = "2200000000017", "1234"  # a patron in good standing in the ACS's table


class Door:
    """The door's driver as the desk sees it: notes when each unlock command arrives."""

    def __init__(self, device_id: str, *, expected: int) -> None:
        self.device_id = device_id
        self.unlocked: list[float] = []
        self.expected = expected
        self.all_unlocked = asyncio.Event()

    async def write(self, command: Command) -> object:
        if command.value is True:
            self.unlocked.append(time.perf_counter())
            if len(self.unlocked) >= self.expected:
                self.all_unlocked.set()
        return command.value


def _config(readers: int) -> EntryConfig:
    return EntryConfig.model_validate(
        {
            "readers": [
                {"reader": f"reader-{i}", "door": "door", "unlock_point": "lock_relay"}
                for i in range(readers)
            ],
            "offline": {"policy": "recently_admitted", "days": 14},
            "unlock_s": 1.0,
            "lookup_timeout_s": 3.0,
            "queue": 1000,
        }
    )


async def _run(folder: Path, port: int, args: argparse.Namespace) -> None:
    (folder / "user").write_text(LOGIN_USER)
    (folder / "password").write_text(LOGIN_PASSWORD)
    sip2 = Sip2Config.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "institution_id": INSTITUTION,
            "login_user": {"file": str(folder / "user")},
            "login_password": {"file": str(folder / "password")},
        }
    )
    library = default_registry().library_system(sip2)
    clock = SystemClock()
    store = folder / "outbox.db"
    key = entry_key(store)
    allow = AllowList.beside(store, days=14, clock=clock)
    with Outbox(store) as outbox:
        journal = Journal(
            branch="bench",
            clock=clock,
            record=lambda readings: outbox.append(readings, audit=True),
            publish_own=lambda _readings: None,
        )

        async def measure(readers: int, plan: list[float]) -> tuple[list[float], float]:
            """Deliver one presentation at each offset of ``plan`` (seconds from now), in
            turn over ``readers``; returns each card-to-unlock latency and the span."""
            door = Door("door", expected=len(plan))
            desk = EntryDesk(
                branch="bench",
                config=_config(readers),
                readers={},
                doors={"door": door},  # type: ignore[dict-item]
                library=library,
                allow_list=allow,
                pseudonym=lambda card: pseudonym(key, card),
                view=lambda: BranchView(
                    mode=Mode.SELF_SERVICE,
                    present=0,
                    closes_at=None,
                    today=datetime.now(UTC).date(),
                ),
                clock=clock,
                journal=journal,
                record=outbox.append,
            )
            task = asyncio.ensure_future(desk.run())
            sent: list[float] = []
            start = time.perf_counter()
            for i, offset in enumerate(plan):
                wait = start + offset - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                sent.append(time.perf_counter())
                desk.deliver(Presentation(reader=f"reader-{i % readers}", card=CARD, pin=PIN))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    await door.all_unlocked.wait()
            span = time.perf_counter() - start
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            refused = [d for _, d in desk.decisions if not d.admit]
            assert not refused, f"refused: {refused[:3]}"
            assert len(door.unlocked) == len(plan), f"{len(door.unlocked)} of {len(plan)}"
            return [u - s for s, u in zip(sent, door.unlocked, strict=True)], span

        await measure(1, [0.0] * 5)  # connect, log in, warm up
        paced, _ = await measure(2, [i / args.rate for i in range(int(args.rate * args.seconds))])
        paced_ms = sorted(x * 1000 for x in paced)
        p99 = paced_ms[math.ceil(len(paced_ms) * 0.99) - 1]  # nearest rank
        print(
            f"paced {args.rate:g}/s for {args.seconds:g} s ({len(paced_ms)} admissions): "
            f"card-to-unlock p50 {statistics.median(paced_ms):.1f} ms, p99 {p99:.1f} ms, "
            f"max {paced_ms[-1]:.1f} ms (target p99 < 300 ms: "
            f"{'met' if p99 < 300 else 'NOT met'})"
        )
        burst, span = await measure(8, [0.0] * args.burst)
        print(
            f"burst of {args.burst}: {args.burst / span:.0f} admissions/s sustained "
            f"({span:.2f} s; last card waited {max(burst) * 1000:.0f} ms)"
        )
    allow.close()
    await library.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=400)
    args = parser.parse_args()
    acs = AcsProcess()
    port = acs.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-entry-") as folder:
            asyncio.run(_run(Path(folder), port, args))
    finally:
        acs.stop()


if __name__ == "__main__":
    main()
