"""Every panel query of every generated dashboard, after Grafana's macro and variable
substitution (``dashboards.interpolate``), runs against a real influxd holding a simulated day
of the demo branch and returns the series and columns the panel reads. Template-variable
queries run too. Grafana cannot run here: the transformations that join two queries are
checked with a stand-in (``grafana_standin``), not with Grafana."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from statistics import fmean
from typing import Any

import pytest

from openbranch.dashboards import BranchInfo, Dashboard, Fleet, Panel, Target, all_dashboards
from openbranch.dashboards.influxql import BRANCH, LOG_ROWS, TIERED_POINTS, f, select, t
from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode
from tests.dashboards.conftest import DEMO_AREA, DemoData
from tests.dashboards.grafana_standin import (
    calculate_binary,
    join_by_field,
    rows_of,
)
from tests.services import Influxd
from tests.support.interpolate import TimeRange, VariableValue, all_of, interpolate

AREA = DEMO_AREA  # what provisioning wrote as the branch's floor area (branch_info)


def demo_fleet(demo: DemoData, *, areas: bool = True) -> Fleet:
    return Fleet(
        id="demo",
        name="Demo Kommune",
        price_area="DK1",
        branches=(BranchInfo(id=demo.branch, name="Hasle", floor_area_m2=AREA if areas else None),),
    )


def frozen_now(demo: DemoData) -> datetime:
    """The dashboards' "now" in these tests: late on the demo day (its data is all before)."""
    return datetime.combine(demo.start.date(), time(23, 59), demo.timezone)


class Runner:
    """Resolves a dashboard's variables like Grafana does on load, then runs its queries."""

    def __init__(self, influxd: Influxd, demo: DemoData, board: Dashboard) -> None:
        self.influxd, self.demo, self.board = influxd, demo, board
        self.variables: dict[str, VariableValue] = {}
        for v in board.variables:  # in order: later variables may use earlier ones
            if v.kind == "query":
                answer = self.run(v.query)
                found = [row[1] for s in answer.get("series", []) for row in s["values"]]
                assert demo.branch in found, (board.uid, v.name, answer)
                self.variables[v.name] = all_of(found, all_value=v.all_value)
                self.options = found
            elif v.kind == "custom":
                self.variables[v.name] = VariableValue.single(v.custom_options()[0][1])
            else:
                self.variables[v.name] = VariableValue.single(v.default)

    def text(self, query: str, panel: Panel | None = None, **overrides: VariableValue) -> str:
        return interpolate(
            query,
            {**self.variables, **overrides},
            time_range=TimeRange(self.board.time_from, self.board.time_to),
            panel_time_from=panel.time_from if panel else None,
            panel_interval=panel.interval if panel else None,
            max_data_points=panel.max_data_points if panel else None,
            now=frozen_now(self.demo),
            frozen_now=True,
            timezone=self.board.timezone,
        )

    def run(self, query: str, panel: Panel | None = None, **overrides: VariableValue) -> Any:
        text = self.text(query, panel, **overrides)
        return self.influxd.query(text, self.demo.database)["results"][0]

    def target(self, panel: Panel, target: Target) -> Any:
        if panel.repeat:  # one panel per branch: the variable holds that branch alone
            one = VariableValue((self.demo.branch,), multi=True, include_all=True)
            return self.run(target.query, panel, **{panel.repeat: one})
        return self.run(target.query, panel)


def check_answer(board: Dashboard, panel: Panel, target: Target, answer: Any, branch: str) -> None:
    where = f"{board.uid} / {panel.title} / {target.ref}"
    series = answer.get("series", [])
    assert series, f"{where}: no series: {answer}"
    for s in series:
        missing = set(target.expects) - set(s["columns"])
        assert not missing, f"{where}: columns {s['columns']} lack {missing}"
        if "branch" in s.get("tags", {}):
            assert s["tags"]["branch"] == branch, where
    for column in target.expects:
        values = [row[s["columns"].index(column)] for s in series for row in s["values"]]
        assert any(v is not None for v in values), f"{where}: {column} is null everywhere"


