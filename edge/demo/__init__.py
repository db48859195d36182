"""The demo: a simulated branch through its day (``day``), its scenario, the embedded MQTT
broker and the dev servers (private influxd, Mosquitto, VictoriaMetrics) it, the tests and the
benchmarks start. Imports everything below it; nothing in the product imports it.
"""
