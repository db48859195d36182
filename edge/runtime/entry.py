"""The entry desk: a card at a reader -> the library system -> the policy -> the door.

Each presentation from a reader (``CardReader``) waits in one bounded queue; one worker
answers them in order:

1. lockout: a card or a reader with too many wrong PINs lately is refused at once
   (``locked_out``), without asking the library system: a PIN cannot be guessed through us;
2. the branch (``gate``): closed, staffed, the last minutes before closing, the cap;
3. the library system (``lookup``, at most ``lookup_timeout_s``); when it does not answer,
   the offline policy: ``refuse_all`` (``offline``) or ``recently_admitted`` (the allow-list:
   cards admitted online within its days, ``offline_admitted``); ``library_system_down`` is
   raised until it answers again;
4. the policy (``decide``); on admit the door's unlock point gets a pulse (two ``Command``\\ s
   that expire with it: a late unlock is never carried out), the allow-list remembers the
   card; the reader shows the answer (Danish and English).

Every decision is audited with the card's pseudonym only (``pseudonym``, keyed), the reader,
the decision and the reason, and counted in the ``admission`` measurement per hour and mode.
Card numbers and PINs are never logged, audited, published or stored.

Abuse: ``lockout.attempts`` wrong PINs on one card, or ``lockout.reader_attempts`` wrong PINs
and unknown cards on one reader, within ``lockout.within_s`` lock that card (or reader) for
``lockout.lock_s``; a locked reader raises ``entry_lockout:<reader>`` until its lock is over. A
reader that floods: the queue holds ``queue`` presentations and each reader at most its share;
more are dropped, counted, and ``entry_flood`` is raised until a tick of the desk finds the
queue empty with nothing dropped since the tick before.

Tailgating: each admission is a credit at its door for ``tailgating.window_s``; each person
the door's people counter counts in while cards are needed takes one. A person with no
credit left raises ``tailgating:<door>`` (severity from the config), cleared after a window
with no other.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from openbranch.edge.core import schema
from openbranch.edge.core.admission import (
    ENTRY_AUDIT,
    LOCKOUT_AUDIT,
    CardReader,
    Decision,
    EntryConfig,
    LibrarySystem,
    LibrarySystemUnavailable,
    OfflineAllowList,
    Presentation,
    ReaderLink,
    ReaderMessage,
    Reason,
)
from openbranch.edge.core.aio import cancel_and_wait
from openbranch.edge.core.clock import Clock
from openbranch.edge.core.command import Command, CommandError
from openbranch.edge.core.device import DeviceError, DeviceSource
from openbranch.edge.core.reading import Reading, Value
from openbranch.edge.core.schedule import Mode
from openbranch.edge.hours.admission import decide, gate
from openbranch.edge.hours.calendar import Override
from openbranch.edge.runtime.engine_runner import EngineRunner
from openbranch.edge.runtime.journal import Journal

__all__ = [
    "COUNTS_STATE",
    "BranchView",
    "EntryDesk",
    "Lockout",
    "branch_view",
    "card_readers",
    "mode_by_calendar",
]

log = logging.getLogger(__name__)

_OPEN = (Mode.STAFFED, Mode.SELF_SERVICE)  # the branch is not closing while it goes on open
COUNTS_STATE = "admission_counts"  # outbox state: this hour's counts per mode, as JSON
RETENTION_ALERT = "entry_retention"  # raised while old entry records cannot be deleted
HOUSEKEEPING_EVERY = 3600.0  # seconds of clock time between purges of old entry records
#: Refusals that say the card itself may not enter: the allow-list forgets it.
_PATRON_REFUSED = frozenset(
    {
        Reason.NOT_A_PATRON,
        Reason.CARD_LOST,
        Reason.CHARGE_DENIED,
        Reason.TOO_MANY_OVERDUE,
        Reason.FEES,
        Reason.UNDER_AGE,
        Reason.AGE_UNKNOWN,
        Reason.CATEGORY,
    }
)


@dataclass(frozen=True, slots=True)
class BranchView:
    """What the entry desk needs to know about the branch now."""

    mode: Mode
    present: int | None  # people inside; None when the counters cannot say
    closes_at: datetime | None  # when the current mode ends (within a day)
    today: date  # the branch's local date


def branch_view(
    *, engine: EngineRunner, overrides: Callable[[datetime], Sequence[Override]], clock: Clock
) -> Callable[[], BranchView]:
    """The branch as the engine last decided it (closed until its first step), with the
    calendar's next change of mode and the people counters' count."""

    def view() -> BranchView:
        now = clock.now()
        last = engine.last_decision
        mode = Mode.CLOSED if last is None else last.mode
        calendar = engine.engine.calendar
        changes = calendar.transitions(now, now + timedelta(days=1), overrides(now))
        closes_at = next((t.at for t in changes if t.mode_to not in _OPEN), None)
        today = now.astimezone(calendar.tz).date()
        return BranchView(mode, engine.inputs().present, closes_at, today)

    return view


def mode_by_calendar(
    *, engine: EngineRunner, overrides: Callable[[datetime], Sequence[Override]]
) -> Callable[[datetime], Mode]:
    """The branch's mode at an instant by its calendar and overrides (a reading's time)."""

    def mode_at(instant: datetime) -> Mode:
        return engine.engine.calendar.mode_at(instant, overrides(instant)).mode

    return mode_at


def card_readers(config: EntryConfig, sources: Mapping[str, object]) -> dict[str, CardReader]:
    """The sources of ``config``'s readers; ValueError for one that is not a card reader."""
    readers = {}
    for link in config.readers:
        source = sources.get(link.reader)
        if not isinstance(source, CardReader):
            raise ValueError(
                f"entry: device {link.reader!r} is not a card reader (its profile has no reader)"
            )
        readers[link.reader] = source
    return readers


