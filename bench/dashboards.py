"""Every dashboard's panel queries over a year of a fleet's data, as Grafana sends them.

Loads ``--days`` (365) of data for ``--branches`` (40) into a private influxd set up as
provisioning sets one up (``provisioning.influx``: the raw, forever (hours) and daily (days)
retention policies, the roll-ups' continuous queries, the floor areas), rolls the span up once
(``backfill``: the continuous queries only see recent days), then loads every dashboard for
the last 24 h, 7 days, 30 days and 1 year, with branch = All and = one: the variable query
first, then every panel query after Grafana's interpolation (tests/support/interpolate.py), at
most 6 in flight (Grafana's limit per data source), ``--repeat`` times; the median is reported.

What is written, per branch and day (at a gateway's rates; the day's hours in UTC, open
07:00-21:00):

- ``occupancy``: 2 people counters, a point per counter per open minute (written on change:
  a busy branch counts someone each minute), ``entered`` and ``exited`` counters: 1,680
- ``energy``: 3 meters (electricity main and sub, district heating), every 15 min: 288
- ``energy_hourly``: the 3 meters' closed hours: 72; ``closed_hours``: 3 x 10 closed hours: 30
- ``indoor``: one zone every 5 min: 288; ``light``: 3 zones, 4 changes: 12
- ``door``: 2 doors, a change every 10 open minutes: 168
- ``branch_mode``: 4 changes; ``alert``: 2 raised and cleared: 4; ``audit``: 10
- ``gateway`` health every 5 min: 288 (the gateway writes it every minute; the panels read
  only its last value)

That is 2,844 points per branch-day: 41.5 M for 40 branches over a year, 24.5 M of them
``occupancy``.

    nice -n 15 .venv/bin/python bench/dashboards.py [--branches 40] [--days 365] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support

from openbranch.dashboards import BranchInfo, Dashboard, Fleet, Panel, all_dashboards
from openbranch.edge.demo.servers import Influxd
from openbranch.provisioning import influx
from tests.support.interpolate import TimeRange, VariableValue, all_of, interpolate

DATABASE = "bench"
IN_FLIGHT = 6  # Grafana's concurrent queries per data source
QUERY_TIMEOUT_S = 60.0  # Grafana's data source gives up at 30 s
RANGES = ("now-24h", "now-7d", "now-30d", "now-1y")
PANEL_TARGET_S, DASHBOARD_TARGET_S = 1.0, 3.0
MIN_NS = 60 * 10**9
HOUR_NS = 60 * MIN_NS
OPEN_HOURS = range(7, 21)  # UTC
MODES = ((0, "closed"), (7, "self_service"), (9, "staffed"), (16, "self_service"), (21, "closed"))


def day_lines(branch: int, day_ns: int, day: int) -> Iterator[str]:  # noqa: PLR0912 - one branch's day
    """One branch's day, as line protocol (see the module docstring)."""
    b = f"branch={branch_id(branch)}"
    gw = f"{b},device=gateway"
    counters = (("people-counter", 0), ("entrance-counter", 1))
    for name, c in counters:
        entered = day * 700 + c * 13
        for hour in OPEN_HOURS:
            for minute in range(60):
                at = day_ns + hour * HOUR_NS + minute * MIN_NS + c * 10**9
                entered += 1 + (minute + branch + c) % 2
                exited = entered - 3 - (minute % 4) if hour < 20 else entered - (59 - minute) // 20
                yield f"occupancy,{b},device={name} entered={entered}i,exited={exited}i {at}"
    carriers = (
        ("main-meter", "electricity"),
        ("sub-meter", "electricity"),
        ("heat", "district_heating"),
    )
    for m, (meter, carrier) in enumerate(carriers):
        per_hour = [1.5 + m + (4.0 if h in OPEN_HOURS else 0.0) + branch * 0.05 for h in range(24)]
        total = 1000.0 * (m + 1) + day * sum(per_hour)
        for q in range(96):
            h = q // 4
            total += per_hour[h] / 4
            yield (
                f"energy,{b},device={meter},carrier={carrier} register={total:.3f},"
                f"total={total:.3f},power_w={per_hour[h] * 1000:.1f} {day_ns + q * 15 * MIN_NS}"
            )
        for h in range(24):
            at = day_ns + h * HOUR_NS
            yield (
                f"energy_hourly,{b},device={meter},carrier={carrier}"
                f' consumption={per_hour[h]},quality="measured",coverage=1 {at}'
            )
            if h not in OPEN_HOURS and h % 3:  # ten closed hours judged
                yield (
                    f"closed_hours,{b},device={meter},carrier={carrier}"
                    f' consumption={per_hour[h]},base_load={per_hour[h]},excess=0,verdict="normal"'
                    f" {at}"
                )
    for q in range(288):
        yield (
            f"indoor,{b},device=climate,zone=reading-room temperature_c={20 + q % 7 * 0.3:.1f},"
            f"co2_ppm={450 + (q % 96) * 4},humidity_pct=35 {day_ns + q * 5 * MIN_NS}"
        )
    for zone in ("reading-room", "children", "entrance"):
        for h, on in ((6, True), (7, True), (21, False), (22, False)):
            level = 100.0 if on else 0.0
            at = day_ns + h * HOUR_NS
            yield f"light,{b},device=lights,zone={zone} on={on},level={level} {at}"
    for door in ("entrance-door", "staff-door"):
        for i in range(84):
            at = day_ns + 7 * HOUR_NS + i * 10 * MIN_NS
            yield f'door,{b},device={door} open={i % 2 == 0},locked=false,mode="free" {at}'
    for h, mode in MODES[1:] if day else MODES:
        at = day_ns + h * HOUR_NS + 30 * 10**9
        yield f'branch_mode,{gw} mode="{mode}" {at}'
        yield f'audit,{gw},kind=mode_change message="mode {mode}" {at}'
    for i, kind in enumerate(("device_down:sub-meter", "hours_stale")):
        at = day_ns + (10 + i * 5) * HOUR_NS
        for active, offset in ((True, 0), (False, 20 * MIN_NS)):
            yield (
                f'alert,{gw},kind={kind} active={active},severity="warning",message="{kind}"'
                f" {at + offset}"
            )
    for i in range(10 - len(MODES) + 1):
        yield f'audit,{gw},kind=command message="lights scene {i}" {day_ns + (8 + i) * HOUR_NS}'
    for q in range(288):
        yield (
            f"gateway,branch={branch_id(branch)},device=gateway outbox_depth={q % 3}i,dropped=0i,"
            f"poll_errors={day}i,devices_down=0i,write_latency_ms=4.5 {day_ns + q * 5 * MIN_NS}"
        )


