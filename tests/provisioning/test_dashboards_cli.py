"""`openbranch dashboards build` writes every dashboard and the alert rules; `push` sends the
dashboards to Grafana's HTTP API (a stand-in server: Grafana cannot run here) idempotently."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from openbranch.edge.cli import main
from tests.dashboards.test_grafana import FakeGrafana
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
AARHUS = ROOT / "examples" / "inventories" / "aarhus.yaml"


def test_build_writes_json_per_dashboard_and_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboards", "build", "--out", str(tmp_path), "--inventory", str(AARHUS)]) == 0
    assert "Aarhus Kommune: 4 dashboards and alert-rules.yaml" in capsys.readouterr().out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "alert-rules.yaml",
        "branch.json",
        "energy.json",
        "extended-hours.json",
        "fleet.json",
    ]
    energy = json.loads((tmp_path / "energy.json").read_text(encoding="utf-8"))
    assert energy["uid"] == "openbranch-energy-aarhus"
    rules = yaml.safe_load((tmp_path / "alert-rules.yaml").read_text(encoding="utf-8"))
    assert len(rules["groups"][0]["rules"]) == 3
    bare = tmp_path / "bare"
    assert main(["dashboards", "build", "--out", str(bare)]) == 0
    variables = json.loads((bare / "energy.json").read_text(encoding="utf-8"))["templating"]
    assert "floor_area_m2" in [v["name"] for v in variables["list"]]


class FakeGrafanaWithAlerting(FakeGrafana):
    """The dashboards stand-in plus Grafana's alerting provisioning endpoints."""

    rules: dict[str, dict[str, Any]] = {}  # noqa: RUF012

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/api/v1/provisioning/alert-rules/"):
            uid = self.path.rsplit("/", 1)[1]
            if uid in self.rules:
                self._send(200, dict(self.rules[uid], id=7, provenance="api"))
            else:
                self._send(404, {"message": "rule not found"})
            return
        super().do_GET()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/api/v1/provisioning/alert-rules":
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert body["folderUID"] in {f["uid"] for f in self.folders}  # folder first
            self.rules[body["uid"]] = body
            self._send(201, body)
            return
        super().do_POST()

    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.rules[body["uid"]] = body
        self._send(200, body)


@pytest.fixture
def grafana() -> Iterator[tuple[str, type[FakeGrafanaWithAlerting]]]:
    handler = type(
        "Handler",
        (FakeGrafanaWithAlerting,),
        {"folders": [], "dashboards": {}, "rules": {}, "writes": 0},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_push_creates_then_changes_nothing(
    grafana: tuple[str, type[FakeGrafanaWithAlerting]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, server = grafana
    monkeypatch.setenv("OPENBRANCH_GRAFANA_TOKEN", "t0ken")
    args = ["dashboards", "push", "--url", url, "--inventory", str(AARHUS)]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0] == "created folder Aarhus Kommune"
    assert len(first) == 1 + 4 + 3  # the folder, four dashboards, three alert rules
    assert {r["ruleGroup"] for r in server.rules.values()} == {"openbranch-aarhus"}
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == "Grafana: no changes"


def test_provision_apply_pushes_every_dashboard_and_the_rules(
    grafana: tuple[str, type[FakeGrafanaWithAlerting]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`openbranch provision apply --grafana` sends the same as `dashboards push --inventory`."""
    url, server = grafana
    token = tmp_path / "grafana-token"
    token.write_text("t0ken\n", encoding="utf-8")
    args = [
        *("provision", "apply", str(AARHUS)),
        *("--out", str(tmp_path / "render"), "--secrets", str(tmp_path / "secrets")),
        *("--grafana", url, "--grafana-token-file", str(token)),
    ]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "created folder Aarhus Kommune" in said
    assert len(server.dashboards) == 4
    assert len(server.rules) == 3
    assert main(args) == 0
    assert "Grafana: no changes" in capsys.readouterr().out


def test_a_token_is_never_a_command_line_argument() -> None:
    """Other users of the machine see every process's arguments (ps): there is no --token,
    and what argparse would take for --token-file is read as a file name, never as a token."""
    with pytest.raises(SystemExit) as refused:
        main(["dashboards", "push", "--url", "http://127.0.0.1:1", "--token", "t0ken"])
    assert str(refused.value) == "--token-file t0ken: No such file or directory"
