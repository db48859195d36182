"""The `openbranch` command line as a newcomer runs it: check, schema, run, demo."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from openbranch.edge.cli import main
from openbranch.edge.core.config import DeviceConfig
from openbranch.edge.core.registry import default_registry
from openbranch.edge.core.yamlsource import load_yaml
from openbranch.edge.demo.day import prepare_config, run_demo
from openbranch.edge.telemetry.outbox import Outbox, OutboxError, OutboxLocked
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "integrations" / "modbus" / "sample.yaml"
DEMO = ROOT / "examples" / "demo" / "gateway.yaml"


def openbranch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openbranch.edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_check_prints_a_plan_per_device() -> None:
    result = openbranch("gateway", "check", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("branch sample-branch (Sample Bibliotek), 5 devices: OK")
    assert lines[1].startswith("  main-meter: 2 requests, ")
    assert any(line.startswith("  heat-annex: 5 requests") for line in lines)  # one per point


def test_check_reports_one_located_error(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.yaml"
    text = SAMPLE.read_text(encoding="utf-8").replace("unit_id: 5", "unit_id: 300")
    bad.write_text(text, encoding="utf-8")
    result = openbranch("gateway", "check", str(bad))
    assert result.returncode == 2
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "unit_id: 300" in t)
    assert result.stderr.strip() == (
        f"{bad}:{line}: devices[3].transport.unit_id: 300 is not in 1..247"
    )


def test_check_reports_unknown_profile_at_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.yaml"
    text = SAMPLE.read_text(encoding="utf-8").replace("profile: kamstrup", "profile: kamstrop", 1)
    bad.write_text(text, encoding="utf-8")
    result = openbranch("gateway", "check", str(bad))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "kamstrop" in t)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"{bad}:{line}: devices[3].profile: unknown profile 'kamstrop-multical-603'"
    )


def test_schema_is_json() -> None:
    result = openbranch("gateway", "schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "OpenBranch gateway configuration"


@pytest.fixture
def simulated_branch(tmp_path: Path) -> Iterator[Path]:
    """The demo branch served by simulators in a background thread; yields its config."""
    config_path = prepare_config(DEMO, tmp_path)
    data = load_yaml(config_path).data
    data["devices"] = [d for d in data["devices"] if d["transport"]["type"] != "mqtt"]
    for section in ("entry", "library_system"):  # the card reader is an MQTT device
        data.pop(section, None)
    config_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    devices = [DeviceConfig.model_validate(d) for d in data["devices"]]
    loop = asyncio.new_event_loop()
    simulations = default_registry().simulate(devices)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        for sim in simulations:
            loop.run_until_complete(sim.start())
        for device in (d for s in simulations for d in s.devices.values()):
            for point in device.points():
                if point.measurement and not point.writable and point.field == "register":
                    device.set(point.id, 1234.5)
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield config_path
    for sim in simulations:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_run_polls_devices_into_the_local_store(simulated_branch: Path, tmp_path: Path) -> None:
    store = tmp_path / "run.db"
    result = openbranch(
        "gateway", "run", str(simulated_branch), "--store", str(store), "--duration", "3"
    )
    assert result.returncode == 0, result.stderr
    assert "plan main-meter: 2 requests" in result.stderr
    db = Outbox(store)
    devices = {line.device for line in db.lines()}
    energy = [line.line for line in db.lines(measurement="energy", device="main-meter")]
    db.close()
    assert devices == {
        "gateway",  # the engine's branch_mode and audit entries
        "main-meter",
        "sub-meter-lights",
        "district-heat",
        "entrance-door",
        "people-counter",
        "lights",
        "climate-reading-room",
    }
    assert any("register=1234.5" in line for line in energy)


def test_demo_runs_a_branch_and_survives_an_outage(tmp_path: Path) -> None:
    summary = asyncio.run(
        run_demo(
            config_path=DEMO,
            workdir=tmp_path,
            duration=12,
            speed=1080,
            quiet=True,
            start=datetime(2026, 11, 25, 18, 30, tzinfo=ZoneInfo("Europe/Copenhagen")),
        )
    )
    assert summary["readings"] > 100
    meter = summary["devices"]["main-meter"]
    assert meter["went_down"] == 1
    assert meter["available"] is True
    rare = ("help-button", "front-door-contact")  # publish only when pressed or opened
    polled = {k: v for k, v in summary["devices"].items() if k not in rare}
    assert all(d["readings"] > 0 for d in polled.values()), polled  # Modbus and MQTT alike
    assert summary["influxdb"]["energy_points"] > 0  # a private influxd got them
    timeline = "\n".join(summary["timeline"])
    assert "The library closes in 15 minutes." in timeline  # 21:45 on a Wednesday
    assert "self_service -> closed" in timeline
    assert (summary["first_day"], summary["last_day"]) == ("2026-11-25", "2026-11-25")


def test_status_reports_outbox_sinks_and_devices(simulated_branch: Path, tmp_path: Path) -> None:
    config = load_yaml(simulated_branch).data
    config["sinks"] = [
        {"type": "influxdb_v1", "url": "http://127.0.0.1:9", "database": "nowhere"}
    ]  # unreachable: everything stays pending
    path = tmp_path / "with-sink.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    store = tmp_path / "status.db"
    assert openbranch("gateway", "status", str(path), "--store", str(store)).returncode == 1
    run = openbranch("gateway", "run", str(path), "--store", str(store), "--duration", "2")
    assert run.returncode == 0, run.stderr
    status = openbranch("gateway", "status", str(path), "--store", str(store))
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].startswith(f"outbox {store}: ")
    sink = next(line for line in lines if line.startswith("  sink influxdb_v1:"))
    pending = int(sink.split(": ")[1].split()[0])
    assert pending > 0
    assert "0 dead letters" in sink
    assert "  device main-meter: available since " in status.stdout


def _lonely_branch(tmp_path: Path) -> Path:
    """A gateway config with one meter on a closed loopback port (it runs, and finds it down)."""
    path = tmp_path / "gateway.yaml"
    config = {
        "branch": {"id": "lonely", "name": "Lonely branch"},
        "store": {"path": str(tmp_path / "store.db")},
        "devices": [
            {
                "id": "meter",
                "profile": "eastron-sdm630",
                "transport": {
                    "type": "modbus_tcp",
                    "host": "127.0.0.1",
                    "port": free_port(),
                    "unit_id": 1,
                    "timeout": "200ms",
                },
            }
        ],
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _start_gateway(config: Path) -> subprocess.Popen[str]:
    """``gateway run`` in the background, returned once it logged its plan: by then it has
    opened its store (and holds the store's lock)."""
    gateway = subprocess.Popen(
        [sys.executable, "-m", "openbranch.edge.cli", "gateway", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert gateway.stderr is not None
    seen = []
    for line in gateway.stderr:  # blocks until the gateway writes a line, or exits
        seen.append(line)
        if " plan meter: " in line:
            return gateway
    gateway.wait(30)
    raise AssertionError(f"the gateway exited ({gateway.returncode}) first: {''.join(seen)}")


def test_a_second_gateway_on_the_same_store_refuses_to_start(tmp_path: Path) -> None:
    config = _lonely_branch(tmp_path)
    first = _start_gateway(config)
    try:
        second = openbranch("gateway", "run", str(config), "--duration", "30")
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"openbranch gateway run: not started: {tmp_path / 'store.db'}: the local store is"
            f" in use by process {first.pid}: one gateway per store; stop the other gateway first"
        )
        assert first.poll() is None  # the first one runs on, undisturbed
        status = openbranch("gateway", "status", str(config))  # a reader takes no lock
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith(f"outbox {tmp_path / 'store.db'}: ")
    finally:
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=60)
    assert first.returncode == 0
    assert out.startswith("stopped: ")


def test_a_killed_gateway_does_not_keep_the_next_one_from_starting(tmp_path: Path) -> None:
    config = _lonely_branch(tmp_path)
    first = _start_gateway(config)
    with pytest.raises(OutboxLocked, match=f"in use by process {first.pid}:"):
        Outbox(tmp_path / "store.db")
    first.kill()  # SIGKILL: no cleanup at all
    first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL
    after = openbranch("gateway", "run", str(config), "--duration", "0.5")
    assert after.returncode == 0, after.stderr
    assert after.stdout.startswith("stopped: ")


# --- located errors instead of tracebacks (issue 13) --------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``openbranch ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _with_control(tmp_path: Path, key_ref: str) -> tuple[Path, int]:
    """The lonely branch with a control section; returns the config and the key's line."""
    path = _lonely_branch(tmp_path)
    text = path.read_text(encoding="utf-8") + f"control:\n  key: {key_ref}\n"
    path.write_text(text, encoding="utf-8")
    return path, text.splitlines().index(f"  key: {key_ref}") + 1


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("content", [None, "", "\n  \n"], ids=["missing", "empty", "blank"])
def test_a_control_key_file_missing_or_empty_is_a_located_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: str | None
) -> None:
    key = tmp_path / "control.key"
    if content is not None:
        key.write_text(content, encoding="utf-8")
    config, line = _with_control(tmp_path, f"{{file: {key}}}")
    extra = ("--duration", "0.1") if command == "run" else ()
    code, _out, err = cli(capsys, "gateway", command, str(config), *extra)
    assert code == 2
    assert err.startswith(f"{config}:{line}: control.key: "), err
    assert "Traceback" not in err
    assert not (tmp_path / "store.db").exists()  # nothing started


