"""Demo data for dashboard (and report) tests: the real demo, run once per session.

``demo_data`` runs ``edge.demo.run_demo`` — simulated devices over their real protocols, a real
gateway on an accelerated clock through one whole day (06:00 to midnight, local) — with the
session's private influxd as its InfluxDB sink, in a database of its own, set up as provisioning
sets one up (retention policies, the roll-ups' continuous queries, the branch's floor area of
``DEMO_AREA`` m²). The continuous queries see only recent hours of the server's clock, so the
demo day is rolled up once afterwards (``provisioning.influx.backfill``). Tests read what the
gateway wrote there; they must not write into it. Use it together with the ``influxd`` fixture
(which restarts the server if an earlier test stopped it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from openbranch.edge.demo.day import DEFAULT_CONFIG, run_demo
from openbranch.provisioning import influx
from tests.services import Influxd

DEMO_DAY = date(2026, 11, 30)  # a Monday: self-service, staffed, self-service, closed
DEMO_SECONDS = 20.0  # real seconds for the 18 simulated hours
DEMO_DATABASE = "demo"
DEMO_AREA = 800.0


@dataclass(frozen=True, slots=True)
class DemoData:
    """Where the demo's readings are and which span of time they cover."""

    database: str
    branch: str
    start: datetime  # 06:00 local on DEMO_DAY (aware)
    end: datetime  # the simulated end (aware)
    timezone: ZoneInfo
    summary: dict[str, Any]


@pytest.fixture(scope="session")
def demo_data(
    influxd_session: Influxd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoData]:
    tz = ZoneInfo("Europe/Copenhagen")
    start = datetime.combine(DEMO_DAY, dtime(6, 0), tz)
    workdir: Path = tmp_path_factory.mktemp("demo")
    influxd_session.start()
    influx.apply(influxd_session.url, influx.setup_for(DEMO_DATABASE))
    summary = asyncio.run(
        run_demo(
            config_path=DEFAULT_CONFIG,
            workdir=workdir,
            duration=DEMO_SECONDS,
            speed=18 * 3600 / DEMO_SECONDS,
            start=start,
            outage=True,
            view_every=DEMO_SECONDS + 1,
            quiet=True,
            influx=influxd_session,
            influx_database=DEMO_DATABASE,
        )
    )
    simulated = timedelta(seconds=18 * 3600)
    setup = influx.setup_for(DEMO_DATABASE, floor_areas={summary["branch"]: DEMO_AREA})
    influx.apply(influxd_session.url, setup)
    day_ns = int(start.timestamp()) * 10**9
    influx.backfill(
        influxd_session.url, setup, day_ns - 6 * 3600 * 10**9, day_ns + 19 * 3600 * 10**9
    )
    yield DemoData(
        database=DEMO_DATABASE,
        branch=summary["branch"],
        start=start,
        end=start + simulated,
        timezone=tz,
        summary=summary,
    )
    influxd_session.start()
    influxd_session.query(f'DROP DATABASE "{DEMO_DATABASE}"')
