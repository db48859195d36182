"""The central copy of the entry records (issue 15 point 5): audit records that carry a card's
pseudonym are deleted from InfluxDB once past the inventory's retention, by
`openbranch provision purge-entries`, which the rendered openbranch-purge.timer runs daily.
Against a real influxd; systemd's own checker on the rendered units."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from openbranch.edge.cli import main
from openbranch.provisioning.influx import purge_personal
from openbranch.provisioning.render import PURGE_TIMER, PURGE_UNIT
from tests.services import Influxd, free_port
from tests.support.systemd import verify_units

AARHUS = Path(__file__).resolve().parents[2] / "examples" / "inventories" / "aarhus.yaml"
DAY_NS = 24 * 3600 * 10**9


def audit(kind: str, message: str, age_days: float, now_ns: int) -> str:
    stamp = now_ns - int(age_days * DAY_NS)
    return f'audit,branch=viby,device=gateway,kind={kind} message="{message}" {stamp}'


def messages(influxd: Influxd, db: str) -> list[str]:
    rows = influxd.rows('SELECT "message" FROM "audit"', db)
    return sorted(str(message) for _time, message in rows)


def seed(influxd: Influxd, db: str, now_ns: int) -> None:
    influxd.query(f'CREATE DATABASE "{db}"')
    lines = [
        audit("entry", "reader-1: card 0f3a admitted (admitted)", 31, now_ns),
        audit("entry_lockout", "card 0f3a locked for 300 s after 3 wrong PINs", 40, now_ns),
        audit("command", "door.unlock := True (entry)", 31, now_ns),
        audit("entry", "reader-1: card 77b1 refused (wrong_pin)", 2, now_ns),
    ]
    influxd.write("\n".join(lines) + "\n", db)


def test_entry_records_past_retention_are_deleted_and_nothing_else(influxd: Influxd) -> None:
    now_ns = time.time_ns()
    seed(influxd, "purge_a", now_ns)
    assert purge_personal(influxd.url, "purge_a", days=30, now_ns=now_ns) == 2
    assert messages(influxd, "purge_a") == [
        "door.unlock := True (entry)",  # not personal: kept however old
        "reader-1: card 77b1 refused (wrong_pin)",  # 2 days old: kept
    ]
    assert purge_personal(influxd.url, "purge_a", days=30, now_ns=now_ns) == 0  # idempotent


def test_the_command_takes_the_retention_from_the_inventory(
    influxd: Influxd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now_ns = time.time_ns()
    seed(influxd, "libraries", now_ns)  # the database aarhus.yaml's sink names
    text = AARHUS.read_text(encoding="utf-8").replace(
        "  sinks:\n", "  entry_retention_days: 35\n  sinks:\n", 1
    )
    inventory = tmp_path / "aarhus.yaml"
    inventory.write_text(text, encoding="utf-8")
    assert main(["provision", "purge-entries", str(inventory), "--influxdb", influxd.url]) == 0
    assert "libraries: 1 entry records over 35 days deleted" in capsys.readouterr().out
    assert "card 0f3a admitted" in " ".join(messages(influxd, "libraries"))  # 31 < 35 days

    away = f"http://127.0.0.1:{free_port()}"  # nothing listens: the unit fails, and says why
    assert main(["provision", "purge-entries", str(inventory), "--influxdb", away]) == 1
    assert "entry records not purged" in capsys.readouterr().out


def test_the_rendered_purge_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    written = verify_units(
        tmp_path, {"openbranch-purge.service": PURGE_UNIT, "openbranch-purge.timer": PURGE_TIMER}
    )
    assert "provision purge-entries" in written["openbranch-purge.service"]
