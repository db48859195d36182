"""The data path: the outbox (the gateway's memory on disk), the InfluxDB sinks that drain it,
and energy accounting (reset-corrected totals, closed hours). Imports ``edge.core`` only.
"""
