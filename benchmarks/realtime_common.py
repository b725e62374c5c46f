"""Shared pieces of the real-time benchmarks: a JACK dummy server, the model under test, OSC helpers."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from tests.jackserver import JackServer  # noqa: E402  (one JACK helper for tests and benchmarks)

__all__ = ["JackServer", "RESULTS", "ROOT", "cpu_seconds", "model_folder", "percentile_row", "wait_until"]


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