@pytest.mark.parametrize(
    ("areas", "one_branch"),
    [(True, False), (False, False), (True, True)],
    ids=["areas-from-inventory", "area-variable", "one-branch-selected"],
)
def test_every_panel_query_returns_what_the_panel_reads(
    influxd: Influxd, demo_data: DemoData, areas: bool, one_branch: bool
) -> None:
    fleet = demo_fleet(demo_data, areas=areas)
    count = 0
    for board in all_dashboards(fleet).values():
        runner = Runner(influxd, demo_data, board)
        if one_branch:
            runner.variables["branch"] = VariableValue(
                (demo_data.branch,), multi=True, include_all=True
            )
        for panel, target in board.targets():
            check_answer(board, panel, target, runner.target(panel, target), demo_data.branch)
            count += 1
    assert count >= 30


def test_a_branch_filter_selects_that_branch_only(influxd: Influxd, demo_data: DemoData) -> None:
    board = all_dashboards(demo_fleet(demo_data))["fleet"]
    runner = Runner(influxd, demo_data, board)
    panel, target = next(board.targets())
    other = VariableValue(("elsewhere",), multi=True, include_all=True)
    assert "series" not in runner.run(target.query, panel, branch=other)
    mine = VariableValue((demo_data.branch,), multi=True, include_all=True)
    answer = runner.run(target.query, panel, branch=mine)
    assert [s["tags"]["branch"] for s in answer["series"]] == [demo_data.branch]
    outside = VariableValue.single("other\\-town")  # a municipality without the demo branch
    assert "series" not in runner.run(target.query, panel, municipality=outside)


def test_mode_now_and_the_mode_bands(influxd: Influxd, demo_data: DemoData) -> None:
    boards = all_dashboards(demo_fleet(demo_data))
    fleet_runner = Runner(influxd, demo_data, boards["fleet"])
    panel, target = next(boards["fleet"].targets())
    rows = rows_of(fleet_runner.target(panel, target))
    assert [r[schema.BRANCH_MODE_MODE.key] for r in rows] == [Mode.CLOSED]  # at 23:59
    branch = boards["branch"]
    runner = Runner(influxd, demo_data, branch)
    timeline = next(p for p in branch.panels if p.kind == "state-timeline")
    bands = [
        r[schema.BRANCH_MODE_MODE.key]
        for r in rows_of(runner.target(timeline, timeline.targets[0]))
    ]
    seen = [m for i, m in enumerate(bands) if m is not None and (i == 0 or bands[i - 1] != m)]
    assert seen == [Mode.CLOSED, Mode.SELF_SERVICE, Mode.STAFFED, Mode.SELF_SERVICE, Mode.CLOSED]
    mapped = timeline.mappings[0]["options"]
    assert {Mode.STAFFED, Mode.SELF_SERVICE, Mode.CLOSED} <= set(mapped)


def _panel(board: Dashboard, title: str) -> Panel:
    return next(p for p in board.panels if p.title == title)


def kwh_per_hour_by_mode(influxd: Influxd, demo: DemoData) -> dict[str, list[float]]:
    """kWh (electricity and heat) of each UTC hour, listed under the branch's mode at the end
    of that hour: from the raw points (no GROUP BY, no fill), bucketed and matched here."""

    def raw(query: str) -> list[dict[str, Any]]:
        where = f" WHERE \"branch\" = '{demo.branch}'"
        return rows_of(influxd.query(query + where, demo.database)["results"][0])

    hourly = raw('SELECT "consumption", "carrier" FROM "energy_hourly"')
    changes = raw('SELECT "mode" FROM "branch_mode"')
    kwh: dict[datetime, float] = defaultdict(float)
    for row in hourly:
        if row["carrier"] in ("electricity", "district_heating"):
            at = datetime.fromisoformat(row["time"])
            kwh[at.replace(minute=0, second=0, microsecond=0)] += row["consumption"]
    moments = sorted((datetime.fromisoformat(r["time"]), r["mode"]) for r in changes)
    out: dict[str, list[float]] = defaultdict(list)
    for hour, value in sorted(kwh.items()):
        before_end = [m for at, m in moments if at < hour + timedelta(hours=1)]
        if before_end:
            out[before_end[-1]].append(value)
    return dict(out)


