"""A stand-in for Eloverblik's customer API (there is no Eloverblik here): a stdlib HTTP server
on a free loopback port that answers ``GET /customerapi/api/token`` and ``POST
/customerapi/api/meterdata/gettimeseries/{from}/{to}/Hour`` in the documented shapes.

What a test can change: which refresh tokens it accepts (``refresh_tokens``), the access tokens
it still honours (``expire_access()``), and which days of each metering point are published
(``publish``): a day not published yet is absent from the answer, as a late day is.
"""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

CPH = ZoneInfo("Europe/Copenhagen")
BASE = "/customerapi"


def _z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_hours(day: date) -> int:
    start = datetime(day.year, day.month, day.day, tzinfo=CPH)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=CPH)
    return int((end.astimezone(UTC) - start.astimezone(UTC)).total_seconds()) // 3600


@dataclass
class State:
    refresh_tokens: set[str] = field(default_factory=lambda: {"refresh-ok"})
    access_tokens: set[str] = field(default_factory=set)
    issued: int = 0
    #: metering point -> local day -> [(quantity text, quality code)] per hour of the day
    days: dict[str, dict[date, list[tuple[str, str]]]] = field(default_factory=dict)
    published: set[tuple[str, date]] = field(default_factory=set)
    log: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    failing: dict[str, tuple[int, str]] = field(default_factory=dict)  # mp -> (code, text)


class StandIn(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = State()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{BASE}"

    def publish(self, mp: str, day: date, values: list[tuple[str, str]]) -> None:
        assert len(values) == day_hours(day), f"{day} has {day_hours(day)} hours"
        with self.lock:
            self.state.days.setdefault(mp, {})[day] = values
            self.state.published.add((mp, day))

    def hold_back(self, mp: str, day: date) -> None:
        with self.lock:
            self.state.published.discard((mp, day))

    def expire_access(self) -> None:
        with self.lock:
            self.state.access_tokens.clear()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    def answer(self, mp: str, first: date, end: date) -> dict[str, Any]:
        if mp in self.state.failing:
            code, text = self.state.failing[mp]
            return {
                "success": False,
                "errorCode": code,
                "errorText": text,
                "id": mp,
                "stackTrace": None,
                "MyEnergyData_MarketDocument": None,
            }
        periods = []
        for day, values in sorted(self.state.days.get(mp, {}).items()):
            if not first <= day < end or (mp, day) not in self.state.published:
                continue
            start = datetime(day.year, day.month, day.day, tzinfo=CPH)
            stop = start.astimezone(UTC) + timedelta(hours=len(values))
            periods.append(
                {
                    "resolution": "PT1H",
                    "timeInterval": {"start": _z(start), "end": _z(stop)},
                    "Point": [
                        {
                            "position": str(i + 1),
                            "out_Quantity.quantity": q,
                            "out_Quantity.quality": quality,
                        }
                        for i, (q, quality) in enumerate(values)
                    ],
                }
            )
        return {
            "success": True,
            "errorCode": 10000,
            "errorText": "NoError",
            "id": mp,
            "stackTrace": None,
            "MyEnergyData_MarketDocument": {
                "mRID": "stand-in",
                "createdDateTime": _z(datetime.now(UTC)),
                "TimeSeries": [
                    {
                        "mRID": mp,
                        "businessType": "A04",
                        "curveType": "A01",
                        "measurement_Unit.name": "KWH",
                        "MarketEvaluationPoint": {"mRID": {"codingScheme": "A10", "name": mp}},
                        "Period": periods,
                    }
                ],
            },
        }


class _Handler(http.server.BaseHTTPRequestHandler):
    server: StandIn

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.server.state.log.append((self.command, self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _bearer(self) -> str:
        return self.headers.get("Authorization", "").removeprefix("Bearer ")

    def do_GET(self) -> None:
        with self.server.lock:
            state = self.server.state
            if self.path != f"{BASE}/api/token":
                return self._send(404, {"error": "not found"})
            if self._bearer() not in state.refresh_tokens:
                return self._send(401, {"error": "Token has expired"})
            state.issued += 1
            token = f"access-{state.issued}"
            state.access_tokens.add(token)
            return self._send(200, {"result": token})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with self.server.lock:
            prefix = f"{BASE}/api/meterdata/gettimeseries/"
            if not self.path.startswith(prefix):
                return self._send(404, {"error": "not found"})
            if self._bearer() not in self.server.state.access_tokens:
                return self._send(401, {"error": "Token has expired"})
            first, end, aggregation = self.path.removeprefix(prefix).split("/")
            assert aggregation == "Hour"
            points = body["meteringPoints"]["meteringPoint"]
            result = [
                self.server.answer(mp, date.fromisoformat(first), date.fromisoformat(end))
                for mp in points
            ]
            return self._send(200, {"result": result})
