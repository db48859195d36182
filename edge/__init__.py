"""The edge gateway, in rooms by concern; imports only point down this list.

- ``core``: what every part speaks (Reading, Command, the schema, the clock, the config model
  and its YAML loader, the branch's hours as data, the device protocol and the registry).
- ``telemetry``: the outbox, the InfluxDB sinks, energy accounting.
- ``hours``: calendar, closing policy, engine, reconciler, signed control.
- ``runtime``: the gateway and its parts, the coordinators, the MQTT session.
- ``demo``: the simulated branch, its scenario, the embedded broker and dev servers.
- ``cli``: the ``openbranch`` command line.
"""
