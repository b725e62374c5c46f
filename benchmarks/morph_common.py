"""Shared by the morph benchmarks: machine facts and writing a result JSON atomically."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path


def machine_info() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_average": os.getloadavg()}


def write_result(path, data: dict) -> Path:
    """Add machine and date, write ``path`` via a temporary file, print where it went."""
    out = dict(data, machine=machine_info(), date=time.strftime("%Y-%m-%d %H:%M:%S"))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.part")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(p)
    print(f"wrote {p}")
    return p
