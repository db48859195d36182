"""The invariants of an unattended month, as code (issue 14).

``check(run)`` takes a run's record and returns every violation with its reason; an empty
list is the claim. The record (``Run``) holds:

- what the devices produced, in their own record: ``Pushed`` (an MQTT message the broker
  acknowledged; each carries a value no other message of its device carries) and ``Answered``
  (a Modbus poll the device answered);
- every entry the gateway accepted (committed to its outbox), in commit order (``Accepted``);
- what each InfluxDB sink holds (``SinkContent``; ``InfluxContent`` queries a real server
  through the ``influxdb`` library) and the outbox's drop counter;
- what the gateway journaled (every alert and audit entry, in the gateway's own record);
- the calendar's mode changes, the gateway's downtimes and clock steps, the faults with the
  alert each must raise, and samples of the gateway process's RSS and open descriptors.

The invariants (``INVARIANTS`` names them; a violation carries its name):

``produced``
    Every reading a device produced while the gateway was up was accepted, and once: a pushed
    value is in exactly one accepted entry of its device (two only when the device itself
    sent it twice, QoS 1 after a reconnect), a poll the device answered is one accepted
    reading. A produced reading the soak excused (lost with a killed broker, or in the last
    commit interval before a SIGKILL) is counted, not a violation. With report by exception
    (``Run.heartbeat``, decision 104) a poll's reading may be suppressed: each value a poll
    produced (``Answered.values``) is either in an accepted entry of its series stamped with
    the poll, or within its point's deadband (``Run.deadbands``) of the field's value
    accepted last before the poll (the last committed: after a clock stepped back, time
    order is not commit order), which is less than a heartbeat old; in minutes the gateway
    lived twice (its clock stepped back over them) within the deadband of any value of the
    field accepted within a heartbeat (which pass a poll was in is not recorded).
``unique``
    No two accepted entries share a series and a timestamp (in InfluxDB the second would
    overwrite the first: a loss that no count shows).
``stored``
    Every accepted entry is in each sink exactly once (by series and timestamp, with its
    fields), or was dropped by the disk bound: telemetry only, never an audit record, and no
    more than the outbox counted. Nothing is in a sink that was never accepted.
``journal``
    No audit entry is missing or doubled: each one the gateway journaled was accepted exactly
    once (or excused as above), and none was accepted that the gateway did not journal.
``alarm``
    The alarm was never armed while the count said someone was inside (the counters' last
    accepted totals before the arm's audit entry, without those stamped after the arm (one
    commit holds its device readings before its audit entries), summed over the entrances,
    counted from the previous arm: the branch was verified empty then).
``modes``
    Every mode change the calendar asked for happened within ``MODE_WITHIN`` (longer when the
    gateway was down or its clock was stepped across it), and none happened that the
    calendar did not ask for. A change is one accepted, or one the gateway journaled whose
    commit was excused (its store read-only, a SIGKILL): it was made, its record lost for a
    counted reason. A boundary the gateway was down for until past the next one is not asked
    of it: it came back in the next one's mode, which that boundary checks.
``alerts``
    Every fault raised the alert a person should see and it was cleared after the fault;
    every alert raised was cleared, or is still true at the end.
``resources``
    The gateway's RSS and open file descriptors stayed within the stated bounds.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import itertools
import math
import re
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import influxdb

from openbranch.edge.core import schema
from openbranch.edge.telemetry.outbox import Entry

__all__ = [
    "INVARIANTS",
    "POLL_SPAN",
    "Accepted",
    "AcceptedLog",
    "AlertWindow",
    "Answered",
    "Boundary",
    "InfluxContent",
    "Journaled",
    "ListAccepted",
    "Point",
    "ProducedValue",
    "Pushed",
    "Run",
    "Sample",
    "SinkContent",
    "Violation",
    "check",
    "parse_point",
]

INVARIANTS = ("produced", "unique", "stored", "journal", "alarm", "modes", "alerts", "resources")

S = 1_000_000_000  # nanoseconds a second
STILL_TRUE_WITHIN = 3600 * S  # an alert raised this close to the run's end may still hold
MODE_WITHIN = 120 * S  # a mode change happens within 2 minutes of its calendar time (4 steps)
POLL_SPAN = 30 * S  # a poll's first answer comes at most this long after its stamp (the
# soak allows more: a real second at its speed, a loaded machine's latency, gateway time)
POLL_EARLY = 5 * S  # the two processes' clocks agree to this much (the soak's record of an
# answer and the gateway's stamp of its poll are taken by different processes)
JOURNAL_SLACK = 60 * S  # a journaled entry and its accepted copy are stamped this close
RSS_MAX = 250_000_000  # bytes: the gateway's resident memory, at any sample
FDS_MAX = 200  # open descriptors of the gateway, at any sample


# -- line protocol -------------------------------------------------------------------------

FieldValue = bool | int | float | str
Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Point:
    """One point as line protocol and InfluxDB know it."""

    measurement: str
    tags: Tags
    fields: Mapping[str, FieldValue]
    time_ns: int

    @property
    def key(self) -> tuple[str, Tags, int]:
        return (self.measurement, self.tags, self.time_ns)

    def tag(self, name: str) -> str:
        return dict(self.tags).get(name, "")


_UNESCAPED = {" ": re.compile(r"(?<!\\) "), ",": re.compile(r"(?<!\\),")}
_UNESCAPE = re.compile(r"\\(.)")


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text)


def _split_fields(text: str) -> Iterator[str]:
    """The ``key=value`` parts of a field set (commas inside quoted strings stay)."""
    part, quoted, escaped = [], False, False
    for char in text:
        if escaped:
            part.append(char)
            escaped = False
        elif char == "\\":
            part.append(char)
            escaped = True
        elif char == '"':
            part.append(char)
            quoted = not quoted
        elif char == "," and not quoted:
            yield "".join(part)
            part = []
        else:
            part.append(char)
    yield "".join(part)


def _field_value(raw: str) -> FieldValue:
    if raw.startswith('"'):
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith(("i", "u")):
        return int(raw[:-1])
    return float(raw)


def parse_point(line: str) -> Point:
    """One line of line protocol as the gateway writes it (with its timestamp)."""
    key, rest = _UNESCAPED[" "].split(line.rstrip("\n"), maxsplit=1)
    measurement, *tag_parts = _UNESCAPED[","].split(key)
    tags = []
    for part in tag_parts:
        name, _, value = part.partition("=")
        tags.append((_unescape(name), _unescape(value)))
    field_text, _, stamp = rest.rpartition(" ")
    fields: dict[str, FieldValue] = {}
    for part in _split_fields(field_text):
        name, _, raw = part.partition("=")
        fields[_unescape(name)] = _field_value(raw)
    return Point(_unescape(measurement), tuple(sorted(tags)), fields, int(stamp))


def same_fields(a: Mapping[str, FieldValue], b: Mapping[str, FieldValue]) -> bool:
    """Field sets equal, numbers compared as numbers (InfluxDB's JSON writes 230.0 as 230)."""
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if isinstance(x, bool) or isinstance(y, bool) or isinstance(x, str) or isinstance(y, str):
            if x != y or type(x) is not type(y):
                return False
        elif not math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-9):
            return False
    return True


