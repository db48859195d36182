"""The private real servers tests use live in ``edge.devservers`` (the demo starts them too)."""

from edge.devservers import (
    Influxd,
    Mosquitto,
    Service,
    ServiceUnavailable,
    VictoriaMetrics,
    free_port,
)

__all__ = ["Influxd", "Mosquitto", "Service", "ServiceUnavailable", "VictoriaMetrics", "free_port"]
