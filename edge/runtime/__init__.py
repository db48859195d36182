"""The running gateway: ``Gateway`` wires its parts (committer, journal, state publisher,
control desk, engine runner, health), one coordinator per device, and the MQTT session.
Imports ``edge.core``, ``edge.telemetry`` and ``edge.hours``.
"""