# -- the record --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pushed:
    """A message a device published and the broker acknowledged, in the device's record.

    ``value`` of ``measurement.field`` is its own: no other message of the device carries it.
    ``copies``: how often the device sent it (QoS 1 sends again after a reconnect when the
    acknowledgement was lost). ``excused``: why a loss would not be the gateway's."""

    device: str
    measurement: str
    field: str
    value: int
    time_ns: int
    copies: int = 1
    excused: str = ""


ProducedValue = tuple[str, Tags, str, FieldValue]
"""(measurement, tags besides branch and device, field, value): one value a poll produced."""


@dataclass(frozen=True, slots=True)
class Answered:
    """A read request a polled device answered (gateway time), in the device's record;
    ``request`` is its place in the device's plan (a poll reads its requests in plan order,
    so a place that does not grow starts the next poll); ``values``: what the answer said,
    decoded as the gateway decodes it (empty: not recorded)."""

    device: str
    time_ns: int
    excused: str = ""
    request: int = 0
    values: tuple[ProducedValue, ...] = ()


@dataclass(frozen=True, slots=True)
class Journaled:
    """An alert or audit entry the gateway journaled (its listener's record).

    ``kind`` is the journal's: ``alert <kind>`` with a message ``RAISED: ...`` or
    ``cleared: ...``, or an audit kind (``mode``, ``command``, ...) with its message."""

    kind: str
    message: str
    time_ns: int
    excused: str = ""


@dataclass(frozen=True, slots=True)
class Boundary:
    """A mode change the calendar asks for: from ``time_ns`` on, ``mode``."""

    time_ns: int
    mode: str


@dataclass(frozen=True, slots=True)
class AlertWindow:
    """A fault, in commit order: applied when the outbox's last entry was ``after_seq``. It
    must raise an alert whose kind starts with ``alert`` (accepted after ``after_seq``) and
    clear it later; ``alert`` None: the fault needs no alert (a clean restart)."""

    fault: str
    after_seq: int
    alert: str | None


@dataclass(frozen=True, slots=True)
class Sample:
    """The gateway process's resident memory and open descriptors at ``t`` (real seconds)."""

    t: float
    pid: int
    rss: int
    fds: int


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    reason: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.reason}"


class Accepted(Protocol):
    """Every entry the gateway accepted, in commit (seq) order."""

    def entries(self, measurement: str | None = None) -> Iterable[Entry]: ...


class ListAccepted:
    """Accepted entries held in memory (tests; an outbox's ``lines()``, sorted by seq)."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._entries = sorted(entries, key=lambda e: e.seq)

    def entries(self, measurement: str | None = None) -> Iterable[Entry]:
        return [e for e in self._entries if measurement in (None, e.measurement)]


class AcceptedLog:
    """Accepted entries kept in a SQLite file of their own (the soak's tailer writes it,
    reading the outbox by seq before the bound can trim its history)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY, time_ns INTEGER,"
            " measurement TEXT, device TEXT, audit INTEGER, line TEXT);"
            "CREATE INDEX IF NOT EXISTS by_measurement ON entries (measurement, seq);"
        )

    def add(self, rows: Sequence[tuple[int, int, str, str, int, str]]) -> None:
        with self._db:
            self._db.executemany("INSERT OR IGNORE INTO entries VALUES (?,?,?,?,?,?)", rows)

    def last_seq(self) -> int:
        (top,) = self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()
        return int(top)

    def count(self) -> int:
        (n,) = self._db.execute("SELECT count(*) FROM entries").fetchone()
        return int(n)

    def entries(self, measurement: str | None = None) -> Iterator[Entry]:
        sql = "SELECT seq, time_ns, measurement, device, audit, line FROM entries"
        args: tuple[str, ...] = ()
        if measurement is not None:
            sql, args = sql + " WHERE measurement = ?", (measurement,)
        for seq, t, m, d, a, line in self._db.execute(sql + " ORDER BY seq", args):
            yield Entry(int(seq), int(t), str(m), str(d), bool(a), str(line))

    def close(self) -> None:
        self._db.close()


