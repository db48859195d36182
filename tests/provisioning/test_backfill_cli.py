"""Hours older than the continuous queries look are rolled up by `openbranch provision
backfill` (issue 17: a central InfluxDB back after more than seven days gets the backlog the
gateways kept, but its year-long panels read the roll-up). Against a real influxd."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openbranch.edge.cli import main
from openbranch.edge.core import schema
from openbranch.provisioning import influx
from tests.services import Influxd

AARHUS = Path(__file__).resolve().parents[2] / "examples" / "inventories" / "aarhus.yaml"
DB = "libraries"  # the database aarhus.yaml's sink names
HOUR_NS = 3600 * 10**9


def test_a_backlog_older_than_a_week_is_rolled_up_by_the_command(
    influxd: Influxd, capsys: pytest.CaptureFixture[str]
) -> None:
    influxd.query(f'DROP DATABASE "{DB}"')
    influx.apply(influxd.url, influx.setup_for(DB))
    ten_days_ago = (time.time_ns() // HOUR_NS - 240) * HOUR_NS  # an hour the queries never see
    lines = [
        f"{schema.ENERGY_HOURLY.name},branch=viby,device=main-meter,carrier=electricity"
        f" {schema.HOURLY_CONSUMPTION.key}=12.5 {ten_days_ago}",
        f"{schema.ENERGY_HOURLY.name},branch=viby,device=heat-meter,carrier=district_heating"
        f" {schema.HOURLY_CONSUMPTION.key}=30.0 {ten_days_ago}",
    ]
    influxd.write("\n".join(lines) + "\n", DB)
    kwh = f'SELECT "{schema.ROLLUP_KWH.key}" FROM "forever"."{schema.BRANCH_HOURLY.name}"'
    assert influxd.rows(kwh, DB) == []  # the continuous queries look back seven days only

    since = datetime.fromtimestamp(ten_days_ago / 1e9, UTC) - timedelta(days=1)
    argv = ["provision", "backfill", str(AARHUS), "--since", since.isoformat()]
    assert main([*argv, "--influxdb", influxd.url]) == 0
    assert "points rolled up (hours, days)" in capsys.readouterr().out
    assert [value for _t, value in influxd.rows(kwh, DB)] == [42.5]  # electricity + heat

    assert main(["provision", "backfill", str(AARHUS), "--since", "2026-01-01"]) == 2
    assert "needs a UTC offset" in capsys.readouterr().out
    influxd.query(f'DROP DATABASE "{DB}"')