class Lockout:
    """Wrong PINs per key (a card's pseudonym, a reader): ``limit`` within ``within`` seconds
    lock the key for ``lock`` seconds (on the clock's monotonic time)."""

    def __init__(self, *, limit: int, within: float, lock: float) -> None:
        self._limit, self._within, self._lock = limit, within, lock
        self._wrong: dict[str, deque[float]] = {}
        self._until: dict[str, float] = {}

    def locked(self, key: str, now: float) -> bool:
        until = self._until.get(key)
        if until is not None and now >= until:
            del self._until[key]
            return False
        return until is not None

    def wrong(self, key: str, now: float) -> bool:
        """Count a wrong PIN; True when it locks the key."""
        times = self._wrong.setdefault(key, deque())
        times.append(now)
        while times and times[0] <= now - self._within:
            times.popleft()
        if len(times) >= self._limit:
            self._until[key] = now + self._lock
            del self._wrong[key]
            return True
        return False

    def forget(self, now: float) -> None:
        """Drop what is over (the maps stay as small as the recent wrong PINs)."""
        for key in [k for k, t in self._wrong.items() if not t or t[-1] <= now - self._within]:
            del self._wrong[key]
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]


@dataclass(slots=True)
class _Door:
    """Tailgating at one door: admission credits and the counter's last total."""

    credits: deque[float]  # monotonic expiry of each admission not yet matched
    entered: int | None = None
    alerting: bool = False
    last_unmatched: float = 0.0


