"""Pushing dashboards to Grafana's HTTP API is idempotent.

Grafana is not installable on these machines, so this runs against a small stand-in HTTP
server implementing the four endpoints the push uses (GET/POST /api/folders, GET
/api/dashboards/uid/<uid>, POST /api/dashboards/db), storing what it is sent. It checks the
requests the push makes and our idempotence, not Grafana itself.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from openbranch.dashboards.fleet import fleet_overview
from openbranch.dashboards.grafana import push
from tests.services import free_port


class FakeGrafana(http.server.BaseHTTPRequestHandler):
    folders: list[dict[str, Any]] = []  # noqa: RUF012
    dashboards: dict[str, dict[str, Any]] = {}  # noqa: RUF012
    writes = 0

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        assert self.headers["Authorization"] == "Bearer t0ken"
        if self.path.startswith("/api/folders"):
            self._send(200, self.folders)
        elif self.path.startswith("/api/dashboards/uid/"):
            uid = self.path.rsplit("/", 1)[1]
            if uid in self.dashboards:
                self._send(200, {"dashboard": self.dashboards[uid], "meta": {}})
            else:
                self._send(404, {"message": "Dashboard not found"})
        else:
            self._send(404, {"message": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).writes += 1
        if self.path == "/api/folders":
            self.folders.append({"uid": body["uid"], "title": body["title"]})
            self._send(200, body)
        elif self.path == "/api/dashboards/db":
            board = dict(body["dashboard"], id=len(self.dashboards) + 1, version=1)
            self.dashboards[board["uid"]] = board
            self._send(200, {"status": "success", "uid": board["uid"]})

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[str]:
    handler = type("Handler", (FakeGrafana,), {"folders": [], "dashboards": {}, "writes": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


ARGS = {"folder": "Aarhus Kommune", "folder_uid": "openbranch-aarhus"}


def test_push_creates_then_changes_nothing_then_updates(grafana: str) -> None:
    board = fleet_overview("aarhus")
    assert push(grafana, "t0ken", dashboards=[board], **ARGS) == [
        "created folder Aarhus Kommune",
        "created dashboard Fleet overview — aarhus",
    ]
    assert push(grafana, "t0ken", dashboards=[board], **ARGS) == []
    edited = dict(board, refresh="5m")
    assert push(grafana, "t0ken", dashboards=[edited], **ARGS) == [
        "updated dashboard Fleet overview — aarhus"
    ]
