"""The InfluxDB setup is applied to a real influxd; a second apply changes nothing."""

from __future__ import annotations

import uuid

from openbranch.provisioning.influx import apply, setup_for
from tests.services import Influxd

ROLLUPS = (  # branch_hourly's, in the order they run (each reads what the ones before wrote)
    "cq_occupancy_hourly",
    "cq_branch_mode_hourly",
    "cq_energy_hourly_kwh",
    "cq_energy_hourly_electricity",
    "cq_energy_hourly_heat",
    "cq_alert_hourly",
    "cq_occupancy_visits",
    "cq_branch_hourly_closed",
    "cq_branch_hourly_staffed",
    "cq_branch_hourly_self_service",
    "cq_branch_hourly_emergency",
    "cq_branch_hourly_maintenance",
    "cq_door_hourly",  # the raw lines' hours, into forever under their own names
    "cq_indoor_hourly",
    "cq_light_hourly",
    "cq_branch_hourly_daily",  # the days, into daily, from the hours above
    "cq_door_daily",
    "cq_indoor_daily",
    "cq_light_daily",
    "cq_energy_hourly_daily",
    "cq_closed_hours_daily",
)


def test_apply_creates_policies_and_queries_then_changes_nothing(influxd: Influxd) -> None:
    db = "p_" + uuid.uuid4().hex[:10]
    setup = setup_for(db, floor_areas={"hasle": 800.0, "viby j": 1250.5})
    first = apply(influxd.url, setup)
    assert first == [
        f"created database {db}",
        "created retention policy raw",
        "created retention policy forever",
        "created retention policy daily",
        "created continuous query cq_energy_hourly_forever",
        *(f"created continuous query {name}" for name in ROLLUPS),
        "wrote the floor area of 2 branch(es)",
    ]
    assert apply(influxd.url, setup) == []  # idempotent
    policies = influxd.query(f'SHOW RETENTION POLICIES ON "{db}"')["results"][0]["series"][0]
    rows = {v[0]: dict(zip(policies["columns"], v, strict=True)) for v in policies["values"]}
    assert rows["raw"]["duration"] == "9600h0m0s"
    assert rows["raw"]["default"] is True
    assert rows["forever"]["duration"] == "0s"
    assert rows["forever"]["shardGroupDuration"] == f"{26 * 7 * 24}h0m0s"
    assert rows["daily"]["duration"] == "0s"
    assert rows["daily"]["shardGroupDuration"] == f"{104 * 7 * 24}h0m0s"
    shown = influxd.query("SHOW CONTINUOUS QUERIES")["results"][0]["series"]
    names = {v[0] for s in shown if s["name"] == db for v in s["values"]}
    assert names == {"cq_energy_hourly_forever", *ROLLUPS}
    areas = influxd.query('SELECT "floor_area_m2", "branch" FROM "forever"."branch_info"', db)[
        "results"
    ][0]["series"][0]["values"]
    assert sorted(row[1:] for row in areas) == [[800.0, "hasle"], [1250.5, "viby j"]]
    edited = setup_for(db, raw_days=800, floor_areas={"hasle": 810.0, "viby j": 1250.5})
    changed = apply(influxd.url, edited)  # an edit to the inventory
    assert changed == ["altered retention policy raw", "wrote the floor area of 1 branch(es)"]
    influxd.query(f'DROP DATABASE "{db}"')


def test_apply_widens_the_shards_of_a_roll_up_policy_made_before(influxd: Influxd) -> None:
    """A database set up before the daily roll-up: its ``forever`` policy has InfluxDB's weekly
    shards; apply gives it 26-week shards (new shards only: InfluxDB keeps the old ones) and
    creates ``daily``."""
    db = "p_" + uuid.uuid4().hex[:10]
    influxd.query(f'CREATE DATABASE "{db}"')
    influxd.query(f'CREATE RETENTION POLICY "raw" ON "{db}" DURATION 400d REPLICATION 1 DEFAULT')
    influxd.query(f'CREATE RETENTION POLICY "forever" ON "{db}" DURATION INF REPLICATION 1')
    changes = apply(influxd.url, setup_for(db))
    assert changes[:2] == ["altered retention policy forever", "created retention policy daily"]
    policies = influxd.query(f'SHOW RETENTION POLICIES ON "{db}"')["results"][0]["series"][0]
    shards = {v[0]: v[policies["columns"].index("shardGroupDuration")] for v in policies["values"]}
    assert shards["forever"] == f"{26 * 7 * 24}h0m0s"
    assert apply(influxd.url, setup_for(db)) == []
    influxd.query(f'DROP DATABASE "{db}"')
