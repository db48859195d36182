"""The demo fixture leaves a whole simulated day in influxd: every measurement the dashboards
read is there, for the demo branch."""

from __future__ import annotations

from openbranch.edge.core import schema
from openbranch.edge.core.schedule import Mode
from tests.dashboards.conftest import DemoData
from tests.services import Influxd

READ_BY_DASHBOARDS = (
    schema.BRANCH_MODE,
    schema.OCCUPANCY,
    schema.DOOR,
    schema.LIGHT,
    schema.INDOOR,
    schema.ENERGY,
    schema.ENERGY_HOURLY,
    schema.ALERT,
    schema.GATEWAY,
)


def test_demo_day_reaches_influxd(influxd: Influxd, demo_data: DemoData) -> None:
    for m in READ_BY_DASHBOARDS:
        rows = influxd.rows(f'SELECT count(*) FROM "{m.name}"', demo_data.database)
        assert rows, m.name
    modes = influxd.rows(
        f'SELECT "{schema.BRANCH_MODE_MODE.key}" FROM "{schema.BRANCH_MODE.name}"',
        demo_data.database,
    )
    assert {Mode.STAFFED, Mode.SELF_SERVICE, Mode.CLOSED} <= {r[1] for r in modes}