def _per_mode(runner: Runner, panel: Panel) -> dict[str, dict[str, Any]]:
    """A per-mode panel's row of the demo branch, as {mode: {"sum": .., "mean": ..}}."""
    (row,) = [
        r
        for r in rows_of(runner.target(panel, panel.targets[0]))
        if r["branch"] == runner.demo.branch
    ]
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for column, value in row.items():
        mode, _, rest = column.partition(" ")
        if rest and mode in schema.ROLLUP_MODE.choices:
            out[mode][rest.split(" ")[-1]] = value
    return {mode: v for mode, v in out.items() if v.get("sum") is not None or v.get("hours")}


def test_per_mode_panels_sum_the_rollup_by_branch_and_mode(
    influxd: Influxd, demo_data: DemoData
) -> None:
    board = all_dashboards(demo_fleet(demo_data))["extended-hours"]
    runner = Runner(influxd, demo_data, board)
    assert not any(p.repeat for p in board.panels)  # one query for every branch
    by_mode = _per_mode(runner, _panel(board, "Energy per mode-hour"))
    assert {Mode.STAFFED, Mode.SELF_SERVICE, Mode.CLOSED} <= set(by_mode)
    staffed = by_mode[Mode.STAFFED]
    # Independently: the raw hourly points and the raw mode changes, bucketed here. By hand:
    # the demo's Monday is staffed 10:00-17:00, each change written within a minute after the
    # hour, so the hours 10 to 16 end staffed: seven.
    expected = kwh_per_hour_by_mode(influxd, demo_data)
    assert len(expected[Mode.STAFFED]) == 7
    assert staffed["count"] == 7
    for mode_, hours in expected.items():
        assert by_mode[mode_]["mean"] == pytest.approx(fmean(hours)), mode_
        assert by_mode[mode_]["sum"] == pytest.approx(sum(hours)), mode_
        assert by_mode[mode_]["count"] == len(hours), mode_
    # the demo loads the building while staffed: more kWh per hour than when closed
    assert staffed["mean"] > by_mode[Mode.CLOSED]["mean"]
    visits = _per_mode(runner, _panel(board, "Visits by mode"))
    assert visits[Mode.STAFFED]["sum"] > 0
    raw = raw_visits_per_hour(runner)
    assert sum(v["sum"] or 0 for v in visits.values()) == sum(raw.values())
    alerts = _per_mode(runner, _panel(board, "Alerts per mode-hour"))
    hours = {mode_: v["hours"] for mode_, v in alerts.items()}
    assert hours[Mode.STAFFED] == 7  # every hour of the mode, with or without alerts
    assert sum((v["sum"] or 0) for v in alerts.values()) >= 1  # the demo's outage


def test_hours_per_week_match_the_demo_calendar(influxd: Influxd, demo_data: DemoData) -> None:
    board = all_dashboards(demo_fleet(demo_data))["extended-hours"]
    runner = Runner(influxd, demo_data, board)
    panel = _panel(board, "Hours per week: self-service (gained) and staffed")
    self_service, staffed = (rows_of(runner.target(panel, t)) for t in panel.targets)
    # a Monday in the demo: 08-10 and 17-22 self-service, 10-17 staffed (5-minute steps; the
    # gateway writes the change up to a minute late on the accelerated clock)
    assert sum(r["self_service_hours"] for r in self_service) == pytest.approx(7, abs=0.25)
    assert sum(r["staffed_hours"] for r in staffed) == pytest.approx(7, abs=0.25)