class SinkContent(Protocol):
    """What one sink's database holds."""

    name: str

    def measurements(self) -> list[str]: ...

    def points(self, measurement: str) -> Iterable[Point]: ...


class InfluxContent:
    """A database on an InfluxDB 1.x server, read with InfluxQL through the ``influxdb``
    library (chunked, so a month of points streams)."""

    def __init__(self, name: str, url: str, database: str) -> None:
        self.name = name
        address = urlparse(url)
        self.database = database
        self._client = influxdb.InfluxDBClient(
            host=address.hostname or "127.0.0.1",
            port=address.port or 8086,
            database=database,
            timeout=120,
            headers={"Accept": "application/json"},  # its msgpack cannot read chunked answers
        )

    def measurements(self) -> list[str]:
        result = self._client.query("SHOW MEASUREMENTS")
        return sorted(str(p["name"]) for p in result.get_points())

    def points(self, measurement: str) -> Iterator[Point]:
        name = measurement.replace("\\", "\\\\").replace('"', '\\"')
        chunks = self._client.query(
            f'SELECT * FROM "{name}" GROUP BY *', epoch="ns", chunked=True, chunk_size=20_000
        )
        for chunk in chunks:
            for (_, tags), rows in chunk.items():
                tag_items = tuple(sorted((k, v) for k, v in (tags or {}).items() if v != ""))
                for row in rows:
                    fields = {
                        k: v
                        for k, v in row.items()
                        if k != "time" and v is not None and k not in (tags or {})
                    }
                    yield Point(measurement, tag_items, fields, int(row["time"]))

    def close(self) -> None:
        self._client.close()


@dataclass(slots=True)
class Run:
    """A run's record (see the module docstring)."""

    accepted: Accepted
    sinks: Sequence[SinkContent] = ()
    dropped: int = 0  # the outbox's counter of telemetry dropped at the bound
    cursors: Mapping[str, int] | None = None  # each sink's cursor at the end: entries past it
    # are still in the outbox, waiting for their sink (not missing)
    pushed: Sequence[Pushed] = ()
    answered: Sequence[Answered] = ()
    journaled: Sequence[Journaled] | None = None  # None: the gateway's journal was not kept
    boundaries: Sequence[Boundary] = ()
    until_ns: int = 0  # the end of the calendar's boundaries (the run's end): a change after
    # it answers a boundary not listed (the clock runs on while the sinks settle); 0: no end
    downtimes: Sequence[tuple[int, int]] = ()  # gateway time: (went down, came back)
    steps: Sequence[tuple[int, int]] = ()  # gateway time of a clock step, and its size (ns)
    faults: Sequence[AlertWindow] = ()
    still_true: Collection[str] = ()  # alert kinds the gateway still had raised at the end:
    # one raised within STILL_TRUE_WITHIN of the end may still hold (tailgating clears only
    # after 30 quiet minutes); one raised before that and never cleared is stuck
    samples: Sequence[Sample] = ()
    poll_span: int = POLL_SPAN  # ns: how long after its stamp a poll's first answer may come
    heartbeat: int = 0  # ns: report by exception's heartbeat; 0: every poll is written
    deadbands: Mapping[tuple[str, str, str], float] = field(default_factory=dict)  # (device,
    # measurement, field) -> the point's deadband; absent: 0, any change is written
    figures: dict[str, int] = field(default_factory=dict)  # filled by ``check``


# -- the checks ----------------------------------------------------------------------------


def check(run: Run) -> list[Violation]:
    """Every violation of every invariant (see the module docstring), with its reason."""
    out: list[Violation] = []
    out += _unique(run)
    out += _produced(run)
    out += _stored(run)
    out += _journal(run)
    out += _alarm(run)
    out += _modes(run)
    out += _alerts(run)
    out += _resources(run)
    return out


def _measurements(run: Run) -> list[str]:
    names: set[str] = set()
    for entry in run.accepted.entries():
        names.add(entry.measurement)
    return sorted(names)


def _unique(run: Run) -> list[Violation]:
    out = []
    seen: dict[tuple[str, Tags, int], tuple[int, int]] = {}  # key -> seq, hash of the line
    accepted = 0
    for entry in run.accepted.entries():
        accepted += 1
        point = parse_point(entry.line)
        other = seen.get(point.key)
        if other is not None:
            what = "doubled" if other[1] == hash(entry.line) else "overwritten in every sink"
            out.append(
                Violation(
                    "unique",
                    f"seq {other[0]} and {entry.seq} share series and time ({what}): "
                    f"{entry.line[:160]}",
                )
            )
        seen[point.key] = (entry.seq, hash(entry.line))
    run.figures["accepted"] = accepted
    return out


