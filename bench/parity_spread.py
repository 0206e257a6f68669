"""How far correct float32 kernels move the shipped models' outputs, against the bound ganport's parity rule allows.

Runs `verify` on every shipped model once per kernel setting of this machine (oneDNN's ISA cap, oneDNN off, one
thread), each in its own process (oneDNN reads its settings once), and prints per model and backend the largest
difference seen, the setting that gave it and the bound. The predictions it compares with were stored on another
machine (see each test-vector file's provenance), so these are cross-machine differences too.

    .venv/bin/python bench/parity_spread.py [--jvm] [--json bench/results/DATE-parity_spread.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from common import report
from rich.table import Table

SETTINGS = {
    "default": ({}, []),
    "AVX512_CORE": ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, []),
    "AVX2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, []),
    "SSE41": ({"ONEDNN_MAX_CPU_ISA": "SSE41"}, []),
    "oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, []),
    "1 thread": ({}, ["taskset", "-c", "0"]),
}
ONE_SETTING = """
import json, sys
from ganport.host import provenance
from ganport.runtime import SHIPPED_MODELS
from ganport.verify import verify
shipped = sorted(folder for folder in SHIPPED_MODELS.iterdir() if (folder / "generator.onnx").is_file())
rows = [(folder.name, c.model, c.backend, c.max_abs_diff, c.bound, c.origin)
        for folder in shipped for c in verify(folder, jvm=sys.argv[1] == "1", log=lambda line: None)]
print(json.dumps({"machine": provenance({}), "rows": rows}))
"""


def measure(setting: str, jvm: bool) -> dict:
    env_changes, prefix = SETTINGS[setting]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env_changes}
    command = [*prefix, sys.executable, "-c", ONE_SETTING, "1" if jvm else "0"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jvm", action="store_true", help="also DL4J and ONNX Runtime for Java, default setting only")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    measured = {setting: measure(setting, jvm=args.jvm and setting == "default") for setting in SETTINGS}
    worst: dict[tuple[str, str, str], tuple[float, str, float, str]] = {}
    for setting, result in measured.items():
        for name, model, backend, diff, bound, origin in result["rows"]:
            key = (name, model, backend)
            if backend != "h5 weights" and (key not in worst or diff > worst[key][0]):
                worst[key] = (diff, setting, bound, origin)
    machine = measured["default"]["machine"]
    title = f"largest difference over {len(SETTINGS)} kernel settings on {machine['cpu']} ({machine['isa']})"
    table = Table(title=title)
    for column in ("model", "network", "backend", "largest diff", "setting", "bound", "diff / bound", "reference"):
        table.add_column(column, justify="right" if column in ("largest diff", "bound", "diff / bound") else "left")
    for (name, model, backend), (diff, setting, bound, origin) in worst.items():
        table.add_row(name, model, backend, f"{diff:.3g}", setting, f"{bound:.3g}", f"{diff / bound:.2f}", origin)
    report(table, {"machine": machine, "settings": measured}, args.json)


if __name__ == "__main__":
    main()
