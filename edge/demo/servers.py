"""Private real servers for tests, benchmarks and the demo: Mosquitto, influxd, VictoriaMetrics.

Each starts on free loopback ports in its own temporary directory, waits until it answers,
and stops (SIGTERM, then SIGKILL) when asked, even when a test fails. ``start()`` after
``stop()`` brings it back on the same port and the same data directory, so a test can take a
database away for a while and give it back.

When a binary is missing, ``ServiceUnavailable`` names it and the Debian package.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Self

__all__ = [
    "Influxd",
    "Mosquitto",
    "Service",
    "ServiceUnavailable",
    "VictoriaMetrics",
    "free_port",
]


class ServiceUnavailable(RuntimeError):
    """A server binary is not installed (or would not start)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _find(binary: str, package: str, extra: tuple[str, ...] = ()) -> str:
    for candidate in (shutil.which(binary), *extra):
        if candidate and Path(candidate).exists():
            return candidate
    raise ServiceUnavailable(
        f"{binary} is not installed (Debian package {package}: apt-get install {package},"
        " or run scripts/test which installs it)"
    )


def _http_ok(url: str, expect: tuple[int, ...] = (200, 204)) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) in expect
    except (urllib.error.URLError, OSError):
        return False


class Service:
    """A server process in its own process group and temporary directory."""

    name = "service"

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix=f"openbranch-{self.name}-")
        self.dir = Path(self._tmp.name)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.dir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.dir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServiceUnavailable(f"{self.name} exited at start: {self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        self.stop()
        raise ServiceUnavailable(
            f"{self.name} did not answer within {timeout:g} s: {self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash or a power cut would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (for benchmarks that read /proc)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Mosquitto(Service):
    """A private Mosquitto; ``extra_config`` is appended to the generated mosquitto.conf."""

    name = "mosquitto"

    def __init__(self, extra_config: str = "", *, anonymous: bool = True) -> None:
        binary = _find(
            "mosquitto", "mosquitto", ("/usr/sbin/mosquitto",)
        )  # before the temporary directory
        super().__init__()
        self.binary = binary
        self.extra_config = extra_config
        self.anonymous = anonymous

    def command(self) -> list[str]:
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            "persistence false\n"
            f"log_dest file {self.dir / 'broker.log'}\n"
            "log_type error\nlog_type warning\n"
            # as root, Mosquitto drops to user "mosquitto", which cannot read a test's files
            + ("user root\n" if os.geteuid() == 0 else "")
            + self.extra_config,
            encoding="utf-8",
        )
        return [self.binary, "-c", str(conf)]

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                # MQTT 3.1.1 CONNECT, clean session, keepalive 5, client id "probe"
                s.sendall(bytes.fromhex("101100044d5154540402000500057072 6f6265".replace(" ", "")))
                s.settimeout(1.0)
                return s.recv(4)[:1] == b"\x20"  # CONNACK
        except OSError:
            return False


class Influxd(Service):
    """A private InfluxDB 1.x (Debian's influxdb package)."""

    name = "influxd"

    def __init__(self, extra_http: str = "") -> None:
        binary = _find(
            "influxd", "influxdb", ("/usr/bin/influxd",)
        )  # before the temporary directory
        super().__init__()
        self.binary = binary
        self.rpc_port = free_port()
        self.extra_http = extra_http

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        conf = self.dir / "influxdb.conf"
        conf.write_text(
            f'reporting-disabled = true\nbind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{self.dir / "meta"}"\n'
            f'[data]\n  dir = "{self.dir / "data"}"\n  wal-dir = "{self.dir / "wal"}"\n'
            '  query-log-enabled = false\n  wal-fsync-delay = "0s"\n'
            "[monitor]\n  store-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            f"{self.extra_http}"
            '[logging]\n  level = "warn"\n',
            encoding="utf-8",
        )
        return [self.binary, "-config", str(conf)]

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/ping", (204,))

    def query(self, q: str, db: str | None = None, **params: str) -> dict[str, Any]:
        """Run InfluxQL; return the decoded JSON answer (errors raise with the server's text)."""
        args = {"q": q, **params}
        if db:
            args["db"] = db
        url = f"{self.url}/query?" + urllib.parse.urlencode(args)
        method = "GET" if q.lstrip().upper().startswith(("SELECT", "SHOW")) else "POST"
        request = urllib.request.Request(url, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
        for result in answer.get("results", []):
            if "error" in result:
                raise RuntimeError(f"InfluxQL {q!r}: {result['error']}")
        return answer

    def rows(self, q: str, db: str) -> list[list[Any]]:
        """The values of the first series of a SELECT, or []."""
        series = self.query(q, db)["results"][0].get("series", [])
        return [row for s in series for row in s["values"]]

    def write(self, lines: str, db: str, precision: str = "n") -> None:
        url = f"{self.url}/write?" + urllib.parse.urlencode({"db": db, "precision": precision})
        request = urllib.request.Request(url, data=lines.encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30):
            pass


class VictoriaMetrics(Service):
    """A private VictoriaMetrics: accepts InfluxDB line protocol on /write and /api/v2/write."""

    name = "victoria-metrics"

    def __init__(self) -> None:
        binary = _find(
            "victoria-metrics", "victoria-metrics", ("/usr/bin/victoria-metrics",)
        )  # before the temporary directory
        super().__init__()
        self.binary = binary

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.dir / 'data'}",
            f"-httpListenAddr={self.host}:{self.port}",
            "-loggerLevel=ERROR",
            "-search.latencyOffset=0s",
            "-retentionPeriod=100y",
        ]

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/health", (200,))

    def flush(self) -> None:
        _http_ok(f"{self.url}/internal/force_flush", (200,))

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every series matching ``match`` (e.g. '{__name__=~"energy_.*"}'), as JSON lines."""
        self.flush()
        url = f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(url, timeout=30) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]