def _produced(run: Run) -> list[Violation]:
    polled = {a.device for a in run.answered}
    pushed = {(p.device, p.measurement, p.field) for p in run.pushed}
    counts: dict[tuple[str, str, str], Counter[int]] = defaultdict(Counter)
    stamps: dict[str, set[int]] = defaultdict(set)
    device_readings = 0
    for entry in run.accepted.entries():
        if entry.device in ("", schema.GATEWAY_DEVICE):
            continue
        device_readings += 1
        if entry.device in polled:
            stamps[entry.device].add(entry.time_ns)
        if pushed:
            for name, value in parse_point(entry.line).fields.items():
                ident = (entry.device, entry.measurement, name)
                if ident in pushed and isinstance(value, int):
                    counts[ident][value] += 1
    run.figures["accepted_device_readings"] = device_readings
    run.figures["produced_pushed"] = len(run.pushed)
    run.figures["produced_lost_excused"] = 0
    run.figures["produced_suppressed"] = 0
    return _pushed(run, counts) + _polled(run, stamps)


def _pushed(run: Run, counts: Mapping[tuple[str, str, str], Counter[int]]) -> list[Violation]:
    """Each pushed value accepted once (or as often as the device sent it)."""
    out = []
    values: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for p in run.pushed:
        ident = (p.device, p.measurement, p.field)
        values[ident].add(p.value)
        n = counts.get(ident, Counter()).get(p.value, 0)
        what = f"{p.device}: {p.measurement}.{p.field}={p.value}"
        if n == 0 and p.excused:
            run.figures["produced_lost_excused"] += 1
        elif n == 0:
            out.append(
                Violation("produced", f"{what} was produced (acknowledged) and never accepted")
            )
        elif n > p.copies:
            out.append(
                Violation("produced", f"{what} was sent {p.copies}x and accepted {n}x (doubled)")
            )
    for ident, counter in sorted(counts.items()):
        invented = sorted(set(counter) - values[ident])
        if invented:
            out.append(
                Violation(
                    "produced",
                    f"{ident[0]}: {ident[1]}.{ident[2]} accepted with values the device never "
                    f"sent: {invented[:10]}",
                )
            )
    return out


def _polled(run: Run, stamps: Mapping[str, set[int]]) -> list[Violation]:
    """Each answered poll one accepted reading. A device is polled one poll at a time, its
    requests in plan order, and a poll is stamped right before its first request: the
    answers, in the order they came (the gateway's time may have been stepped back, its
    order is not theirs), are cut into polls where the place in the plan stops growing; the
    polls, by their first answer, take the accepted stamps one to one, each the earliest left
    that is at most ``run.poll_span`` before its first answer and at most ``POLL_EARLY`` after
    it. The windows are all as long, so taking the earliest left finds a stamp for every poll
    whenever the stamps allow it: a poll left without one is a reading lost."""
    out = []
    polled: dict[str, list[Answered]] = defaultdict(list)
    for a in run.answered:
        polled[a.device].append(a)
    polls = 0
    for device, answers in sorted(polled.items()):
        times = sorted(stamps.get(device, ()))
        groups: list[list[Answered]] = []
        for a in answers:
            if groups and a.request > groups[-1][-1].request:
                groups[-1].append(a)
            else:
                groups.append([a])
        polls += len(groups)
        if run.heartbeat > 0 and all(a.values for g in groups for a in g):
            out += _reported(run, device, groups)
            continue
        j = 0  # stamps before this index are taken, or too old for every poll still to come
        for group in sorted(groups, key=lambda g: g[0].time_ns):
            first = group[0].time_ns
            while j < len(times) and times[j] < first - run.poll_span:
                j += 1
            if j < len(times) and times[j] <= first + POLL_EARLY:
                j += 1
                continue
            out += _lost(run, device, group)
    run.figures["produced_polls"] = polls
    return out


def _lost(run: Run, device: str, poll: Sequence[Answered], why: str = "") -> list[Violation]:
    """A poll that became no accepted reading (``why``: and was not rightly suppressed):
    excused, and counted, when a fault came during it (it was cut)."""
    if any(a.excused for a in poll):
        run.figures["produced_lost_excused"] += 1
        return []
    reason = f"{device}: a poll answered at {_ns(poll[0].time_ns)} (gateway time) became no "
    reason += "accepted reading" + (f" and was not rightly suppressed: {why}" if why else "")
    return [Violation("produced", reason)]


_Series = tuple[str, Tags]  # measurement, tags besides branch and device


