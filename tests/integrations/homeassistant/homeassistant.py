"""A real Home Assistant Core for tests: started from the environment that
``scripts/setup-homeassistant`` builds, with a minimal configuration.yaml in a temporary config
directory, onboarded and given the MQTT integration through its own REST API.

- ``ha_python()``: the environment's Python, or ServiceUnavailable saying how to build it.
- ``HomeAssistant(python)``: a ``Service`` (start/stop/kill/close as in tests/services.py) on a
  free loopback port; ``onboard()`` makes the owner user and takes an access token,
  ``add_mqtt(host, port)`` runs the MQTT config flow, ``states()`` reads ``/api/states``,
  ``ws(type)`` asks the websocket API (``config/device_registry/list``, ...).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

from openbranch.edge.demo.servers import Service, ServiceUnavailable

__all__ = ["HA_VERSION", "HomeAssistant", "ha_python"]

HA_VERSION = "2025.4.4"
CLIENT_ID = "http://openbranch.test/"
CONFIGURATION = """\
# Minimal: no default_config, only what the tests use.
homeassistant:
  name: OpenBranch test
  latitude: 56.15
  longitude: 10.2
  elevation: 0
  unit_system: metric
  time_zone: Europe/Copenhagen
  country: DK
  currency: DKK
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
logger:
  default: warning
"""


def ha_python() -> Path:
    """The Home Assistant environment's Python (``OPENBRANCH_HA_ENV`` or the cached default)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    default = cache / "openbranch" / f"homeassistant-{HA_VERSION}"
    env = Path(os.environ.get("OPENBRANCH_HA_ENV") or default)
    python = env / "bin" / "python"
    if not (env / f".openbranch-ha-{HA_VERSION}").exists() or not python.exists():
        raise ServiceUnavailable(
            f"no Home Assistant {HA_VERSION} environment at {env}"
            " (bash scripts/setup-homeassistant builds it; scripts/test runs it)"
        )
    return python


class HomeAssistant(Service):
    name = "homeassistant"

    def __init__(self, python: Path) -> None:
        super().__init__()
        self.python = python
        self.config_dir = self.dir / "config"
        self.config_dir.mkdir()
        (self.config_dir / "configuration.yaml").write_text(
            CONFIGURATION.format(port=self.port), encoding="utf-8"
        )
        self.url = f"http://{self.host}:{self.port}"
        self.token = ""

    def command(self) -> list[str]:
        return [
            str(self.python),
            "-m",
            "homeassistant",
            "--config",
            str(self.config_dir),
            "--skip-pip",
            "--log-no-color",
            "--log-file",
            str(self.dir / "home-assistant.log"),
        ]

    def ready(self) -> bool:
        try:
            self._request("GET", "/api/onboarding", auth=False)
        except (urllib.error.URLError, OSError):
            return False
        return True

    def start(self, timeout: float = 90.0) -> None:
        super().start(timeout)

    def problems(self, logger: str = "homeassistant.components.mqtt") -> list[str]:
        """Warnings and errors that ``logger`` wrote, over every start (the log rotates)."""
        found = []
        for name in ("home-assistant.log.1", "home-assistant.log"):
            path = self.dir / name
            if path.exists():
                found += [
                    line
                    for line in path.read_text(errors="replace").splitlines()
                    if (" WARNING " in line or " ERROR " in line) and f"[{logger}" in line
                ]
        return found

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.dir / "home-assistant.log").read_text(errors="replace")
        except OSError:
            return super().log_tail(lines)
        return "\n".join(text.splitlines()[-lines:])

    # REST -----------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        auth: bool = True,
        form: dict[str, str] | None = None,
    ) -> Any:
        headers = {}
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def onboard(self) -> None:
        """Create the owner through onboarding and keep an access token for the REST API."""
        created = self._request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": CLIENT_ID,
                "name": "Test",
                "username": "test",
                "password": "test-password-1",
                "language": "en",
            },
            auth=False,
        )
        token = self._request(
            "POST",
            "/auth/token",
            form={
                "grant_type": "authorization_code",
                "code": created["auth_code"],
                "client_id": CLIENT_ID,
            },
            auth=False,
        )
        self.token = token["access_token"]

    def add_mqtt(self, host: str, port: int) -> dict[str, Any]:
        """The MQTT integration through its config flow; the created entry."""
        flow = self._request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        for _ in range(3):
            if flow.get("type") != "form":
                break
            flow = self._request(
                "POST",
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {"broker": host, "port": port},
            )
        if flow.get("type") != "create_entry":
            raise AssertionError(f"MQTT config flow did not finish: {flow}")
        result: dict[str, Any] = flow
        return result

    def states(self) -> dict[str, dict[str, Any]]:
        """``/api/states`` by entity id."""
        return {s["entity_id"]: s for s in self._request("GET", "/api/states")}

    def ws(self, kind: str, **fields: Any) -> Any:
        """One websocket API command's result."""
        with connect(f"ws://{self.host}:{self.port}/api/websocket", open_timeout=10) as ws:
            json.loads(ws.recv(10))  # auth_required
            ws.send(json.dumps({"type": "auth", "access_token": self.token}))
            answer = json.loads(ws.recv(10))
            if answer.get("type") != "auth_ok":
                raise AssertionError(f"websocket auth failed: {answer}")
            ws.send(json.dumps({"id": 1, "type": kind, **fields}))
            result = json.loads(ws.recv(10))
        if not result.get("success"):
            raise AssertionError(f"{kind} failed: {result}")
        return result["result"]

    def devices(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.ws("config/device_registry/list")
        return result

    def entities(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.ws("config/entity_registry/list")
        return result
