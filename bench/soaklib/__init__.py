"""The soak's parts (bench/soak.py): the invariants as code, faults as a schedule, a gateway
process on an accelerated clock, recording devices, and the proxies that misbehave.

Test and bench tooling: nothing in the product imports it.
"""