@dataclass(slots=True)
class _History:
    """One series' accepted entries in time order, and per field the entry committed last
    (highest seq) among the first n: the gateway's last written value, also after its clock
    was stepped back (then time order is not commit order)."""

    times: list[int] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    fields: list[Mapping[str, FieldValue]] = field(default_factory=list)
    _last: dict[str, list[int]] = field(default_factory=dict)

    def add(self, time_ns: int, seq: int, fields: Mapping[str, FieldValue]) -> None:
        self.times.append(time_ns)
        self.seqs.append(seq)
        self.fields.append(fields)

    def sort(self) -> None:
        order = sorted(range(len(self.times)), key=lambda i: (self.times[i], self.seqs[i]))
        self.times = [self.times[i] for i in order]
        self.seqs = [self.seqs[i] for i in order]
        self.fields = [self.fields[i] for i in order]

    def last(self, name: str, n: int) -> int:
        """The index of the entry carrying ``name`` committed last among the first ``n``
        (by time), or -1."""
        best = self._last.get(name)
        if best is None:
            best, current = [], -1
            for i, fields in enumerate(self.fields):
                if name in fields and (current < 0 or self.seqs[i] > self.seqs[current]):
                    current = i
                best.append(current)
            self._last[name] = best
        return best[n - 1] if n else -1


def _reported(run: Run, device: str, polls: Sequence[Sequence[Answered]]) -> list[Violation]:
    """Report by exception: each value of each poll accepted, or rightly suppressed (see the
    module docstring). Judged per answer and per field: polls of different groups of a
    device may follow each other so closely that their answers read as one poll (their
    places in the plan grow), and a poll's reading then carries only its own groups' fields.
    An answer's poll was stamped at most ``run.poll_span`` before it (and at most
    ``POLL_EARLY`` after it, the processes' clocks; more near a step of the clock)."""
    history: dict[_Series, _History] = defaultdict(_History)
    for entry in run.accepted.entries():
        if entry.device == device:
            point = parse_point(entry.line)
            tags = tuple(t for t in point.tags if t[0] not in ("branch", "device"))
            history[(point.measurement, tags)].add(point.time_ns, entry.seq, point.fields)
    for series in history.values():
        series.sort()
    out = []
    for poll in polls:
        why = [
            reason
            for a in poll
            for measurement, tags, name, value in a.values
            if (
                reason := _unreported(
                    run,
                    device,
                    (measurement, tags),
                    field=(name, value),
                    history=history[(measurement, tags)],
                    answered=a.time_ns,
                )
            )
        ]
        if why:
            out += _lost(run, device, poll, "; ".join(why))
    return out


def _unreported(
    run: Run,
    device: str,
    series: _Series,
    *,
    field: tuple[str, FieldValue],
    history: _History,
    answered: int,
) -> str:
    """Why one value an answer produced was neither accepted (an entry of its series stamped
    with the poll carries it) nor rightly suppressed (within the point's deadband of the
    field's last accepted value, less than a heartbeat old); empty when it was one or the
    other."""
    name, value = field
    lo = bisect.bisect_left(history.times, answered - run.poll_span)
    hi = bisect.bisect_right(history.times, answered + POLL_EARLY + _step_slack(run, answered))
    for fields in history.fields[lo:hi]:  # accepted with the poll's stamp
        if name in fields and same_fields({name: value}, {name: fields[name]}):
            return ""
    what = f"{series[0]}{''.join(f',{k}={v}' for k, v in series[1])}: {name}={value}"
    band = run.deadbands.get((device, series[0], name), 0.0)
    relived = _relived(run, answered)
    if relived:  # which pass the poll was in, and so its last written value, is not known:
        # any value of the field accepted within the heartbeat around it may have been
        lo = bisect.bisect_left(history.times, answered - run.heartbeat - run.poll_span)
        if any(
            name in fields and not _moved(value, fields[name], band)
            for fields in history.fields[lo:hi]
        ):
            run.figures["produced_suppressed"] += 1
            return ""
    last = history.last(name, bisect.bisect_right(history.times, answered + POLL_EARLY))
    if last < 0:
        return f"{what}: nothing of it was accepted before"
    age = answered - history.times[last]
    if age >= run.heartbeat + run.poll_span:
        return f"{what}: last accepted {age / S:.0f} s before, past the heartbeat"
    before = history.fields[last][name]
    # unless relived (above): the poll's stamp is somewhere in its window, and the gateway
    # compared the value with the field's last written value before that stamp: the one
    # committed last, or one written inside the window (found by the 30-day soak: co2 570,
    # answered 0.5 s before the next poll's entry of 546 was stamped, was suppressed
    # against the 582 written 7 minutes before)
    candidates = [before, *(fields[name] for fields in history.fields[lo:hi] if name in fields)]
    if relived or all(_moved(value, c, band) for c in candidates):
        return f"{what} (last {before!r}, deadband {band:g})"
    run.figures["produced_suppressed"] += 1
    return ""


def _relived(run: Run, at: int) -> bool:
    """Whether gateway time ``at`` is in minutes the gateway lived twice: its clock was
    stepped back over them (with ``MODE_WITHIN`` either side for the processes' clocks)."""
    return any(
        size < 0 and when - MODE_WITHIN <= at <= when - size + MODE_WITHIN
        for when, size in run.steps
    )


def _moved(value: FieldValue, last: FieldValue | None, deadband: float) -> bool:
    """Whether ``value`` is beyond ``deadband`` of ``last`` (the gateway had to write it)."""
    if last is None:
        return True
    numbers = not isinstance(value, bool | str) and not isinstance(last, bool | str)
    if not numbers:
        return value != last
    if not deadband:
        return not same_fields({"v": value}, {"v": last})
    return abs(float(value) - float(last)) > deadband + 1e-9


