"""Private real servers for tests: Mosquitto, influxd 1.x and VictoriaMetrics.

The launchers live in ``edge.devservers`` because the benchmarks and the demo start the same
servers (docs/DECISIONS.md, decision 15); this module is the tests' name for them. Fixtures
that use them are in ``tests/conftest.py``: ``mosquitto``, ``influxd``, ``influx_db`` and
``victoria_metrics``.

Every server runs from a binary of a Debian package, on free 127.0.0.1 ports, in its own
temporary directory and process group, with its log in that directory:

- ``free_port()``: a TCP port on 127.0.0.1 that nothing listens on right now.
- ``Service``: ``start()`` (waits until the server answers; a no-op while it runs),
  ``stop()`` (SIGTERM to the group, SIGKILL after 10 s), ``kill()`` (SIGKILL, as a crash),
  ``close()`` (stop and delete the directory), ``running``, ``host``, ``port``, ``dir``,
  ``log_tail()``; as a context manager it starts and closes. ``start()`` after ``stop()``
  uses the same port and the same data, so a test can take a server away and give it back.
- ``Mosquitto(extra_config="", *, anonymous=True)``: ready once an MQTT CONNECT gets a CONNACK;
  ``extra_config`` is appended to its mosquitto.conf (password file, ACL, more listeners).
- ``Influxd(extra_http="")``: ready once ``GET /ping`` answers 204; ``url``,
  ``query(q, db=None, **params)`` (InfluxQL, the decoded JSON; an error in it raises),
  ``rows(q, db)`` (the rows of every series of a SELECT), ``write(lines, db, precision="n")``.
- ``VictoriaMetrics()``: ready once ``/health`` answers; takes InfluxDB line protocol on
  ``/write?db=`` (which adds a ``db`` label) and ``/api/v2/write?bucket=`` (which adds none);
  ``url``, ``flush()`` (makes what was written searchable now) and ``export(match)`` (flushes,
  then the series matching a selector such as ``'{__name__="probe_value"}'``, one dict each
  with ``metric``, ``values`` and ``timestamps`` in ms). Fields become ``<measurement>_<field>``.
- ``ServiceUnavailable``: the binary is not installed (the message names its Debian package:
  ``scripts/setup`` installs them) or the server would not start.
"""

from openbranch.edge.demo.servers import (
    Influxd,
    Mosquitto,
    Service,
    ServiceUnavailable,
    VictoriaMetrics,
    free_port,
)

__all__ = ["Influxd", "Mosquitto", "Service", "ServiceUnavailable", "VictoriaMetrics", "free_port"]
