"""The four product folders install under one import name: ``openbranch.edge``,
``openbranch.integrations``, ``openbranch.dashboards``, ``openbranch.provisioning``.

The folders stay at the top of the repository (the architecture's map); setuptools maps each
to its name under ``openbranch`` (``package_dir``), and every sub-package found below them
follows. Everything else about the project is in ``pyproject.toml`` (decision 40).
"""

from setuptools import find_packages, setup

ROOTS = ("edge", "integrations", "dashboards", "provisioning")

setup(
    packages=[
        f"openbranch.{package}" for package in find_packages(include=[f"{root}*" for root in ROOTS])
    ],
    package_dir={f"openbranch.{root}": root for root in ROOTS},
)