def _stored(run: Run) -> list[Violation]:
    out: list[Violation] = []
    names = _measurements(run)
    for sink in run.sinks:
        missing_telemetry = 0
        stored = 0
        pending = 0
        cursor = None if run.cursors is None else run.cursors.get(sink.name)
        for measurement in sorted(set(names) | set(sink.measurements())):
            held: dict[tuple[str, Tags, int], Mapping[str, FieldValue]] = {}
            for point in sink.points(measurement):
                held[point.key] = point.fields
            stored += len(held)
            for entry in run.accepted.entries(measurement):
                point = parse_point(entry.line)
                fields = held.pop(point.key, None)
                if fields is None and cursor is not None and entry.seq > cursor:
                    pending += 1
                elif fields is None:
                    if entry.audit:
                        out.append(
                            Violation(
                                "stored",
                                f"{sink.name}: audit seq {entry.seq} is missing (an audit "
                                f"record is never dropped): {entry.line[:160]}",
                            )
                        )
                    else:
                        missing_telemetry += 1
                        if missing_telemetry <= 20 and not run.dropped:
                            out.append(
                                Violation(
                                    "stored",
                                    f"{sink.name}: seq {entry.seq} is missing and the bound "
                                    f"dropped nothing: {entry.line[:160]}",
                                )
                            )
                elif not same_fields(fields, point.fields):
                    out.append(
                        Violation(
                            "stored",
                            f"{sink.name}: seq {entry.seq} is stored with other fields: "
                            f"{dict(fields)} vs {entry.line[:160]}",
                        )
                    )
            for key in list(held)[:20]:
                out.append(
                    Violation("stored", f"{sink.name}: {key} is stored but was never accepted")
                )
        if missing_telemetry > run.dropped:
            out.append(
                Violation(
                    "stored",
                    f"{sink.name}: {missing_telemetry} accepted readings are missing, the bound "
                    f"dropped {run.dropped}",
                )
            )
        run.figures[f"stored:{sink.name}"] = stored
        run.figures[f"missing:{sink.name}"] = missing_telemetry
        run.figures[f"pending:{sink.name}"] = pending
    run.figures["dropped_by_bound"] = run.dropped
    return out


_ALERT_WORDS = re.compile(r"^(RAISED|cleared): (.*)$", re.S)


def _journal_key(j: Journaled) -> tuple[str, str, str]:
    if j.kind.startswith("alert "):
        found = _ALERT_WORDS.match(j.message)
        message = found.group(2) if found else j.message
        active = "true" if found and found.group(1) == "RAISED" else "false"
        return (schema.ALERT.name, j.kind.removeprefix("alert "), f"{active}:{message}")
    return (schema.AUDIT.name, j.kind, j.message)


def _entry_key(point: Point) -> tuple[str, str, str]:
    kind = point.tag(schema.Tag.KIND.value)
    message = str(point.fields.get(schema.ALERT_MESSAGE.key, ""))
    if point.measurement == schema.ALERT.name:
        active = "true" if point.fields.get(schema.ALERT_ACTIVE.key) is True else "false"
        return (point.measurement, kind, f"{active}:{message}")
    return (point.measurement, kind, message)


def _journal(run: Run) -> list[Violation]:
    out: list[Violation] = []
    accepted: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    audit = 0
    for measurement in (schema.ALERT.name, schema.AUDIT.name):
        for entry in run.accepted.entries(measurement):
            if entry.device != schema.GATEWAY_DEVICE:
                continue  # a device's own alert input (a fire panel, a help button)
            audit += 1
            point = parse_point(entry.line)
            accepted[_entry_key(point)].append(point.time_ns)
    run.figures["audit_entries"] = audit
    if run.journaled is None:
        return out
    journaled: dict[tuple[str, str, str], list[Journaled]] = defaultdict(list)
    for j in run.journaled:
        journaled[_journal_key(j)].append(j)
    lost_excused = 0
    for key in sorted(set(accepted) | set(journaled)):
        times = sorted(accepted.get(key, []))
        for j in sorted(journaled.get(key, []), key=lambda j: j.time_ns):
            i = bisect.bisect_left(times, j.time_ns - JOURNAL_SLACK)
            if i < len(times) and times[i] <= j.time_ns + JOURNAL_SLACK:
                del times[i]
            elif j.excused:
                lost_excused += 1
            else:
                out.append(
                    Violation(
                        "journal",
                        f"journaled at {_ns(j.time_ns)} and never accepted: {key[0]} {key[1]} "
                        f"{key[2][:120]!r}",
                    )
                )
        for t in times[:5]:
            out.append(
                Violation(
                    "journal",
                    f"accepted at {_ns(t)} but not journaled (doubled?): {key[0]} {key[1]} "
                    f"{key[2][:120]!r}",
                )
            )
    run.figures["journal_lost_excused"] = lost_excused
    return out