def test_kwh_per_m2_and_per_visitor(influxd: Influxd, demo_data: DemoData) -> None:
    board = all_dashboards(demo_fleet(demo_data))["energy"]
    runner = Runner(influxd, demo_data, board)
    by_carrier = _panel(board, "kWh per branch and carrier")
    total = sum(r["kwh"] for r in rows_of(runner.target(by_carrier, by_carrier.targets[0])))
    per_m2 = _panel(board, "kWh per m²")
    assert len(per_m2.targets) == 3  # kWh per carrier and the areas, whatever the branches
    electricity, heat, areas = (rows_of(runner.target(per_m2, t)) for t in per_m2.targets)
    assert [r["floor_area_m2"] for r in areas] == [AREA]  # the fact provisioning wrote
    joined = join_by_field(
        join_by_field(electricity, heat, "branch", mode="outer"), areas, "branch", mode="outer"
    )
    for step in per_m2.transformations[1:]:
        joined = calculate_binary(joined, step["options"])
    (row,) = joined
    per_carrier = row["electricity_kwh_per_m2"] + row["district_heating_kwh_per_m2"]
    assert per_carrier == pytest.approx(total / AREA)
    panel = _panel(board, "kWh per visitor")
    kwh, visits = (rows_of(runner.target(panel, t)) for t in panel.targets)
    joined = join_by_field(kwh, visits, "branch", mode="inner")
    (row,) = calculate_binary(joined, panel.transformations[1]["options"])
    assert row["kwh_per_visitor"] == pytest.approx(total / row["visits"])
    co2e = _panel(board, "CO2e (location-based, factors from the variables)")
    electricity = rows_of(runner.target(co2e, co2e.targets[0]))
    factor = float(board.variable("co2e_electricity").default)
    assert electricity[0]["kg_co2e"] > 0
    assert factor == 110.0  # DK1's default placeholder


def test_interval_for_energy_panels_is_at_least_an_hour(
    influxd: Influxd, demo_data: DemoData
) -> None:
    board = all_dashboards(demo_fleet(demo_data))["branch"]
    runner = Runner(influxd, demo_data, board)
    panel = _panel(board, "Energy per carrier")
    assert "GROUP BY time(1h)" in runner.text(panel.targets[0].query, panel)
    timeline = _panel(board, "Mode")
    # a line per branch: at most TIERED_POINTS (90) points, 1 day / 90 -> Grafana's 15 minutes
    assert "GROUP BY time(15m)" in runner.text(timeline.targets[0].query, timeline)


# -- the roll-up gives the raw data's answers ------------------------------------------------


def raw_visits_per_hour(runner: Runner) -> dict[str, int]:
    """Visits per hour from the raw counter points: the query the panels ran before the
    roll-up (each counter's increase of its highest reading per hour, summed per hour)."""
    device = t(schema.Tag.DEVICE)
    inner = select(
        f'non_negative_difference(max({f(schema.OCCUPANCY_ENTERED)})) AS "visits"',
        schema.OCCUPANCY,
        group=f"time(1h), {BRANCH}, {device}",
    )
    query = select(
        'sum("visits") AS "visits"', f"({inner})", group=f"time(1h), {BRANCH}", fill="none"
    )
    return {r["time"]: r["visits"] for r in rows_of(runner.run(query))}