def branch_id(b: int) -> str:
    return f"branch-{b:03d}"


def load(server: Influxd, branches: int, days: int, end: datetime) -> int:
    """Write the fleet's days, a day of every branch per request; return the points."""
    first_ns = int((end - timedelta(days=days)).timestamp()) * 10**9
    points = 0
    for day in range(days):
        day_ns = first_ns + day * 24 * HOUR_NS
        for b0 in range(0, branches, 10):
            batch = [
                line
                for b in range(b0, min(branches, b0 + 10))
                for line in day_lines(b, day_ns, day)
            ]
            server.write("\n".join(batch), DATABASE)
            points += len(batch)
    return points


@dataclass(frozen=True, slots=True)
class Timing:
    dashboard: str
    panel: str
    ref: str
    seconds: float
    rows: int


def run_query(server: Influxd, text: str) -> tuple[float, int]:
    """One query as Grafana's data source sends it (GET /query, JSON); its time and rows.
    A query the server has not answered in QUERY_TIMEOUT_S counts as that long, -1 rows."""
    url = f"{server.url}/query?" + urllib.parse.urlencode({"q": text, "db": DATABASE})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT_S) as response:
            answer = json.loads(response.read())
    except TimeoutError:
        return QUERY_TIMEOUT_S, -1
    elapsed = time.perf_counter() - started
    for r in answer["results"]:
        if "error" in r:
            raise RuntimeError(f"{text}: {r['error']}")
    rows = sum(len(s.get("values", [])) for r in answer["results"] for s in r.get("series", []))
    return elapsed, rows


def load_dashboard(
    server: Influxd, board: Dashboard, key: str, *, span: str, one: str | None, now: datetime
) -> tuple[float, list[Timing]]:
    """The dashboard opened as Grafana opens it: its query variable first, then every panel
    query, at most IN_FLIGHT at once. Returns the wall time and each query's time."""
    started = time.perf_counter()
    variables: dict[str, VariableValue] = {}
    timings: list[Timing] = []
    rng = TimeRange(span, "now")

    def text(query: str, panel: Panel | None = None) -> str:
        return interpolate(
            query,
            variables,
            time_range=rng,
            panel_time_from=panel.time_from if panel else None,
            panel_interval=panel.interval if panel else None,
            max_data_points=panel.max_data_points if panel else None,
            now=now,
            timezone=board.timezone,
        )

    for v in board.variables:
        if v.kind == "query":
            q = text(v.query)
            elapsed, _ = run_query(server, q)
            timings.append(Timing(key, f"variable {v.name}", "", elapsed, 0))
            variables[v.name] = (
                VariableValue((one,), multi=True, include_all=True)
                if one
                else all_of([], all_value=v.all_value)
            )
        elif v.kind == "custom":
            variables[v.name] = VariableValue.single(v.custom_options()[0][1])
        else:
            variables[v.name] = VariableValue.single(v.default)
    jobs = [(p, t, text(t.query, p)) for p, t in board.targets()]
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        answers = list(pool.map(lambda job: run_query(server, job[2]), jobs))
    for (panel, target, _), (elapsed, rows) in zip(jobs, answers, strict=True):
        timings.append(Timing(key, panel.title, target.ref, elapsed, rows))
    return time.perf_counter() - started, timings


