"""The gateway and the hours imported from the website: it decides by them, audits every change
once (what, from where, when), says how old they are (`gateway status`, ``hours_stale``) and
goes on with what it has when the file cannot be read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openbranch.edge.cli import main
from openbranch.edge.core import schema
from openbranch.edge.core.clock import ScaledClock
from openbranch.edge.core.config import load_gateway_config
from openbranch.edge.core.imported import ImportedHours, read_imported, write_yaml
from openbranch.edge.core.registry import default_registry, load_checked
from openbranch.edge.core.schedule import Mode
from openbranch.edge.core.yamlsource import ConfigError
from openbranch.edge.runtime.gateway import Gateway, open_outbox
from openbranch.edge.runtime.hours_watch import AUDITED_STATE, HoursWatch
from openbranch.edge.runtime.journal import Journal
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import HOURS_TIMER, HOURS_UNIT, render
from openbranch.provisioning.secrets import Secrets
from tests.integrations.dplcms.server import DplStandIn, fixture
from tests.integrations.dplcms.test_hours import WEEK, gateway_yaml
from tests.support.systemd import HERE, verify_units
from tests.support.waiting import until

AARHUS = Path(__file__).resolve().parents[3] / "examples" / "inventories" / "aarhus.yaml"
WEDNESDAY_NOON = datetime(2027, 10, 27, 10, tzinfo=UTC)  # 12:00 CEST: staffed by the config


def imported_week(folder: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The changed week imported and applied with --auto (Wed closed, Thu and Sun shorter)."""
    with DplStandIn(fixture("changed_week.json")) as site:
        config = gateway_yaml(folder, site.url)
        assert main(["hours", "import", str(config), *WEEK]) == 0
        assert main(["hours", "apply", str(config), "--auto"]) == 0
    capsys.readouterr()
    return config