def test_rollup_backed_panels_give_the_raw_figures(influxd: Influxd, demo_data: DemoData) -> None:
    """Visits, people present, kWh per visitor and hours per mode: from branch_hourly (filled
    by provisioning's continuous queries, backfilled for the demo day) as from the raw points."""
    boards = all_dashboards(demo_fleet(demo_data))
    branch = Runner(influxd, demo_data, boards["branch"])
    people = _panel(boards["branch"], "People present and visits")
    assert "GROUP BY time(1h)" in branch.text(people.targets[1].query, people)
    visits = {r["time"]: r["visits"] for r in rows_of(branch.target(people, people.targets[1]))}
    raw = raw_visits_per_hour(branch)
    assert visits == raw
    assert sum(raw.values()) > 50  # the demo's visitors
    present = [r["present"] for r in rows_of(branch.target(people, people.targets[0]))]
    device = t(schema.Tag.DEVICE)
    raw_net = select(
        f"difference(max({f(schema.OCCUPANCY_ENTERED)}))"
        f' - difference(max({f(schema.OCCUPANCY_EXITED)})) AS "net"',
        schema.OCCUPANCY,
        group=f"time(1h), {BRANCH}, {device}",
    )
    raw_present = select(
        'cumulative_sum(sum("net")) AS "present"', f"({raw_net})", group=f"time(1h), {BRANCH}"
    )
    raw_rows = [r["present"] for r in rows_of(branch.run(raw_present))]
    # the roll-up's first hour has its entries since the reading before it (the raw query's
    # first hour has no earlier reading in its range): the same curve, shifted by them
    shift = present[-1] - raw_rows[-1]
    assert [p - shift for p in present[-len(raw_rows) :]] == raw_rows
    assert max(present) > 0
    energy = Runner(influxd, demo_data, boards["energy"])
    per_visitor = _panel(boards["energy"], "kWh per visitor")
    (total,) = rows_of(energy.target(per_visitor, per_visitor.targets[1]))
    assert total["visits"] == sum(raw.values())


def test_queries_do_not_grow_with_the_branches() -> None:
    """A dashboard sends as many queries for 400 branches as for one."""

    def fleet(n: int) -> Fleet:
        return Fleet(
            id="x",
            name="X",
            branches=tuple(
                BranchInfo(id=f"b{i}", name=f"B{i}", floor_area_m2=500.0) for i in range(n)
            ),
        )

    def counts(n: int) -> dict[str, int]:
        return {k: sum(1 for _ in b.targets()) for k, b in all_dashboards(fleet(n)).items()}

    assert counts(1) == counts(400)
    assert all(not p.repeat for b in all_dashboards(fleet(3)).values() for p in b.panels)


def test_log_tables_are_bounded_and_the_branch_dashboard_opens_on_one_branch(
    influxd: Influxd, demo_data: DemoData
) -> None:
    board = all_dashboards(demo_fleet(demo_data))["branch"]
    assert board.variable("branch").default == demo_data.branch
    assert board.refresh != "1m"
    runner = Runner(influxd, demo_data, board)
    for title in (
        "Events: mode changes, commands, announcements",
        "Alerts raised and cleared by the gateway",
    ):
        panel = _panel(board, title)
        assert panel.targets[0].query.endswith(f"LIMIT {LOG_ROWS}")
        rows = rows_of(runner.target(panel, panel.targets[0]))
        assert 0 < len(rows) <= LOG_ROWS
        assert [r["time"] for r in rows] == sorted((r["time"] for r in rows), reverse=True)
        assert {r["branch"] for r in rows} == {demo_data.branch}


# -- a line reads raw points, then the hourly roll-up, then the daily one ---------------------


def _over(
    runner: Runner, target: Target, *, days: int, interval: str, fill: str = ""
) -> dict[tuple[str, ...], Any]:
    """``target``'s rows on the demo day (a UTC day), the range running from that day's
    midnight for ``days``: 1 reads the raw tier, 10 the hourly roll-up, 100 the daily one
    (``${__to}`` is the range's end). Keyed by time and tags; ``fill`` replaces the query's."""
    start = datetime.combine(runner.demo.start.date(), time(0), UTC)
    end = start + timedelta(days=days)
    query = target.query
    if fill:
        query = query.replace("fill(previous)", f"fill({fill})")
    text = interpolate(
        query,
        runner.variables,
        time_range=TimeRange(start.isoformat(), end.isoformat()),
        panel_interval=interval,
        now=end,
        frozen_now=True,
        timezone=runner.board.timezone,
    )
    out = {}
    for row in rows_of(runner.influxd.query(text, runner.demo.database)["results"][0]):
        at = datetime.fromisoformat(row.pop("time"))
        if start <= at < start + timedelta(days=1):
            tags = tuple(str(v) for k, v in sorted(row.items()) if k not in target.expects)
            out[(at.isoformat(), *tags)] = {k: row[k] for k in target.expects}
    assert out, f"no rows on the demo day: {text}"
    return out


