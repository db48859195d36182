"""Closed-hours waste through a real gateway into a real influxd (issue 18 point 1).

A gateway with opening hours 08:00-20:00 every day is handed a main meter's readings every
15 minutes (through its committer, as a coordinator hands them over) for 2027-01-04 00:00 to
2027-01-12 08:00 local: 0.5 kWh/h closed on even dates and 0.6 on odd ones, 5 kWh/h open,
and a 2 kW light left on from 22:00 on the 11th to 06:00 on the 12th. Its energy accounts
close the hours, the waste watch judges the closed ones, and the drainer writes everything to
influxd, where the test reads it: 104 closed hours, 16 kWh of excess (8 hours x 2 kWh), and
the alert raised (while it is, ``gateway status`` and Home Assistant's hook see it) and
cleared; and a gateway started again on the same store has the base load's window back.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import GatewayConfig
from openbranch.edge.core.reading import Reading
from openbranch.edge.core.registry import default_registry
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.edge.runtime.statusfile import read_status
from tests.services import Influxd
from tests.support.waiting import until

TZ = ZoneInfo("Europe/Copenhagen")
KIND = "closed_hours_waste:main"
DAY = [{"start": "08:00", "end": "20:00", "mode": "staffed"}]


def use(t: datetime) -> float:
    """kWh in the local hour starting at ``t`` (the story in the module docstring)."""
    if 8 <= t.hour < 20:
        return 5.0
    if (t.date(), t.hour >= 22) == (date(2027, 1, 11), True) or (
        t.date() == date(2027, 1, 12) and t.hour < 6
    ):
        return 2.5
    return 0.6 if t.day % 2 else 0.5


def meter(start: datetime, end: datetime, register: float) -> tuple[list[Reading], float]:
    """The main meter's readings every 15 minutes from ``start`` up to ``end`` included."""
    out = []
    t = start
    while t <= end:
        out.append(
            Reading(
                branch="w1",
                device="main",
                measurement=schema.ENERGY,
                fields={schema.ENERGY_REGISTER.key: register},
                tags={schema.Tag.CARRIER.value: schema.Carrier.ELECTRICITY.value},
                time=t,
            )
        )
        register += use(t.astimezone(TZ)) / 4
        t += timedelta(minutes=15)
    return out, register


def test_a_light_left_on_overnight_reaches_influxdb_status_and_home_assistant(
    tmp_path: Path, influxd: Influxd, influx_db: str
) -> None:
    config = GatewayConfig.model_validate(
        {
            "branch": {"id": "w1", "name": "Waste", "timezone": "Europe/Copenhagen"},
            "store": {"path": str(tmp_path / "outbox.db")},
            "sinks": [{"type": "influxdb_v1", "url": influxd.url, "database": influx_db}],
            "hours": {
                "weekly": dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), DAY)
            },
        }
    )
    start = datetime.combine(date(2027, 1, 4), time(0), TZ).astimezone(UTC)
    midnight = datetime(2027, 1, 12, 1, 30, tzinfo=TZ).astimezone(UTC)
    morning = datetime(2027, 1, 12, 8, tzinfo=TZ).astimezone(UTC)
    clock = ScaledClock(start=morning, speed=60)
    outbox = open_outbox(config)
    gateway = Gateway(
        config=config, registry=default_registry(), clock=clock, outbox=outbox, extensions=[]
    )
    for drainer in gateway.drainers:
        drainer.flush_interval = 0.05
    heard: list[str] = []  # what Home Assistant's alert entities hear (``on_alert``)
    gateway.journal.raised.append(heard.append)
    night, register = meter(start, midnight, 1000.0)
    rest, _ = meter(midnight + timedelta(minutes=15), morning, register)

    def status_alerts() -> dict[str, str]:
        status = read_status(outbox.path)
        return {} if status is None else status["alerts"]

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            gateway.committer.accept(night)  # up to 01:30: three excess hours closed
            await until(lambda: KIND in status_alerts(), 20, "the alert in gateway status")
            assert heard == [KIND]
            gateway.committer.accept(rest)  # the 06:00-07:00 hour is back at base
            await until(lambda: KIND not in gateway.journal.active, 20, "the alert cleared")
            await until(lambda: outbox.depth(gateway.drainers[0].name) == 0, 20, "all delivered")
        finally:
            stop.set()
            await task

    asyncio.run(main())
    outbox.close()
    # the base load's window is in the store's state: a new gateway on it goes on from there
    again = open_outbox(config)
    restarted = Gateway(
        config=config, registry=default_registry(), clock=clock, outbox=again, extensions=[]
    )
    assert restarted.waste is not None
    state = restarted.waste.detector.state("main", schema.Carrier.ELECTRICITY.value)
    assert len(state.hours) == 104 and state.run == 0
    assert state.last_hour == int(morning.timestamp()) // 3600 - 1  # 07:00-08:00 local
    again.close()

    closed = influxd.rows(
        "SELECT count(consumption), sum(excess) FROM closed_hours"
        " WHERE branch = 'w1' AND device = 'main' AND carrier = 'electricity'",
        influx_db,
    )
    # 8 days x 12 closed hours + 00:00-08:00 on the 12th = 104; excess 8 x (2.5 - 0.5)
    (row,) = closed
    assert row[1] == 104
    assert row[2] == pytest.approx(16.0, abs=1e-6)
    excess = influxd.rows(
        "SELECT consumption, base_load, excess FROM closed_hours WHERE verdict = 'excess'",
        influx_db,
    )
    assert len(excess) == 8
    assert all(r[2] == pytest.approx(0.5, abs=1e-6) for r in excess)  # base load 0.5 kWh/h
    alerts = influxd.rows(f"SELECT active, message FROM alert WHERE kind = '{KIND}'", influx_db)
    assert [r[1] for r in alerts] == [True, False]
    assert "for 3 closed hours since 2027-01-11 22:00" in alerts[0][2]
    assert alerts[1][2].endswith(
        "8 closed hours from 2027-01-11 22:00 used 16.00 kWh above the base load"
    )