@pytest.mark.parametrize("content", [None, "", "\n"], ids=["missing", "empty", "blank"])
def test_command_with_a_key_file_missing_or_empty_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    key = tmp_path / "control.key"
    if content is not None:
        key.write_text(content, encoding="utf-8")
    code, out, err = cli(
        capsys, "command", "cancel_overrides", str(DEMO), "--who", "ops:t", "--key-file", str(key)
    )
    assert code == 2
    assert out == ""  # nothing signed with an empty key
    assert err.startswith("--key-file: "), err
    assert str(key) in err


def _store_at(tmp_path: Path, store: str) -> tuple[Path, int]:
    """The lonely branch with ``store.path`` set to ``store``; the config and that line."""
    path = _lonely_branch(tmp_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["store"]["path"] = store
    text = yaml.safe_dump(data)
    path.write_text(text, encoding="utf-8")
    return path, next(
        i for i, t in enumerate(text.splitlines(), 1) if t.strip().startswith("path:")
    )


def _prepare_store(tmp_path: Path, case: str) -> str:
    if case == "a folder":
        (tmp_path / "store").mkdir()
        return str(tmp_path / "store")
    if case == "/dev/null":
        return "/dev/null"
    if case == "not SQLite":
        (tmp_path / "store.db").write_text("branch: hasle\n", encoding="utf-8")
        return str(tmp_path / "store.db")
    if case == "under a file":
        (tmp_path / "file").write_text("x", encoding="utf-8")
        return str(tmp_path / "file" / "store.db")
    assert case == "read-only"
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=False
    )
    assert mounted.returncode == 0, "needs root to mount a read-only file system"
    return str(ro / "store.db")


