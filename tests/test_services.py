"""The real servers the suite relies on start, answer and keep data across a restart."""

from __future__ import annotations

import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.services import Influxd, Mosquitto, VictoriaMetrics


def roundtrip(broker: Mosquitto, topic: str, payload: bytes) -> bytes:
    got: list[bytes] = []
    done = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        got.append(message.payload)
        done.set()

    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    time.sleep(0.2)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    pub.publish(topic, payload, qos=1).wait_for_publish(5)
    assert done.wait(5), "no message came back through the broker"
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return got[0]


def test_private_mosquitto_roundtrip_and_restart(mosquitto: Mosquitto) -> None:
    assert mosquitto.port != 1883
    assert roundtrip(mosquitto, "t/x", b"hello") == b"hello"
    mosquitto.stop()
    assert not mosquitto.running
    mosquitto.start()
    assert roundtrip(mosquitto, "t/y", b"again") == b"again"


def test_influxd_write_query_and_keep_data_across_restart(influxd: Influxd, influx_db: str) -> None:
    influxd.write("probe,branch=b value=42i 1700000000000000000\n", influx_db)
    assert influxd.rows("SELECT value FROM probe", influx_db) == [["2023-11-14T22:13:20Z", 42]]
    influxd.stop()
    influxd.start()
    assert influxd.rows("SELECT value FROM probe", influx_db) == [["2023-11-14T22:13:20Z", 42]]


def test_victoria_metrics_accepts_v1_and_v2_writes(victoria_metrics: VictoriaMetrics) -> None:
    for path in ("/write?db=x", "/api/v2/write?bucket=x&precision=ns"):
        request = urllib.request.Request(
            victoria_metrics.url + path,
            data=b"probe,branch=b value=7 1700000000000000000\n",
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204
    series = victoria_metrics.export('{__name__="probe_value"}')
    assert series and series[0]["values"] == [7]
    assert series[0]["metric"]["branch"] == "b"
