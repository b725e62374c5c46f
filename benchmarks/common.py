"""Shared by the benchmarks: the machine's description, tables, result files, the model under test, timing helpers.

Every benchmark runs as a module from the repository root (``python -m benchmarks.NAME``), prints a
table and writes ``benchmarks/results/NAME.json`` with the machine and the date.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict:
    """CPU model, cores, load, Python and torch versions, torch threads, date."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg(),
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d")}


def table(rows: list[dict], columns: list[str]) -> str:
    w = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(f"{c:>{w[c]}}" for c in columns), "  ".join("-" * w[c] for c in columns)]
    lines += ["  ".join(f"{str(r.get(c, '')):>{w[c]}}" for c in columns) for r in rows]
    return "\n".join(lines)


def write_result(path, data: dict) -> Path:
    """Add the machine and the date, write ``path`` via a temporary file, print where it went."""
    out = dict(data, machine=machine(), date=time.strftime("%Y-%m-%d %H:%M:%S"))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.part")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(p)
    print(f"wrote {p}")
    return p


def model_folder(checkpoint: str | None) -> tuple[Path, str]:
    """The bundle to measure: ``checkpoint``, else the shipped one if complete, else random full-size models."""
    from sonolatent.models import DEFAULT_CHECKPOINT

    if checkpoint:
        return Path(checkpoint), "checkpoint"
    if (DEFAULT_CHECKPOINT / "vae" / "config.json").exists() and (DEFAULT_CHECKPOINT / "vocoder" / "config.json").exists():
        return DEFAULT_CHECKPOINT, "checkpoints/default"
    import torch

    from sonolatent.audio.mel import MelConfig
    from sonolatent.models import MelVAE, Vocoder, save_checkpoint

    folder = Path(tempfile.mkdtemp(prefix="sl-bench-model-"))
    torch.manual_seed(0)
    save_checkpoint(folder / "vae", MelVAE(MelConfig()))
    save_checkpoint(folder / "vocoder", Vocoder(MelConfig()))
    return folder, "random init, default (full) model sizes"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile_row(values_ms) -> dict:
    import numpy as np

    v = np.asarray(values_ms, float)
    v = v[~np.isnan(v)]
    return {"n": int(len(v)), "p50_ms": round(float(np.percentile(v, 50)), 2),
            "p99_ms": round(float(np.percentile(v, 99)), 2), "max_ms": round(float(v.max()), 2)}


def wait_until(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def fmt_buffer(ms: float | None) -> str:
    """A --buffer-ms value as serve takes it: milliseconds, or 'auto' (None)."""
    return "auto" if ms is None else f"{ms:g}"
