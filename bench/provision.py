"""Render a generated 200-branch inventory (with a progress bar); print the time.

.venv/bin/python bench/provision.py [--branches 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml
from tqdm import tqdm

from openbranch.edge.core.registry import default_registry
from openbranch.provisioning.inventory import load_inventory
from openbranch.provisioning.render import render
from openbranch.provisioning.secrets import Secrets

ROOT = Path(__file__).resolve().parents[1]


def generate(n: int) -> dict[str, object]:
    base = yaml.safe_load((ROOT / "examples/inventories/aarhus.yaml").read_text(encoding="utf-8"))
    template = base["branches"][1]  # a local branch with Modbus and MQTT devices
    branches = []
    for i in range(n):
        branch = yaml.safe_load(yaml.safe_dump(template))
        branch["id"], branch["name"] = f"branch-{i:03d}", f"Branch {i:03d}"
        for device in branch["devices"]:
            transport = device["transport"]
            if "host" in transport:
                transport["host"] = (
                    f"10.{20 + i // 250}.{i % 250}.{transport['host'].split('.')[-1]}"
                )
            else:
                transport["topic"] = f"branch-{i:03d}/{device['id']}"
        branches.append(branch)
    base["branches"] = branches
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        path.write_text(yaml.safe_dump(generate(args.branches)), encoding="utf-8")
        t0 = time.perf_counter()
        inventory = load_inventory(path, check_device=default_registry().check_device)
        loaded = time.perf_counter() - t0
        files = render(
            inventory,
            Secrets(Path(tmp) / "secrets"),
            progress=lambda b: tqdm(b, desc="rendering", unit="branch"),
        )
        total = time.perf_counter() - t0
    print(
        f"{args.branches} branches: inventory validated in {loaded:.2f} s, "
        f"{len(files)} files rendered, {total:.2f} s in all"
    )


if __name__ == "__main__":
    main()
