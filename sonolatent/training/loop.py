"""The training loop shared by the VAE and the vocoder.

A *task* owns the models and knows how to take one step, validate and export;
this module owns everything around it: seeding, threads, the time and step
budget, the progress bar (losses, steps/s, time left), periodic validation,
saving full training state (optimizer included) for ``--resume``, exporting
checkpoints, and DistributedDataParallel when launched by ``torchrun``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .pictures import save_validation_picture
from .state import load_state, save_state


@dataclass(frozen=True)
class LoopConfig:
    max_steps: int | None = None
    max_minutes: float | None = None
    valid_every: int = 500
    save_every: int = 2000
    seed: int = 0
    threads: int | None = None
    progress: bool = True
    keep_exports: bool = False   # also copy every export to RUN/exports/step-NNNNNNN (for averaging)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the process group when launched by torchrun (gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _picture(task, run_dir: Path, step: int, val: dict) -> None:
    """RUN/valid.png: validation clips and what the model makes of them."""
    if task.picture_pairs:
        figures = ", ".join(f"{k} {v:.3f}" for k, v in val.items())
        save_validation_picture(run_dir / "valid.png", task.picture_pairs, f"{task.kind}, step {step}: {figures}")


def _fmt_time(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _StopRequest:
    """Ctrl-C / SIGTERM ask the loop to stop after the current step, save and export."""

    def __init__(self):
        self.requested = False
        self.signal: int | None = None   # the signal that asked (the exit status is 128 + it)
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signum

    def __exit__(self, *exc):
        for sig, h in self._old.items():
            signal.signal(sig, h)
        return False


def run(task, run_dir: str | Path, loop: LoopConfig, resume: bool, ddp: Dist) -> dict:
    """Train ``task`` until the step or time budget is spent (or Ctrl-C / SIGTERM,
    which finish the current step, save and export). Returns a summary."""
    with _StopRequest() as stop_request:
        return _run(task, Path(run_dir), loop, resume, ddp, stop_request)


def _run(task, run_dir: Path, loop: LoopConfig, resume: bool, ddp: Dist, stop_request) -> dict:
    if loop.threads:
        torch.set_num_threads(loop.threads)
    seed_everything(loop.seed + 1000 * ddp.rank)
    step, elapsed = 0, 0.0
    if resume:
        info = load_state(run_dir / "state", task.modules(), task.optimizers())
        step, elapsed = int(info["step"]), float(info.get("elapsed", 0.0))
        task.resumed(info)
    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "log.jsonl"
    if ddp.main:
        with open(log_path, "a") as f:
            f.write(json.dumps({"start": step, "resumed": bool(resume), "world_size": ddp.world,
                                "time": round(elapsed, 1)}) + "\n")
    t0 = time.monotonic() - elapsed
    budget_s = loop.max_minutes * 60 if loop.max_minutes else None
    rng = np.random.default_rng(loop.seed + 7919 * ddp.rank + step)
    bar = tqdm(total=loop.max_steps, initial=step, desc=f"train {task.kind}", unit="step",
               disable=not (loop.progress and ddp.main), dynamic_ncols=True, mininterval=1.0)
    last = {}
    rate_t, rate_step = time.monotonic(), step

    def save(final: bool = False):
        if not ddp.main:
            return
        info = {"step": step, "elapsed": time.monotonic() - t0, "kind": task.kind}
        info.update(task.state_info())
        save_state(run_dir / "state", task.modules(), task.optimizers(), info)
        task.export(step, final)
        if loop.keep_exports:
            keep = run_dir / "exports" / f"step-{step:07d}"
            if not keep.exists():
                shutil.copytree(task.out, keep)

    while True:
        now = time.monotonic()
        stop = stop_request.requested or (loop.max_steps is not None and step >= loop.max_steps) or (
            budget_s is not None and now - t0 >= budget_s
        )
        if ddp.world > 1:  # every rank stops at the same step
            flag = torch.tensor([1.0 if stop else 0.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            break
        last = task.train_step(rng, step)
        step += 1
        bar.update(1)
        if step % 10 == 0:
            dt = time.monotonic() - rate_t
            sps = (step - rate_step) / dt if dt > 0 else 0.0
            rate_t, rate_step = time.monotonic(), step
            left = []
            if budget_s is not None:
                left.append(budget_s - (time.monotonic() - t0))
            if loop.max_steps is not None and sps > 0:
                left.append((loop.max_steps - step) / sps)
            post = {k: f"{v:.3f}" for k, v in last.items()}
            post["steps/s"] = f"{sps:.1f}"
            if left:
                post["left"] = _fmt_time(min(left))
            bar.set_postfix(post, refresh=False)
        if ddp.main and step % loop.valid_every == 0:
            val = task.validate()
            rec = {"step": step, "time": round(time.monotonic() - t0, 1), "train": last, "valid": val}
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            bar.write(f"step {step}: " + ", ".join(f"valid {k} {v:.4f}" for k, v in val.items()))
            _picture(task, run_dir, step, val)
        if step % loop.save_every == 0:
            save()
    bar.close()
    val = task.validate() if ddp.main else {}
    if ddp.main:
        _picture(task, run_dir, step, val)
        with open(log_path, "a") as f:
            f.write(json.dumps({"step": step, "time": round(time.monotonic() - t0, 1), "train": last,
                                "valid": val, "final": True}) + "\n")
    save(final=True)
    if ddp.world > 1:
        task.save_rank_weights(run_dir / f"rank{ddp.rank}.safetensors")
        dist.barrier()
    return {"steps": step, "minutes": (time.monotonic() - t0) / 60, "valid": val,
            "interrupted": stop_request.requested, "signal": stop_request.signal}