def test_the_gateway_decides_by_the_imported_hours_and_audits_each_change_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = imported_week(tmp_path, capsys)
    config = load_gateway_config(path)
    outbox = open_outbox(config)
    clock = ScaledClock(start=WEDNESDAY_NOON, speed=60)

    async def run() -> Gateway:
        gateway = Gateway(
            config=config, registry=default_registry(), clock=clock, outbox=outbox, extensions=[]
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await until(lambda: schema.HOURS_STALE in gateway.journal.active, what="hours_stale")
        stop.set()
        await task
        return gateway

    gateway = asyncio.run(run())
    decided = gateway.engine.engine.calendar.mode_at(WEDNESDAY_NOON)
    assert (decided.mode, decided.source, decided.reason) == (
        Mode.CLOSED,
        "exception",
        "closed on the website",
    )
    # the waste detector asks the same calendar: Wednesday's hour is a closed hour now
    assert gateway._closed_all_of(WEDNESDAY_NOON, WEDNESDAY_NOON + timedelta(hours=1))
    # the fetch was in 2026 (now), the gateway's clock is in October 2027: stale, says so
    assert (
        "more than 72 h ago: the gateway runs on them" in gateway.journal.active[schema.HOURS_STALE]
    )
    asyncio.run(run())  # a second run audits nothing again
    audit = [
        e.line for e in outbox.lines(measurement=schema.AUDIT.name) if "hours_import" in e.line
    ]
    assert len(audit) == 3
    assert "2027-10-27: 08:00-10:00 self_service, 10:00-16:00 staffed, 16:00-20:00 " in audit[0]
    assert "-> closed (from http://127.0.0.1:" in audit[0]
    assert "/api/v1/opening_hours?_format=json&branch_id=12&from_date=2027-10-25" in audit[0]
    assert "by hours apply --auto)" in audit[0]
    assert outbox.get_state(AUDITED_STATE) == "3"
    outbox.close()

    assert main(["gateway", "status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hours from the website: fetched " in out
    assert " 0 min ago; 3 dated exceptions, 2027-10-25..2027-10-31" in out


def test_hours_stale_is_raised_after_its_age_and_cleared_by_a_fresh_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = load_gateway_config(imported_week(tmp_path, capsys))
    assert config.website_hours is not None
    file = config.website_hours.imported_file
    first = read_imported(file)
    assert first is not None
    clock = ScaledClock(start=first.fetched_at + timedelta(hours=73), speed=1)
    audited: list[tuple[str, str]] = []
    journal = Journal(branch="b", clock=clock, record=lambda _: None, publish_own=lambda _: None)
    journal.listeners.append(lambda kind, message: audited.append((kind, message)))
    state: dict[str, str] = {}
    in_force: list[ImportedHours | None] = []
    watch = HoursWatch(
        website=config.website_hours,
        clock=clock,
        journal=journal,
        on_hours=in_force.append,
        load=state.get,
        save=state.__setitem__,
    )
    watch.check()
    assert schema.HOURS_STALE in journal.active
    assert [kind for kind, _ in audited].count("hours_import") == 3
    assert in_force == [first]

    fresh = first.model_copy(update={"fetched_at": first.fetched_at + timedelta(hours=72)})
    write_yaml(file, fresh, "")
    watch.check()
    assert schema.HOURS_STALE not in journal.active
    assert [kind for kind, _ in audited].count("hours_import") == 3  # nothing new to audit
    assert in_force == [first, fresh]

    file.write_text("exceptions: [{date: 2027-10-27}]\n", encoding="utf-8")  # a hand's edit
    watch.check()
    assert in_force == [first, fresh]  # the hours in force stay
    message = journal.active[schema.HOURS_STALE]
    assert message.startswith(f"{file} cannot be read: {file}:1: ")
    assert message.endswith("the gateway runs on the hours it read before")


def test_the_inventorys_table_reaches_the_rendered_gateway_config(tmp_path: Path) -> None:
    inventory = load_inventory(AARHUS, check_device=default_registry().check_device)
    files = dict(render(inventory, Secrets(tmp_path / "secrets")))
    (tmp_path / "viby.yaml").write_text(files["gateways/viby.yaml"], encoding="utf-8")
    config = load_checked(tmp_path / "viby.yaml")
    website = config.website_hours
    assert website is not None
    assert (website.url, website.branch_id, website.latest_self_service) == (
        "https://www.aakb.dk",
        31,
        "22:00",
    )
    assert website.categories["Borgerservice"] == "ignore"
    assert website.imported_file == Path("/var/lib/openbranch/hours_imported.yaml")
    assert {n for n in files if n.startswith("systemd/")} == {
        "systemd/openbranch-gateway.service",
        "systemd/openbranch-hours.service",
        "systemd/openbranch-hours.timer",
        "systemd/openbranch-purge.service",  # the central host's (the fleet has an InfluxDB)
        "systemd/openbranch-purge.timer",
    }


def test_the_periodic_import_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own checker on the rendered service and timer (the executable: this venv's)."""
    written = verify_units(
        tmp_path, {"openbranch-hours.service": HOURS_UNIT, "openbranch-hours.timer": HOURS_TIMER}
    )
    assert (
        f"ExecStart={HERE} hours apply --auto /etc/openbranch/gateway.yaml"
        in (written["openbranch-hours.service"])
    )


def test_a_category_mapped_to_no_mode_is_a_located_error(tmp_path: Path) -> None:
    text = AARHUS.read_text(encoding="utf-8").replace("Telefontid: ignore", "Telefontid: telephone")
    (tmp_path / "inventory.yaml").write_text(text, encoding="utf-8")
    line = text.splitlines().index("        Telefontid: telephone") + 1
    with pytest.raises(ConfigError) as caught:
        load_inventory(tmp_path / "inventory.yaml")
    assert str(caught.value).startswith(
        f"{tmp_path / 'inventory.yaml'}:{line}: branches[2].website_hours.categories.Telefontid: "
    )
