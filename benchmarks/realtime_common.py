"""Shared pieces of the real-time benchmarks: a JACK dummy server, the model under test, OSC helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


class JackServer:
    """``jackd --no-realtime -d dummy`` under a unique name (a context manager that always stops it)."""

    def __init__(self, rate: int = 48000, period: int = 256):
        self.name = f"sl-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_AUDIO_RESERVATION="1")
        self.cmd = ["jackd", "--no-realtime", "-n", self.name, "-d", "dummy", "-r", str(rate), "-p", str(period)]
        self.proc = None

    def __enter__(self) -> "JackServer":
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        ok = subprocess.run(["jack_wait", "-w", "-t", "5"], env=self.env, capture_output=True, timeout=15)
        if ok.returncode != 0:
            self.__exit__()
            raise RuntimeError("jackd did not start")
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def device(self) -> int:
        """PortAudio's JACK output device, asked in a fresh process (PortAudio enumerates once, at import)."""
        code = textwrap.dedent("""
            import sounddevice as sd
            for api in sd.query_hostapis():
                if api["name"] == "JACK Audio Connection Kit":
                    print([d for d in api["devices"] if sd.query_devices(d)["max_output_channels"] > 0][0])
        """)
        out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=60)
        return int(out.stdout.strip().splitlines()[-1])


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
