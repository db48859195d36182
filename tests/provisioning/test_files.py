"""The files provisioning owns: a render deletes only what a render wrote, never follows a
symlink out of its folders, never re-modes a folder it did not create, keeps the password file
private; plan writes nothing; an --out that is a file is a one-line error (issue 13)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from openbranch.edge.cli import main

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"


def provision(
    capsys: pytest.CaptureFixture[str],
    action: str,
    out: Path,
    secrets: Path,
    inventory: Path = AARHUS,
) -> tuple[int, str, str]:
    code = main(["provision", action, str(inventory), "--out", str(out), "--secrets", str(secrets)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under ``root`` with its mode, mtime and (for files and links) content."""
    out = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        body = (
            os.readlink(path)
            if path.is_symlink()
            else path.read_text(encoding="utf-8")
            if path.is_file()
            else ""
        )
        out[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, body)
    return out


def test_render_deletes_only_files_a_render_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, secrets = tmp_path / "etc-mosquitto", tmp_path / "secrets"
    out.mkdir()
    (out / "mosquitto.conf").write_text("listener 1883\n", encoding="utf-8")  # the operator's
    (out / "conf.d").mkdir()
    (out / "conf.d" / "local.conf").write_text("log_type all\n", encoding="utf-8")
    assert provision(capsys, "render", out, secrets)[0] == 0
    manifest = json.loads((out / ".openbranch-manifest.json").read_text(encoding="utf-8"))
    assert "mosquitto/bridges/viby.conf" in manifest["files"]
    assert "mosquitto.conf" not in manifest["files"]
    # viby no longer has a local broker: its bridge goes, the operator's files stay
    inventory = tmp_path / "aarhus.yaml"
    text = AARHUS.read_text(encoding="utf-8").replace("local_broker: true", "local_broker: false")
    inventory.write_text(text, encoding="utf-8")
    code, said, _err = provision(capsys, "apply", out, secrets, inventory)
    assert code == 0
    assert "removed  mosquitto/bridges/viby.conf" in said
    assert not (out / "mosquitto" / "bridges" / "viby.conf").exists()
    assert (out / "mosquitto.conf").read_text(encoding="utf-8") == "listener 1883\n"
    assert (out / "conf.d" / "local.conf").exists()


def test_a_file_in_the_way_that_no_render_wrote_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, secrets = tmp_path / "out", tmp_path / "secrets"
    (out / "mosquitto").mkdir(parents=True)
    (out / "mosquitto" / "acl").write_text("user admin\ntopic readwrite #\n", encoding="utf-8")
    code, _said, err = provision(capsys, "render", out, secrets)
    assert code == 2
    assert "mosquitto/acl exist(s) but no render wrote them" in err
    assert (out / "mosquitto" / "acl").read_text(
        encoding="utf-8"
    ) == "user admin\ntopic readwrite #\n"
    assert not (out / "gateways").exists()  # refused before anything was written


def test_symlinks_out_of_the_folders_are_refused_not_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "acl").write_text("the operator's\n", encoding="utf-8")
    out, secrets = tmp_path / "out", tmp_path / "secrets"
    assert provision(capsys, "render", out, secrets)[0] == 0
    # a rendered folder replaced by a link out of the render
    (out / "mosquitto" / "acl").unlink()
    os.rename(out / "mosquitto", tmp_path / "old-mosquitto")
    (out / "mosquitto").symlink_to(outside)
    before = tree(outside)
    code, _said, err = provision(capsys, "apply", out, secrets)
    assert code == 2
    assert "mosquitto: not a folder of the render (a symlink, never followed)" in err
    assert tree(outside) == before
    # a rendered file replaced by a link out of the render
    (out / "mosquitto").unlink()
    os.rename(tmp_path / "old-mosquitto", out / "mosquitto")
    (out / "mosquitto" / "acl").symlink_to(outside / "acl")
    code, _said, err = provision(capsys, "render", out, secrets)
    assert code == 2
    assert "mosquitto/acl: a symlink, never followed" in err
    assert tree(outside) == before
    # a link in the secrets folder
    (out / "mosquitto" / "acl").unlink()
    (secrets / "mqtt" / "gw-hasle").unlink()
    (secrets / "mqtt" / "gw-hasle").symlink_to(outside / "acl")
    code, _said, err = provision(capsys, "render", out, secrets)
    assert code == 2
    assert "secrets/mqtt/gw-hasle: a symlink in the secrets folder, never followed" in err
    assert tree(outside) == before


def test_folders_that_exist_keep_their_modes_and_the_password_file_is_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, secrets = tmp_path / "out", tmp_path / "secrets"
    out.mkdir(mode=0o755)
    os.chmod(out, 0o755)
    secrets.mkdir()
    os.chmod(secrets, 0o750)
    assert provision(capsys, "render", out, secrets)[0] == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o750  # was re-moded to 0700
    assert stat.S_IMODE((secrets / "mqtt").stat().st_mode) == 0o700  # created here
    assert stat.S_IMODE((out / "mosquitto" / "passwd").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "gateways" / "hasle.yaml").stat().st_mode) == 0o644
    fresh = tmp_path / "fresh-secrets"
    assert provision(capsys, "render", tmp_path / "out2", fresh)[0] == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    # a password file an older render left world-readable is put right
    os.chmod(out / "mosquitto" / "passwd", 0o644)
    code, said, _err = provision(capsys, "plan", out, secrets)
    assert (code, said.splitlines()) == (0, [" changed  mosquitto/passwd"])
    assert provision(capsys, "apply", out, secrets)[0] == 0
    assert stat.S_IMODE((out / "mosquitto" / "passwd").stat().st_mode) == 0o600


def test_plan_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, secrets = tmp_path / "out", tmp_path / "secrets"
    before = tree(tmp_path)
    code, said, _err = provision(capsys, "plan", out, secrets)
    assert code == 0
    assert "   added  gateways/hasle.yaml" in said
    assert "  secret  mqtt/gw-hasle (apply creates it)" in said
    assert tree(tmp_path) == before  # no secrets folder, no out folder
    assert provision(capsys, "apply", out, secrets)[0] == 0
    inventory = tmp_path / "aarhus.yaml"
    text = AARHUS.read_text(encoding="utf-8").replace("  - id: viby\n", "  - id: viby2\n")
    inventory.write_text(text, encoding="utf-8")
    before = tree(tmp_path)
    code, said, _err = provision(capsys, "plan", out, secrets, inventory)
    assert code == 0
    assert "   added  gateways/viby2.yaml" in said
    assert " removed  gateways/viby.yaml" in said
    assert tree(tmp_path) == before  # not a byte, not a mode, not an mtime


def test_an_out_that_is_a_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "render"
    out.write_text("not a folder\n", encoding="utf-8")
    for action in ("render", "plan", "apply"):
        code, _said, err = provision(capsys, action, out, tmp_path / "secrets")
        assert code == 2
        assert (
            err
            == f"provision {action}: {out} is not a folder (give --out a folder for the rendered files)\n"
        )
    assert out.read_text(encoding="utf-8") == "not a folder\n"