STORES = [
    ("a folder", "is a folder"),
    ("/dev/null", "not a regular file"),
    ("not SQLite", "not an SQLite database"),
    ("under a file", "not a folder"),
    ("read-only", "read-only"),
]


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(("case", "says"), STORES, ids=[c for c, _ in STORES])
def test_a_store_path_that_cannot_be_a_store_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, case: str, says: str
) -> None:
    store = _prepare_store(tmp_path, case)
    try:
        config, line = _store_at(tmp_path, store)
        extra = ("--duration", "0.1") if command == "run" else ()
        code, _out, err = cli(capsys, "gateway", command, str(config), *extra)
    finally:
        if case == "read-only":
            subprocess.run(["umount", str(tmp_path / "ro")], check=True)
    assert code == 2
    assert err.startswith(f"{config}:{line}: store.path: "), err
    assert says in err
    assert "Traceback" not in err


def test_gateway_run_with_a_store_option_that_is_a_folder_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _lonely_branch(tmp_path)
    (tmp_path / "folder").mkdir()
    code, _out, err = cli(
        capsys,
        "gateway",
        "run",
        str(config),
        "--store",
        str(tmp_path / "folder"),
        "--duration",
        "1",
    )
    assert code == 2
    assert err.startswith(f"--store: {tmp_path / 'folder'}: is a folder"), err