@pytest.mark.parametrize("ref", ["A", "B"])  # open, locked
def test_a_state_line_reads_the_same_from_raw_points_hours_and_days(
    influxd: Influxd, demo_data: DemoData, ref: str
) -> None:
    """The doors' last state per hour (per day) is the same from the raw points as from the
    hourly (daily) roll-up: raw points are read for the range's last 7 days only."""
    board = all_dashboards(demo_fleet(demo_data))["branch"]
    runner = Runner(influxd, demo_data, board)
    (target,) = (x for x in _panel(board, "Doors: open and locked").targets if x.ref == ref)
    raw = _over(runner, target, days=1, interval="1h")
    assert raw == _over(runner, target, days=10, interval="1h")
    assert _over(runner, target, days=1, interval="1d") == _over(
        runner, target, days=100, interval="1d"
    )
    assert len(raw) >= 18  # every door through the demo's hours


@pytest.mark.parametrize(
    "title", ["Lights (dimming level per zone)", "Indoor temperature", "Indoor CO2"]
)
def test_a_mean_line_reads_the_same_from_raw_points_hours_and_days(
    influxd: Influxd, demo_data: DemoData, title: str
) -> None:
    """An hour's mean from the raw points equals the hourly roll-up's; a day's mean from the
    daily roll-up is the mean of its hours' means (decision 101)."""
    board = all_dashboards(demo_fleet(demo_data))["branch"]
    runner = Runner(influxd, demo_data, board)
    target = _panel(board, title).targets[0]
    (column,) = target.expects
    raw = _over(runner, target, days=1, interval="1h", fill="none")
    hours = _over(runner, target, days=10, interval="1h", fill="none")
    assert raw.keys() == hours.keys()
    for key, row in raw.items():
        assert hours[key][column] == pytest.approx(row[column])
    days = _over(runner, target, days=100, interval="1d", fill="none")
    per_series: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for (_, *tags), row in hours.items():
        per_series[tuple(tags)].append(row[column])
    assert {tuple(tags) for _, *tags in days} == set(per_series)
    for (_, *tags), row in days.items():
        assert row[column] == pytest.approx(fmean(per_series[tuple(tags)]))


@pytest.mark.parametrize(
    ("board_key", "title", "ref"),
    [
        ("branch", "People present and visits", "A"),
        ("branch", "People present and visits", "B"),
        ("branch", "Energy per carrier", "A"),
        ("energy", "Hourly kWh", "A"),
    ],
)
def test_a_sum_line_reads_the_same_from_hours_and_days(
    influxd: Influxd, demo_data: DemoData, board_key: str, title: str, ref: str
) -> None:
    """A day's visits, net entries and kWh from the daily roll-up are its hours' (the panel's
    interval is then a day: TIERED_POINTS)."""
    board = all_dashboards(demo_fleet(demo_data))[board_key]
    runner = Runner(influxd, demo_data, board)
    panel = _panel(board, title)
    (target,) = (x for x in panel.targets if x.ref == ref)
    assert panel.max_data_points == TIERED_POINTS
    hours = _over(runner, target, days=1, interval="1d")
    days = _over(runner, target, days=100, interval="1d")
    flat = {(k, c): v for k, row in hours.items() for c, v in row.items()}
    assert flat == pytest.approx({(k, c): v for k, row in days.items() for c, v in row.items()})
    assert any(flat.values())