def _alarm(run: Run) -> list[Violation]:
    """The count at each arm: the counters' totals at the arm, summed over the entrances, from
    the zero of the last arm (the branch was verified empty then: a drift of that day, a
    person counted out twice, is not someone inside the next evening; the engine makes the
    same daily correction).

    The totals at the arm are those accepted before it, in commit order, without the ones
    stamped after it: one commit holds a batch's device readings before its audit entries,
    and after the store refused commits for a while a batch spans minutes (a count stamped
    at 07:04 committed just before the arm of 06:45). A clock step near the arm widens
    "after" by the step's size (a reading before a step back may be stamped later)."""
    out = []
    base: dict[str, tuple[int, int]] = {}  # each counter's totals at the last arm
    recent: dict[str, list[tuple[int, FieldValue, FieldValue]]] = defaultdict(list)
    zero: dict[str, int] = {}
    entered, exited = schema.OCCUPANCY_ENTERED.key, schema.OCCUPANCY_EXITED.key
    arms = deferred = 0
    for entry in _merged(run.accepted, (schema.OCCUPANCY.name, schema.AUDIT.name)):
        if entry.measurement == schema.OCCUPANCY.name and entry.device != schema.GATEWAY_DEVICE:
            fields = parse_point(entry.line).fields
            recent[entry.device].append((entry.time_ns, fields.get(entered), fields.get(exited)))
        elif entry.measurement == schema.AUDIT.name and "alarm_arm_relay := True" in entry.line:
            arms += 1
            until = entry.time_ns + _step_slack(run, entry.time_ns)
            totals = dict(base)
            for device, readings in recent.items():
                now = totals.get(device, (0, 0))
                for _, got_in, got_out in (r for r in readings if r[0] <= until):
                    now = (
                        int(got_in) if isinstance(got_in, int) else now[0],
                        int(got_out) if isinstance(got_out, int) else now[1],
                    )
                totals[device] = now
                recent[device] = [r for r in readings if r[0] > until]  # after the arm
                deferred += len(recent[device])
            net = {d: i - o - zero.get(d, 0) for d, (i, o) in totals.items()}
            inside = sum(net.values())
            if inside > 0:
                out.append(
                    Violation(
                        "alarm",
                        f"armed at {_ns(entry.time_ns)} (seq {entry.seq}) while the count said "
                        f"{inside} inside (totals {totals}, since the last arm {net})",
                    )
                )
            base = totals
            zero = {d: i - o for d, (i, o) in totals.items()}
    run.figures["alarm_arms"] = arms
    run.figures["alarm_counts_stamped_after"] = deferred
    return out


def _merged(accepted: Accepted, measurements: Sequence[str]) -> Iterator[Entry]:
    """The entries of several measurements, in commit order."""
    streams = [iter(accepted.entries(m)) for m in measurements]
    yield from heapq.merge(*streams, key=lambda e: e.seq)


_MODE = re.compile(r"^(\S+) -> (\S+)$")


def _mode_changes(run: Run) -> list[tuple[int, str, str]]:
    """Every mode change the gateway made, (time, from, to) in time order: those accepted,
    and those it journaled that could not be committed and were excused (the store was
    read-only, or a SIGKILL came before the commit): the change was made, its record lost
    for a reason the soak counts."""
    changes: list[tuple[int, str, str]] = []
    for entry in run.accepted.entries(schema.AUDIT.name):
        point = parse_point(entry.line)
        if point.tag(schema.Tag.KIND.value) != "mode":
            continue
        found = _MODE.match(str(point.fields.get(schema.AUDIT_MESSAGE.key, "")))
        if found:
            changes.append((point.time_ns, found.group(1), found.group(2)))
    committed = sorted(changes)
    uncommitted = 0
    for j in run.journaled or ():
        found = _MODE.match(j.message)
        if j.kind != "mode" or not j.excused or not found:
            continue
        change = (found.group(1), found.group(2))
        if not any(
            abs(t - j.time_ns) <= JOURNAL_SLACK and (was, to) == change for t, was, to in committed
        ):
            changes.append((j.time_ns, *change))
            uncommitted += 1
    run.figures["mode_changes_uncommitted"] = uncommitted
    return sorted(changes)


def _superseded(run: Run, boundaries: Sequence[Boundary]) -> set[int]:
    """The boundaries (their places) the gateway was down for from before they came (within
    ``MODE_WITHIN``) until after the next boundary: it could not make them, and the mode it
    came back in is the next one's (checked there)."""
    out = set()
    for i, (b, after) in enumerate(itertools.pairwise(boundaries)):
        if any(
            down - MODE_WITHIN <= b.time_ns and after.time_ns <= up for down, up in run.downtimes
        ):
            out.add(i)
    return out


