"""A stand-in for a DPL CMS site's opening hours API (DPL CMS is a Drupal site that cannot run
here): ``GET /api/v1/opening_hours?_format=json&branch_id=&from_date=&to_date=`` answered from
a list of instances in the documented JSON, filtered as DPL CMS's ``OpeningHoursRepository::
loadMultiple`` filters (branch, and dates inclusive), on a free loopback port, in a thread.

``raw`` replaces the answer's body verbatim (a malformed answer); ``status`` its HTTP status.
The fixture ``fixtures/changed_week.json`` is one week of branch 12 (and one instance of branch
13), written from ``openingHoursInstanceSchema`` in dpl-cms's ``dpl_opening_hours`` module:
Mon 25 October 2027 as the branch's usual week plus telephone hours (``Telefontid``), Tue
self-service an hour longer, Wed closed (no instance), Thu self-service two hours shorter, Fri
the usual hours, Sat self-service until 22:00, Sun (the fall-back day) from 12:00.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["FIXTURES", "DplStandIn", "fixture"]

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


class DplStandIn:
    def __init__(self, instances: list[dict[str, Any]]) -> None:
        self.instances = instances
        self.raw: bytes | None = None
        self.status = 200
        self.requests: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.requests.append(self.path)
                status, body = stand_in.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, path: str) -> tuple[int, bytes]:
        parts = urllib.parse.urlsplit(path)
        if parts.path != "/api/v1/opening_hours":
            return 404, b'{"message": "No route found"}'
        query = dict(urllib.parse.parse_qsl(parts.query))
        if query.get("_format") != "json":
            return 406, b'{"message": "Not acceptable format"}'
        if self.raw is not None or self.status != 200:
            return self.status, self.raw or b"{}"
        found = [
            item
            for item in self.instances
            if ("branch_id" not in query or item["branch_id"] == int(query["branch_id"]))
            and query.get("from_date", "0000") <= item["date"] <= query.get("to_date", "9999")
        ]
        return 200, json.dumps(found, ensure_ascii=False).encode()

    def __enter__(self) -> DplStandIn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