class EntryDesk:
    def __init__(
        self,
        *,
        branch: str,
        config: EntryConfig,
        readers: Mapping[str, CardReader],
        doors: Mapping[str, DeviceSource],
        library: LibrarySystem | None,
        allow_list: OfflineAllowList | None,
        pseudonym: Callable[[str], str],
        view: Callable[[], BranchView],
        clock: Clock,
        journal: Journal,
        record: Callable[[Sequence[Reading]], None],
        load: Callable[[str], str | None] = lambda _key: None,
        save: Callable[[str, str], None] = lambda _key, _value: None,
        occupancy_cap: int | None = None,
        housekeeping: Callable[[], object] = lambda: None,
        mode_at: Callable[[datetime], Mode] | None = None,
    ) -> None:
        """``occupancy_cap``: the cap where the rules give none (the closing policy's);
        ``housekeeping``: deletes what is past retention (run in a thread, hourly);
        ``mode_at``: the mode at a counter reading's time (default: the view's mode now)."""
        self._branch = branch
        if config.rules.occupancy_cap is None and occupancy_cap is not None:
            rules = config.rules.model_copy(update={"occupancy_cap": occupancy_cap})
            config = config.model_copy(update={"rules": rules})
        self.config = config
        self._readers = readers
        self._doors = doors
        self._library = library
        self._allow = allow_list
        self._pseudonym = pseudonym
        self._view = view
        self._clock = clock
        self._journal = journal
        self._record = record
        self._save = save
        self._links = {link.reader: link for link in config.readers}
        self._queue: asyncio.Queue[Presentation] = asyncio.Queue(maxsize=config.queue)
        self._share = max(1, config.queue // max(1, len(config.readers)))
        self._waiting: dict[str, int] = {}  # reader -> presentations in the queue
        self.dropped = 0  # presentations dropped by the bound (counted, alerted)
        self._dropped_seen = 0  # ``dropped`` at the last tick
        self._housekeeping = housekeeping
        self._locked_readers: set[str] = set()  # readers whose entry_lockout is raised
        self._mode_at = mode_at or (lambda _t: self._view().mode)
        self._flooding = False
        self._offline = False
        lock = config.lockout
        self._cards = Lockout(limit=lock.attempts, within=lock.within_s, lock=lock.lock_s)
        self._by_reader = Lockout(
            limit=lock.reader_attempts, within=lock.within_s, lock=lock.lock_s
        )
        self._counters = {
            link.counter: link.door for link in config.readers if link.counter is not None
        }
        self._tailgate = {door: _Door(deque()) for door in self._counters.values()}
        self._relock: dict[str, asyncio.Task[None]] = {}
        raw = load(COUNTS_STATE)
        self._hour: str | None = None
        self._counts: dict[str, list[int]] = {}  # mode -> [admitted, refused], this hour
        if raw:
            stored = json.loads(raw)
            self._hour, self._counts = stored["hour"], stored["counts"]
        self.decisions: list[tuple[str, Decision]] = []  # (reader, decision), latest last
        #: hear each decision (reader, decision), such as the demo's visitors at the door
        self.listeners: list[Callable[[str, Decision], None]] = []

    # --- intake ------------------------------------------------------------------------------

    def deliver(self, presentation: Presentation) -> None:
        """A presentation from a reader (on the event loop); never blocks, never raises."""
        reader = presentation.reader
        if self._waiting.get(reader, 0) >= self._share or self._queue.full():
            self.dropped += 1
            if not self._flooding:
                self._flooding = True
                self._journal.alert(
                    schema.ENTRY_FLOOD,
                    f"{reader}: more cards presented than the gateway answers; dropped "
                    "(counted) until the queue is empty",
                    severity="warning",
                    active=True,
                )
            return
        self._waiting[reader] = self._waiting.get(reader, 0) + 1
        self._queue.put_nowait(presentation)

    async def run(self) -> None:
        """Read every reader, answer the queue, and clear what is over, until cancelled."""
        async with asyncio.TaskGroup() as group:
            for reader_id, reader in self._readers.items():
                group.create_task(reader.presentations(self.deliver), name=f"reader:{reader_id}")
            group.create_task(self._answer(), name="entry-answers")
            group.create_task(self._tick(), name="entry-tick")

    async def _answer(self) -> None:
        while True:
            presentation = await self._queue.get()
            self._waiting[presentation.reader] -= 1
            try:
                await self.handle(presentation)
            except Exception:  # one presentation's failure costs only itself
                log.exception("entry: a presentation at %s failed", presentation.reader)

    async def _tick(self) -> None:
        every = min(self.config.tailgating.window_s, 60.0)
        kept = self._clock.monotonic() - HOUSEKEEPING_EVERY  # the first tick keeps house
        while True:
            await self._clock.sleep(every)
            now = self._clock.monotonic()
            if now - kept >= HOUSEKEEPING_EVERY:
                kept = now
                await self._keep_house()
            self._unlock_readers(now)
            self._cards.forget(now)
            self._by_reader.forget(now)
            self._clear_tailgating(now)
            self._clear_flood()

    async def _keep_house(self) -> None:
        """Delete what is past retention; a failure is an alert (personal data kept too long
        is a fault a person must see)."""
        try:
            await asyncio.to_thread(self._housekeeping)
        except Exception as exc:
            log.exception("entry: deleting old entry records failed")
            self._journal.alert(
                RETENTION_ALERT,
                f"entry records past {self.config.retention_days} days not deleted: {exc}",
                severity="warning",
                active=True,
            )
            return
        if RETENTION_ALERT in self._journal.active:
            self._journal.alert(
                RETENTION_ALERT, "old entry records deleted again", severity="info", active=False
            )

    def _clear_flood(self) -> None:
        """Cleared once a tick passed with the queue empty and nothing dropped (a flood in
        bursts stays one alert, not one per burst)."""
        if self._flooding and self._queue.empty() and self.dropped == self._dropped_seen:
            self._flooding = False
            self._journal.alert(
                schema.ENTRY_FLOOD,
                f"the queue is empty again; {self.dropped} presentations dropped in all",
                severity="info",
                active=False,
            )
        self._dropped_seen = self.dropped

    # --- one presentation ----------------------------------------------------------------

    async def handle(self, presentation: Presentation) -> Decision:
        """Decide on one presentation, act on it, and tell the reader."""
        card, reader = presentation.card, presentation.reader
        who = self._pseudonym(card)
        view = self._view()
        mono = self._clock.monotonic()
        decision = gate(
            view.mode,
            self.config.rules,
            now=self._clock.now(),
            occupancy=view.present,
            closes_at=view.closes_at,
        )
        if decision is None and (
            self._cards.locked(who, mono) or self._by_reader.locked(reader, mono)
        ):
            decision = Decision(admit=False, reason=Reason.LOCKED_OUT)
        if decision is None:
            decision = await self._ask(presentation, view)
        await self._act(presentation, who, view.mode, decision)
        if decision.reason in (Reason.WRONG_PIN, Reason.NOT_A_PATRON):
            self._wrong(who, reader, mono, pin=decision.reason is Reason.WRONG_PIN)
        return decision

    async def _ask(self, presentation: Presentation, view: BranchView) -> Decision:
        """The library system's answer through the policy, or the offline policy's."""
        try:
            if self._library is None:
                raise LibrarySystemUnavailable("no library system configured")
            async with asyncio.timeout(self.config.lookup_timeout_s):  # real seconds: I/O
                patron = await self._library.lookup(presentation.card, presentation.pin)
        except (LibrarySystemUnavailable, TimeoutError) as exc:
            self._library_down(str(exc) or "no answer in time")
            return self._offline_decision(presentation.card)
        self._library_up()
        decision = decide(
            view.mode,
            patron,
            self.config.rules,
            now=self._clock.now(),
            today=view.today,
            occupancy=view.present,
            closes_at=view.closes_at,
            pin_given=presentation.pin is not None,
        )
        if self._allow is not None:
            if decision.admit:
                self._allow.remember(presentation.card)
            elif decision.reason in _PATRON_REFUSED:
                self._allow.forget(presentation.card)
        return decision

    def _offline_decision(self, card: str) -> Decision:
        if (
            self.config.offline.policy == "recently_admitted"
            and self._allow is not None
            and self._allow.admit_offline(card)
        ):
            return Decision(admit=True, reason=Reason.OFFLINE_ADMITTED)
        return Decision(admit=False, reason=Reason.OFFLINE)

    def _library_down(self, why: str) -> None:
        if not self._offline:
            self._offline = True
            policy = self.config.offline.policy
            self._journal.alert(
                schema.LIBRARY_SYSTEM_DOWN,
                f"the library system does not answer ({why}); offline policy: {policy}",
                severity="critical" if policy == "refuse_all" else "warning",
                active=True,
            )

    def _library_up(self) -> None:
        if self._offline:
            self._offline = False
            self._journal.alert(
                schema.LIBRARY_SYSTEM_DOWN,
                "the library system answers again",
                severity="info",
                active=False,
            )

    def _wrong(self, who: str, reader: str, mono: float, *, pin: bool) -> None:
        """A wrong PIN counts for the card and the reader; an unknown card for the reader
        (card numbers tried one after another)."""
        lock = self.config.lockout
        if pin and self._cards.wrong(who, mono):
            self._journal.audit(
                LOCKOUT_AUDIT,
                f"card {who} locked for {lock.lock_s:g} s after {lock.attempts} wrong PINs "
                f"within {lock.within_s:g} s",
            )
        if self._by_reader.wrong(reader, mono):
            self._locked_readers.add(reader)
            self._journal.alert(
                f"entry_lockout:{reader}",
                f"{reader} locked for {lock.lock_s:g} s after {lock.reader_attempts} wrong "
                f"PINs or unknown cards within {lock.within_s:g} s (someone may be guessing)",
                severity="warning",
                active=True,
            )

    def _unlock_readers(self, now: float) -> None:
        for reader in sorted(self._locked_readers):
            if not self._by_reader.locked(reader, now):
                self._locked_readers.discard(reader)
                self._journal.alert(
                    f"entry_lockout:{reader}",
                    f"{reader} takes cards again",
                    severity="info",
                    active=False,
                )

    async def _act(self, presentation: Presentation, who: str, mode: Mode, d: Decision) -> None:
        reader = presentation.reader
        link = self._links.get(reader)
        if d.admit and link is not None and d.reason is not Reason.STAFFED:
            await self._unlock(link, who)
            self._credit(link.door)
        verdict = "admitted" if d.admit else "refused"
        self._journal.audit(ENTRY_AUDIT, f"{reader}: card {who} {verdict} ({d.reason.value})")
        self._count(mode, d.admit)
        self.decisions.append((reader, d))
        del self.decisions[:-100]
        for listener in self.listeners:
            try:
                listener(reader, d)
            except Exception:  # a listener costs only itself
                log.exception("entry: a decision listener failed")
        source = self._readers.get(reader)
        if source is not None:
            try:
                source.show(ReaderMessage.of(d, self._clock.now()))
            except Exception:
                log.exception("entry: %s could not be told the answer", reader)

    # --- the door ------------------------------------------------------------------------

    async def _unlock(self, link: ReaderLink, who: str) -> None:
        """The unlock pulse: ``unlock_value`` now, ``relock_value`` after ``unlock_s`` (a new
        admission during the pulse starts it again)."""
        running = self._relock.pop(link.door, None)
        if running is not None:
            running.cancel()
        if await self._write(link, link.unlock_value, f"admitted card {who}"):
            self._relock[link.door] = asyncio.ensure_future(self._relock_later(link))

    async def _relock_later(self, link: ReaderLink) -> None:
        await self._clock.sleep(self.config.unlock_s)
        await self._write(link, link.relock_value, "end of the unlock pulse")

    async def _write(self, link: ReaderLink, value: Value, reason: str) -> bool:
        now = self._clock.now()
        where = f"{link.door}.{link.unlock_point}"
        command = Command(
            device=link.door,
            point=link.unlock_point,
            value=value,
            reason=reason,
            who="entry",
            issued_at=now,
            expires_at=now + timedelta(seconds=self.config.unlock_s),
        )
        source = self._doors.get(link.door)
        try:
            if source is None:
                raise DeviceError(f"no device {link.door!r}")
            await source.write(command)
        except (DeviceError, CommandError) as exc:
            self._journal.alert(
                f"unlock:{link.door}",
                f"{where} := {value!r} failed ({reason}): {exc}",
                severity="critical",
                active=True,
            )
            return False
        self._journal.audit("command", f"{where} := {value!r} ({reason})")
        if f"unlock:{link.door}" in self._journal.active:
            self._journal.alert(
                f"unlock:{link.door}", f"{where} follows again", severity="info", active=False
            )
        return True

    # --- tailgating ----------------------------------------------------------------------

    def _credit(self, door: str) -> None:
        if door in self._tailgate:
            expires = self._clock.monotonic() + self.config.tailgating.window_s
            self._tailgate[door].credits.append(expires)

    def observe(self, readings: Sequence[Reading]) -> None:
        """Committed readings: the people counters' totals at each door."""
        for r in readings:
            door = self._counters.get(r.device)
            value = r.fields.get(schema.OCCUPANCY_ENTERED.key)
            if door is None or r.measurement is not schema.OCCUPANCY or value is None:
                continue
            self._entered(door, int(value), r.time)

    def _entered(self, door: str, total: int, at: datetime) -> None:
        state = self._tailgate[door]
        before, state.entered = state.entered, total
        if before is None or total <= before:
            return  # the first total, or the counter's own reset
        if self._mode_at(at) not in self.config.rules.modes:
            return  # no card was needed when they came (staffed): nobody tailgates
        now = self._clock.monotonic()
        while state.credits and state.credits[0] <= now:
            state.credits.popleft()
        unmatched = 0
        for _ in range(total - before):
            if state.credits:
                state.credits.popleft()
            else:
                unmatched += 1
        if unmatched <= self.config.tailgating.tolerance:
            return
        state.last_unmatched = now
        window = self.config.tailgating.window_s
        self._journal.audit(
            "tailgating", f"{door}: {unmatched} in without an admission within {window:g} s"
        )
        if not state.alerting:
            state.alerting = True
            self._journal.alert(
                f"{schema.TAILGATING}:{door}",
                f"{door}: {unmatched} more {'person' if unmatched == 1 else 'people'} came in "
                "than cards admitted",
                severity=self.config.tailgating.severity,
                active=True,
            )

    def _clear_tailgating(self, now: float) -> None:
        window = self.config.tailgating.window_s
        for door, state in self._tailgate.items():
            if state.alerting and now - state.last_unmatched >= window:
                state.alerting = False
                self._journal.alert(
                    f"{schema.TAILGATING}:{door}",
                    f"{door}: nobody without an admission for {window:g} s",
                    severity="info",
                    active=False,
                )

    # --- numbers -------------------------------------------------------------------------

    def _count(self, mode: Mode, admitted: bool) -> None:
        """This hour's count for ``mode`` goes up and is written again (same time, tags)."""
        hour = self._clock.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        key = hour.isoformat()
        if key != self._hour:
            self._hour, self._counts = key, {}
        counts = self._counts.setdefault(mode.value, [0, 0])
        counts[0 if admitted else 1] += 1
        self._save(COUNTS_STATE, json.dumps({"hour": self._hour, "counts": self._counts}))
        self._record(
            [
                Reading(
                    branch=self._branch,
                    device=schema.GATEWAY_DEVICE,
                    measurement=schema.ADMISSION,
                    fields={
                        schema.ADMISSION_ADMITTED.key: counts[0],
                        schema.ADMISSION_REFUSED.key: counts[1],
                    },
                    tags={schema.Tag.MODE.value: mode.value},
                    time=hour,
                )
            ]
        )

    async def close(self) -> None:
        """Relock every door whose pulse is running (a stop never leaves one open)."""
        for door, task in list(self._relock.items()):
            if task.done():
                continue
            await cancel_and_wait((task,))
            link = next(link for link in self.config.readers if link.door == door)
            await self._write(link, link.relock_value, "the gateway stops")
        self._relock.clear()
