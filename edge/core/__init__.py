"""What every part of the gateway speaks: Reading, Command, the time-series schema, the clock,
the config model with its YAML loader, the branch's hours as data, the device protocol and the
integration registry. Imports the standard library and pydantic only, never another room.
"""
