"""Shared helpers for benchmarks: machine description, table printing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}


def table(rows: list[dict], columns: list[str]) -> str:
    w = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(f"{c:>{w[c]}}" for c in columns), "  ".join("-" * w[c] for c in columns)]
    lines += ["  ".join(f"{str(r.get(c, '')):>{w[c]}}" for c in columns) for r in rows]
    return "\n".join(lines)


def write(name: str, doc: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    p = RESULTS / f"{name}.json"
    p.write_text(json.dumps(doc, indent=1) + "\n")
    return p
