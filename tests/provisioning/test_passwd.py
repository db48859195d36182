"""Mosquitto's password file: PBKDF2-SHA512 with a random salt and 100,000 iterations, kept
from render to render until the password changes, and accepted by a real Mosquitto."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from openbranch.edge.core.registry import default_registry
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import PBKDF2_ITERATIONS, mosquitto_password_line, render
from openbranch.provisioning.secrets import Secrets
from tests.provisioning.mqttprobe import connack
from tests.services import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"


def _fields(line: str) -> tuple[str, int, bytes, bytes]:
    user, hashed = line.split(":")
    empty, kind, iterations, salt, digest = hashed.split("$")
    assert (empty, kind) == ("", "7")
    return user, int(iterations), base64.b64decode(salt), base64.b64decode(digest)


def test_a_password_line_has_a_random_salt_and_100000_iterations() -> None:
    first = mosquitto_password_line("gw-hasle", "secret")
    second = mosquitto_password_line("gw-hasle", "secret")
    assert first != second  # the salt is drawn, not derived from the password
    for line in (first, second):
        user, iterations, salt, digest = _fields(line)
        assert (user, iterations, len(salt), len(digest)) == ("gw-hasle", 100_000, 12, 64)
        assert digest == hashlib.pbkdf2_hmac("sha512", b"secret", salt, 100_000)
    assert PBKDF2_ITERATIONS == 100_000  # mosquitto_passwd 2.0 writes 101


def test_the_salt_source_can_be_injected_for_reproducible_renders() -> None:
    fixed = b"0123456789ab"
    line = mosquitto_password_line("u", "p", salt=fixed)
    assert line == mosquitto_password_line("u", "p", salt=fixed)
    assert _fields(line)[2] == fixed


def test_a_render_keeps_each_line_until_that_password_changes(tmp_path: Path) -> None:
    inventory = load_inventory(AARHUS, check_device=default_registry().check_device)
    secrets = Secrets(tmp_path / "secrets")
    first = render(inventory, secrets)["mosquitto/passwd"].splitlines()
    assert render(inventory, secrets)["mosquitto/passwd"].splitlines() == first  # plan stays quiet
    secrets.rotate("mqtt/gw-hasle")
    third = render(inventory, secrets)["mosquitto/passwd"].splitlines()
    changed = [old.split(":")[0] for old, new in zip(first, third, strict=True) if old != new]
    assert changed == ["gw-hasle"]


def test_the_rendered_accounts_log_in_on_a_real_mosquitto(tmp_path: Path) -> None:
    inventory = load_inventory(AARHUS, check_device=default_registry().check_device)
    secrets = Secrets(tmp_path / "secrets")
    passwd = tmp_path / "passwd"
    passwd.write_text(render(inventory, secrets)["mosquitto/passwd"], encoding="utf-8")
    with Mosquitto(f"password_file {passwd}\n", anonymous=False) as broker:
        for user in ("gw-hasle", "operations"):
            assert connack(broker, user, secrets.get(f"mqtt/{user}")) == 0  # Success
        assert connack(broker, "gw-hasle", "wrong") == 0x87  # Not authorized
        assert "Invalid" not in broker.log_tail()  # every line of the file was read