def test_the_outbox_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    for case, says in STORES[:4]:
        folder = tmp_path / case.replace("/", "_")
        folder.mkdir()
        with pytest.raises(OutboxError, match=says):
            Outbox(_prepare_store(folder, case))


BAD_ARGS = [
    pytest.param(
        ("command", "override", str(DEMO), "--mode", "closed", "--who", "o", "--until", "tomorrow"),
        "--until",
        id="until-tomorrow",
    ),
    pytest.param(
        ("command", "close_now", str(DEMO), "--who", "o", "--until", "2026-13-01T10:00"),
        "--until",
        id="until-month-13",
    ),
    pytest.param(
        ("command", "cancel_overrides", str(DEMO), "--who", "o", "--valid", "-1"),
        "--valid",
        id="valid-negative",
    ),
    pytest.param(
        ("command", "cancel_overrides", str(DEMO), "--who", "o", "--valid", "1" + "0" * 30),
        "--valid",
        id="valid-huge",
    ),
    pytest.param(("schedule", "plan", str(DEMO), "--days", "-1"), "--days", id="days-negative"),
    pytest.param(("schedule", "plan", str(DEMO), "--days", "0"), "--days", id="days-zero"),
    pytest.param(
        ("schedule", "plan", str(DEMO), "--days", "1" + "0" * 12), "--days", id="days-huge"
    ),
    pytest.param(
        ("schedule", "plan", str(DEMO), "--from", "9999-12-31"), "--from", id="from-the-end-of-time"
    ),
    pytest.param(
        ("schedule", "plan", str(DEMO), "--from", "0001-01-01"), "--from", id="from-year-1"
    ),
    pytest.param(("schedule", "plan", str(DEMO), "--from", "2026-02-30"), "--from", id="feb-30"),
]


@pytest.mark.parametrize(("args", "option"), BAD_ARGS)
def test_a_bad_option_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], option: str
) -> None:
    key = tmp_path / "key"
    key.write_text("k3y\n", encoding="utf-8")
    extra = ("--key-file", str(key)) if args[0] == "command" else ()
    try:
        code, out, err = cli(capsys, *args, *extra)
    except SystemExit as exc:  # argparse's own error: usage and the option, exit 2
        code, out, err = int(exc.code or 0), *capsys.readouterr()
    assert code == 2, (out, err)
    assert option in err
    assert "Traceback" not in err
    assert out == ""


def test_until_a_time_of_day_is_its_next_occurrence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key"
    key.write_text("k3y\n", encoding="utf-8")
    code, out, err = cli(
        capsys, "command", "close_now", str(DEMO), "--who", "o", "--until", "23:00",
        "--key-file", str(key),
    )  # fmt: skip
    assert code == 0, err
    until = datetime.fromisoformat(json.loads(out)["until"])
    now = datetime.now(ZoneInfo("Europe/Copenhagen"))
    assert until.astimezone(ZoneInfo("Europe/Copenhagen")).strftime("%H:%M") == "23:00"
    assert now < until <= now + timedelta(days=1)
