"""The utility's meter: Eloverblik's hours imported into a real influxd and reconciled with the
gateway's ``energy_hourly``, every figure by hand. Eloverblik itself cannot run here: the
data hub is the stand-in of ``tests/integrations/eloverblik/standin.py``.

28-30 March 2026 (Copenhagen; the clocks spring forward on the 29th: 24 + 23 + 24 = 71 h).
Utility: 2 kWh every hour; the 30th arrives late (held back at the first import).
Gateway ``main``: 2.1 kWh every hour of the 28th and 29th (47 h) except three hours of the 29th
it interpolated at 1 kWh; on the 30th nothing for its first 4 hours, then 1.9 kWh (20 h).

First import (30th missing): compared 44 h, gateway 92.4 against utility 88 kWh: +4.4 kWh,
+5 % > 2 % -> utility_drift raised. Checked: 3 h, gateway 3 kWh, utility 6 kWh. Reconciled:
92.4 + 6 + 20 x 1.9 = 136.4 kWh.
Second import (the 30th has arrived): compared 64 h, gateway 92.4 + 38 = 130.4 against 128
kWh: +2.4 kWh, +1.875 % -> within the margin, the alert cleared. Filled: the 30th's first
4 h, 8 kWh. Reconciled: 130.4 + 6 + 8 = 144.4 kWh; utility 142, gateway 133.4 kWh.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from openbranch.dashboards import BranchInfo, Fleet, all_dashboards
from openbranch.dashboards.report.source import InfluxSource
from openbranch.dashboards.report.utility import MonthReconciliation, reconcile
from openbranch.edge.cli import main
from openbranch.edge.core import schema
from openbranch.integrations.eloverblik import load_eloverblik
from tests.dashboards.report.handmade import EL, INTERPOLATED, hour
from tests.integrations.eloverblik.standin import StandIn
from tests.services import Influxd
from tests.support.interpolate import TimeRange, VariableValue, interpolate

D = Decimal
MP = "571313174100000017"
DAYS = (date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 30))
START = datetime(2026, 3, 27, 23, tzinfo=UTC)  # 28 March 00:00 CET
INTERPOLATED_HOURS = {30, 31, 32}  # of the 71, all on the 29th
GATEWAY_MISSING = {47, 48, 49, 50}  # the 30th's first four hours


def gateway_lines() -> list[str]:
    out = []
    for i in range(71):
        t = START + timedelta(hours=i)
        if i in GATEWAY_MISSING:
            continue
        if i in INTERPOLATED_HOURS:
            out.append(hour("aby", "main", EL, t, 1.0, quality=INTERPOLATED))
        else:
            out.append(hour("aby", "main", EL, t, 2.1 if i < 47 else 1.9))
    return out


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn()
    for day, n in zip(DAYS, (24, 23, 24), strict=True):
        server.publish(MP, day, [("2", "A04")] * n)
    server.hold_back(MP, DAYS[2])
    yield server
    server.close()


@pytest.fixture
def config(tmp_path: Path, standin: StandIn) -> Path:
    token = tmp_path / "token"
    token.write_text("refresh-ok\n", encoding="utf-8")
    path = tmp_path / "eloverblik.yaml"
    path.write_text(
        f"eloverblik:\n  url: {standin.url}\n  refresh_token: {{file: {token}}}\n"
        f"  margin_pct: 2\n  min_hours: 24\n"
        f"metering_points:\n  - {{id: '{MP}', branch: aby, device: main}}\n",
        encoding="utf-8",
    )
    return path


def _args(config: Path, influxd: Influxd, db: str, out: Path) -> list[str]:
    return [
        "report", "utility", "--config", str(config), "--from", "2026-03-28",
        "--to", "2026-03-30", "--influx", influxd.url, "--db", db, "--format", "csv",
        "--out", str(out),
    ]  # fmt: skip


def _alerts(influxd: Influxd, db: str) -> list[dict[str, Any]]:
    answer = influxd.query(
        f'SELECT "active", "severity", "message", "kind" FROM "{schema.ALERT.name}"', db
    )
    series = answer["results"][0].get("series", [])
    if not series:
        return []
    columns = series[0]["columns"]
    return [dict(zip(columns, row, strict=True)) for row in series[0]["values"]]


def _fleet_alert_table(influxd: Influxd, db: str) -> dict[str, list[Any]]:
    """The fleet dashboard's alert table for branch aby, as Grafana would query it: kind ->
    [active, severity, message]."""
    fleet = Fleet(id="t", name="T", price_area="DK1", branches=(BranchInfo(id="aby", name="Aby"),))
    board = all_dashboards(fleet)["fleet"]
    panel = next(p for p in board.panels if p.title.startswith("Alerts (last state"))
    aby = VariableValue.single("aby")
    query = interpolate(
        panel.targets[0].query,
        {"municipality": aby, "branch": aby},
        time_range=TimeRange(board.time_from, board.time_to),
        panel_time_from=panel.time_from,
        timezone=board.timezone,
    )
    series = influxd.query(query, db)["results"][0].get("series", [])
    return {s["tags"]["kind"]: s["values"][0][1:] for s in series}


def _month(influxd: Influxd, db: str, config: Path) -> MonthReconciliation:
    with InfluxSource(url=influxd.url, database=db) as source:
        (row,) = reconcile(source, load_eloverblik(config), DAYS[0], DAYS[2])
    return row


def test_a_late_day_reconciled_by_hand_and_the_alert_raised_then_cleared(
    config: Path, standin: StandIn, influxd: Influxd, influx_db: str, tmp_path: Path
) -> None:
    influxd.write("\n".join(gateway_lines()), influx_db)
    out = tmp_path / "u.csv"
    assert main(_args(config, influxd, influx_db, out)) == 0
    first = _month(influxd, influx_db, config)
    assert (first.utility_hours, first.utility_kwh) == (47, 94)
    assert (first.compared_hours, first.compared_gateway_kwh, first.compared_utility_kwh) == (
        44, D("92.4"), 88,
    )  # fmt: skip
    assert first.difference_pct == 5 and first.drift
    assert (first.checked_hours, first.checked_gateway_kwh, first.checked_utility_kwh) == (3, 3, 6)
    assert (first.filled_hours, first.reconciled_kwh) == (0, D("136.4"))
    imported = (tmp_path / "u-import.csv").read_text(encoding="utf-8")
    assert f"{MP},aby,47,2026-03-30" in imported  # the late day, still incomplete
    (raised,) = _alerts(influxd, influx_db)
    assert raised["kind"] == f"{schema.UTILITY_DRIFT}:{MP}" and raised["active"] is True
    assert "2026-03 +5.0 %" in raised["message"] and raised["severity"] == "warning"
    shown = _fleet_alert_table(influxd, influx_db)[f"{schema.UTILITY_DRIFT}:{MP}"]
    assert shown[:2] == [True, "warning"]

    standin.publish(MP, DAYS[2], [("2", "A04")] * 24)  # the late day arrives
    assert main(_args(config, influxd, influx_db, out)) == 0
    second = _month(influxd, influx_db, config)
    assert (second.utility_hours, second.utility_kwh) == (71, 142)
    assert (second.gateway_hours, second.gateway_kwh) == (67, D("133.4"))
    assert (second.compared_hours, second.compared_gateway_kwh) == (64, D("130.4"))
    assert second.difference_pct == D("1.875") and not second.drift
    assert (second.filled_hours, second.filled_kwh, second.reconciled_kwh) == (4, 8, D("144.4"))
    text = out.read_text(encoding="utf-8").splitlines()
    assert text[0].startswith("branch,metering point (utility),gateway meter,month,utility hours")
    assert text[1].startswith(
        f"aby,{MP},main,2026-03,71,142.000,67,133.400,64,130.400,128.000,2.400,1.88,2,"
        "within margin,3,3.000,6.000,4,8.000,0,144.400"
    )
    cleared = _alerts(influxd, influx_db)[-1]
    assert cleared["kind"] == f"{schema.UTILITY_DRIFT}:{MP}" and cleared["active"] is False
    assert _fleet_alert_table(influxd, influx_db)[cleared["kind"]][0] is False
    notes = (tmp_path / "u-notes.csv").read_text(encoding="utf-8")
    assert "Eloverblik (DataHub), utility_hourly" in notes and "energy_hourly" in notes


def test_a_refused_refresh_token_is_an_error_and_an_alert_until_it_works_again(
    config: Path,
    standin: StandIn,
    influxd: Influxd,
    influx_db: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    standin.state.refresh_tokens = {"a-new-one"}
    out = config.parent / "u.xlsx"
    args = [*_args(config, influxd, influx_db, out)[:-4], "--format", "xlsx", "--out", str(out)]
    assert main(args) == 2
    assert "refused the refresh token (401)" in capsys.readouterr().err
    (alert,) = _alerts(influxd, influx_db)
    assert (alert["kind"], alert["active"], alert["severity"]) == (
        schema.UTILITY_TOKEN, True, "critical",
    )  # fmt: skip
    assert not out.exists()
    standin.state.refresh_tokens = {"refresh-ok"}
    assert main(args) == 0
    assert _alerts(influxd, influx_db)[-1]["active"] is False
    wb = load_workbook(out, read_only=True)
    try:
        assert wb.sheetnames == ["Reconciliation", "Import", "Notes"]
    finally:
        wb.close()


def test_a_token_that_cannot_be_read_is_named(
    tmp_path: Path, influxd: Influxd, influx_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(
        "eloverblik:\n  refresh_token: {env: OPENBRANCH_TEST_NO_SUCH_VARIABLE}\n"
        f"metering_points:\n  - {{id: '{MP}', branch: aby, device: main}}\n",
        encoding="utf-8",
    )
    args = ["report", "utility", "--config", str(path), "--influx", influxd.url]
    assert main([*args, "--db", influx_db, "--out", str(tmp_path / "x.csv")]) == 2
    assert "OPENBRANCH_TEST_NO_SUCH_VARIABLE is not set" in capsys.readouterr().err