def _modes(run: Run) -> list[Violation]:
    out: list[Violation] = []
    changes = _mode_changes(run)
    run.figures["mode_changes"] = sum(1 for c in changes if c[1] != "start")
    if not run.boundaries:
        return out

    def allowed(at: int) -> int:
        """How late a change asked for at ``at`` may come (and a real second more at the soak's
        speed: ``run.poll_span``, a loaded machine's latency in gateway time)."""
        late = MODE_WITHIN + max(0, run.poll_span - POLL_SPAN)
        restart = 2 * MODE_WITHIN + 60 * S  # a new run waits up to two minutes for its
        # devices' first answers
        downtimes = sorted(run.downtimes)
        for i, (down, up) in enumerate(downtimes):
            if down - MODE_WITHIN <= at <= up:
                back = up
                for later_down, later_up in downtimes[i + 1 :]:  # down again before it could
                    if later_down <= back + restart:
                        back = max(back, later_up)
                late = max(late, back - at + restart)
        for when, size in run.steps:  # the clock jumped from when - size to when
            if min(when, when - size) - MODE_WITHIN <= at <= max(when, when - size) + late:
                late = max(late, abs(size) + 2 * MODE_WITHIN)
        return late

    first = min(c[0] for c in changes) if changes else None
    matched: set[int] = set()
    boundaries = sorted(run.boundaries, key=lambda b: b.time_ns)
    superseded = _superseded(run, boundaries)
    run.figures["modes_superseded"] = len(superseded)
    for place, b in enumerate(boundaries):
        if first is not None and b.time_ns < first:
            continue  # before the gateway first decided
        late = allowed(b.time_ns)
        hit = [
            i
            for i, (t, _, to) in enumerate(changes)
            if to == b.mode and b.time_ns - _step_slack(run, b.time_ns) <= t <= b.time_ns + late
        ]
        matched.update(hit)  # a boundary it was down for may still have been made just before
        if not hit and place not in superseded and not _already(changes, b):
            out.append(
                Violation(
                    "modes",
                    f"the calendar asked for {b.mode} at {_ns(b.time_ns)}; no change to it "
                    f"within {late / S:.0f} s",
                )
            )
    for i, (t, was, to) in enumerate(changes):
        if i in matched or was == "start" or (run.until_ns and t > run.until_ns):
            continue
        out.append(
            Violation(
                "modes",
                f"{was} -> {to} at {_ns(t)}: the calendar asked for no such change then",
            )
        )
    return out


def _step_slack(run: Run, at: int) -> int:
    """A change may be stamped before its calendar time only when the clock was stepped."""
    near = [abs(size) for when, size in run.steps if abs(when - at) <= abs(size) + MODE_WITHIN]
    return max(near, default=0)


def _already(changes: Sequence[tuple[int, str, str]], b: Boundary) -> bool:
    """The gateway was already in the boundary's mode (it started in it just before)."""
    before = [c for c in changes if c[0] <= b.time_ns]
    return bool(before) and before[-1][2] == b.mode


def _still_true(run: Run, kind: str, raised_ns: int) -> bool:
    """An alert left raised that may still hold: the gateway had it raised at the end, and
    it was raised within ``STILL_TRUE_WITHIN`` of the end (any time, for a run without one)."""
    recent = not run.until_ns or raised_ns >= run.until_ns - STILL_TRUE_WITHIN
    return kind in run.still_true and recent


def _alerts(run: Run) -> list[Violation]:
    out: list[Violation] = []
    history: list[tuple[int, str, bool]] = []  # (seq, kind, active)
    stamps: dict[int, int] = {}  # seq -> time_ns
    for entry in run.accepted.entries(schema.ALERT.name):
        if entry.device != schema.GATEWAY_DEVICE:
            continue  # a device's alert input is the device's state, not the gateway's alert
        point = parse_point(entry.line)
        history.append(
            (
                entry.seq,
                point.tag(schema.Tag.KIND.value),
                point.fields.get(schema.ALERT_ACTIVE.key) is True,
            )
        )
        stamps[entry.seq] = entry.time_ns
    raised = sum(1 for _, _, active in history if active)
    run.figures["alerts_raised"] = raised
    last: dict[str, tuple[int, bool]] = {}
    for seq, kind, active in history:
        last[kind] = (seq, active)
    for kind, (seq, active) in sorted(last.items()):
        if active and not _still_true(run, kind, stamps[seq]):
            out.append(Violation("alerts", f"{kind} was raised (seq {seq}) and never cleared"))
    for fault in run.faults:
        if fault.alert is None:
            continue
        prefix = fault.alert
        up = next(
            (
                s
                for s, kind, active in history
                if s > fault.after_seq and active and kind.startswith(prefix)
            ),
            None,
        )
        if up is None:
            out.append(
                Violation(
                    "alerts",
                    f"{fault.fault} (after seq {fault.after_seq}): no {prefix} alert raised",
                )
            )
            continue
        kind = next(k for s, k, _ in history if s == up)
        down = any(s > up and k == kind and not active for s, k, active in history)
        if not down and not _still_true(run, kind, stamps[up]):
            out.append(
                Violation("alerts", f"{fault.fault}: {kind} raised (seq {up}), never cleared")
            )
    return out


def _resources(run: Run) -> list[Violation]:
    out: list[Violation] = []
    if not run.samples:
        return out
    worst_rss = max(run.samples, key=lambda s: s.rss)
    worst_fds = max(run.samples, key=lambda s: s.fds)
    if worst_rss.rss > RSS_MAX:
        out.append(
            Violation(
                "resources",
                f"RSS {worst_rss.rss / 1e6:.0f} MB at {worst_rss.t:.0f} s (bound "
                f"{RSS_MAX / 1e6:.0f} MB)",
            )
        )
    if worst_fds.fds > FDS_MAX:
        out.append(
            Violation(
                "resources",
                f"{worst_fds.fds} open descriptors at {worst_fds.t:.0f} s (bound {FDS_MAX})",
            )
        )
    return out


def _ns(t: int) -> str:
    with contextlib.suppress(OverflowError, ValueError, OSError):
        return datetime.fromtimestamp(t / S, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(t)