def main() -> None:  # noqa: PLR0915 - one bench, its steps in order
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=40)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3, help="loads per case; the median")
    parser.add_argument("--slowest", type=int, default=12)
    parser.add_argument("--hold", action="store_true", help="load, then keep influxd running")
    parser.add_argument("--url", help="query a server held by --hold (with --end)")
    parser.add_argument("--end", help="the held data's end, as --hold printed it")
    args = parser.parse_args()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    fleet = Fleet(
        id="bench",
        name="Bench",
        branches=tuple(
            BranchInfo(id=branch_id(b), name=f"Branch {b}", floor_area_m2=400.0 + 25 * b)
            for b in range(args.branches)
        ),
    )
    with Influxd() as server:
        if args.url:  # a server loaded by an earlier run (--hold): the queries only
            server.port = int(args.url.rsplit(":", 1)[1])
        else:
            server.start()
            setup = influx.setup_for(
                DATABASE, floor_areas={b.id: b.floor_area_m2 or 0.0 for b in fleet.branches}
            )
            influx.apply(server.url, setup)
            started = time.perf_counter()
            points = load(server, args.branches, args.days, end)
            print(
                f"{points:,} points for {args.branches} branches x {args.days} days written in"
                f" {time.perf_counter() - started:.0f} s"
            )
            started = time.perf_counter()
            end_ns = int(end.timestamp()) * 10**9
            rolled = influx.backfill(server.url, setup, end_ns - args.days * 24 * HOUR_NS, end_ns)
            took = time.perf_counter() - started
            print(f"roll-ups backfilled (hours and days): {rolled:,} points in {took:.0f} s")
        if args.hold:
            print(f"holding {server.url} (end {end.isoformat()}); Ctrl-C stops it", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(10**6)
            return
        if args.url:
            end = datetime.fromisoformat(args.end)
        boards = all_dashboards(fleet)
        print(
            f"\nqueries per dashboard load (variable + panels), {args.branches} branches: "
            + ", ".join(f"{k} {1 + sum(1 for _ in b.targets())}" for k, b in boards.items())
        )
        worst: dict[tuple[str, str, str, str, str], float] = {}
        print(f"\ndashboard load (median of {args.repeat}, {IN_FLIGHT} in flight), seconds:")
        print(f"{'dashboard':16} {'branch':8} " + " ".join(f"{r:>9}" for r in RANGES))
        failures = []
        for key, board in boards.items():
            for one in (None, branch_id(0)):
                cells = []
                for span in RANGES:
                    walls: list[float] = []
                    per: dict[tuple[str, str], list[float]] = defaultdict(list)
                    for _ in range(args.repeat):
                        wall, timings = load_dashboard(
                            server, board, key, span=span, one=one, now=end
                        )
                        walls.append(wall)
                        for t in timings:
                            per[(t.panel, t.ref)].append(t.seconds)
                    wall = statistics.median(walls)
                    cells.append(wall)
                    for (panel, ref), runs in per.items():
                        worst[(key, "one" if one else "All", span, panel, ref)] = statistics.median(
                            runs
                        )
                    if wall >= DASHBOARD_TARGET_S:
                        failures.append(f"{key} {span} {'one' if one else 'All'}: {wall:.2f} s")
                label = "one" if one else "All"
                print(f"{key:16} {label:8} " + " ".join(f"{c:9.3f}" for c in cells))
        print(f"\nslowest panel queries (median), target < {PANEL_TARGET_S:.0f} s:")
        ranked = sorted(worst.items(), key=lambda kv: kv[1], reverse=True)
        for (key, branch, span, panel, ref), seconds in ranked[: args.slowest]:
            print(f"  {seconds:7.3f} s  {key} / {panel} {ref} ({span}, branch {branch})")
        slow = [kv for kv in ranked if kv[1] >= PANEL_TARGET_S]
        boards_met = "met" if not failures else "NOT met: " + "; ".join(failures)
        print(
            f"\ntargets at {args.days} days x {args.branches} branches: every panel < 1 s:"
            f" {'met' if not slow else f'NOT met ({len(slow)} queries)'};"
            f" every dashboard < 3 s: {boards_met}"
        )


if __name__ == "__main__":
    main()
