"""Voices on one core: what a frame costs per voice, how many voices fit, and 8 voices through JACK.

1. Freewheel: ``EngineCore`` (the shipped model, ``OMP_NUM_THREADS=1``)
   renders 1, 2, 4, ... voices (a held chord, every voice sounding) block by
   block as fast as it can; the render time of a block (one mel frame, 11.6 ms
   of sound) gives the real-time load, the cost per voice (the slope) and the
   most voices whose mean load stays under ``--budget`` of a core (default
   0.7: the callback, OSC and the resampler need the rest).
2. Real time: ``serve``'s engine plays ``--voices`` voices (default 8)
   through a JACK dummy server at 48 kHz with 256-sample periods for
   ``--seconds`` (default 60) and counts device underflows and ring underruns.

Prints a table and writes benchmarks/results/voices.json.

    OMP_NUM_THREADS=1 python -m benchmarks.voices [--checkpoint DIR] [--seconds 60] [--voices 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, ROOT, fmt_buffer, model_folder, write_result
from sonolatent.cli.serve import buffer_ms_arg
from sonolatent.engine.runtime import DEFAULT_BUFFER_MS, DEFAULT_RT_PRIORITY
from sonolatent.jackserver import JackServer

CHORD = [60, 64, 67, 71, 72, 76, 79, 83, 84, 88, 91, 95, 96, 100, 103, 107]


def _core(bundle, voices: int, rate: int):
    from sonolatent.engine.core import EngineCore
    from sonolatent.models.synth import StreamingSynth

    core = EngineCore(StreamingSynth(bundle), rate, voices=max(voices, 1))
    core.apply([("/sono/free", (1,)), ("/sono/latent", tuple([0.5] * core.D)), ("/sono/attack", (0.001,))]
               + [("/sono/note/on", (float(CHORD[k % len(CHORD)] - 24), 0.5)) for k in range(voices)])
    return core


def freewheel(bundle, counts, blocks: int) -> list[dict]:
    import numpy as np

    rows = []
    for n in counts:
        core = _core(bundle, n, 48000)
        for _ in range(10):
            core.render_block()
        assert core.bank.n_sounding() == n
        t = np.empty(blocks)
        cpu = np.empty(blocks)
        for i in range(blocks):
            c0, t0 = time.thread_time(), time.perf_counter()
            core.render_block()
            t[i] = time.perf_counter() - t0
            cpu[i] = time.thread_time() - c0
        frame = core.dt
        rows.append({"voices": n, "cpu_ms_mean": round(1e3 * cpu.mean(), 3),
                     "cpu_ms_p99": round(1e3 * float(np.percentile(cpu, 99)), 3),
                     "render_ms_mean": round(1e3 * t.mean(), 3),
                     "render_ms_p99": round(1e3 * float(np.percentile(t, 99)), 3),
                     "load_mean": round(t.mean() / frame, 3), "load_p99": round(float(np.percentile(t, 99)) / frame, 3)})
    return rows


def worker(args) -> dict:
    """``--voices`` voices through the JACK device for ``--seconds`` (in a process pointed at the server)."""
    import torch

    from sonolatent.engine.runtime import Engine
    from sonolatent.models import load_bundle
    from sonolatent.models.synth import StreamingSynth

    torch.set_num_threads(1)
    sys.setswitchinterval(0.0002)
    bundle = load_bundle(args.model)
    engine = Engine(StreamingSynth(bundle), samples_dir=".", mode="device", device=args.device, block_size=256,
                    duration=args.seconds, voices=args.voices, safety_ms=args.buffer_ms,
                    rt_priority=args.rt_priority)
    D = bundle.vae.latent_dim
    engine.preload(None, [("/sono/free", (1,)), ("/sono/latent", tuple([0.5] * D)), ("/sono/attack", (0.001,))]
                   + [("/sono/note/on", (float(CHORD[k] - 24), 0.5)) for k in range(args.voices)])
    engine.start()
    time.sleep(1.0)
    u0, r0 = engine.underflows, engine.ring_underruns   # the stream's start may be flagged: count from here
    assert engine.wait(args.seconds * 20 + 120)   # a loaded machine renders slower than real time
    st = engine.status()
    engine.close()
    return {"voices": args.voices, "seconds": args.seconds, "block_size": 256, "buffer_ms": args.buffer_ms,
            "rt_priority": st["rt_priority"], "buffer_samples": st["buffer_target"],
            "device_rate": engine.device_rate,
            "underflows": st["underflows"] - u0, "ring_underruns": st["ring_underruns"] - r0,
            "render_ms_mean": st["render_ms_mean"], "render_ms_max": st["render_ms_max"],
            "voices_sounding_at_end": engine.core.bank.n_sounding()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--voices", type=int, default=8, help="voices for the real-time run")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the real-time run")
    ap.add_argument("--buffer-ms", type=buffer_ms_arg, default=DEFAULT_BUFFER_MS, metavar="MS|auto",
                    help="the engine's safety margin in the real-time run (serve --buffer-ms; default: auto)")
    ap.add_argument("--rt-priority", type=int, default=DEFAULT_RT_PRIORITY,
                    help=f"the engine's real-time priority (serve --rt-priority; 0: normal; default {DEFAULT_RT_PRIORITY})")
    ap.add_argument("--jack-realtime", action="store_true",
                    help="run the JACK dummy server real-time (jackd -R, as a user's would; needs rtprio)")
    ap.add_argument("--counts", type=int, nargs="*", default=[1, 2, 4, 8, 12, 16],
                    help="voice counts timed in freewheel (none: only the real-time run)")
    ap.add_argument("--blocks", type=int, default=200, help="blocks timed per voice count (freewheel)")
    ap.add_argument("--budget", type=float, default=0.7, help="share of a core the voices may use")
    ap.add_argument("--out", default=str(RESULTS / "voices.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--device", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 (one core, as serve renders)", file=sys.stderr)
    import numpy as np
    import torch

    from sonolatent.models import load_bundle

    torch.set_num_threads(1)
    folder, what = model_folder(args.checkpoint)
    bundle = load_bundle(folder)
    rows = freewheel(bundle, args.counts, args.blocks)
    frame_ms = 1e3 * bundle.mel_config.hop_length / bundle.sample_rate
    slope = base = float("nan")
    fit = None
    if len(rows) >= 2:
        n = np.array([r["voices"] for r in rows], float)
        ms = np.array([r["cpu_ms_mean"] for r in rows])   # CPU time: what a core spends, whoever else runs
        slope, base = np.polyfit(n, ms, 1)
        fit = int((args.budget * frame_ms - base) // slope) if slope > 0 else 0
    with JackServer(48000, 256, realtime=args.jack_realtime) as jack:
        cmd = [sys.executable, "-m", "benchmarks.voices", "--worker", "--model", str(folder), "--device", str(jack.device()),
               "--voices", str(args.voices), "--seconds", str(args.seconds), "--buffer-ms", fmt_buffer(args.buffer_ms),
               "--rt-priority", str(args.rt_priority)]
        r = subprocess.run(cmd, env=jack.env, cwd=ROOT, capture_output=True, text=True, timeout=args.seconds * 20 + 900)
        if r.returncode != 0:
            print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
            return 1
        live = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"model: {what}; one thread; one block = one mel frame = {frame_ms:.1f} ms of sound; "
          f"CPU = the rendering thread's CPU time; load = wall-clock render time / frame; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'voices':>6} {'CPU ms':>8} {'CPU p99':>8} {'wall ms':>8} {'wall p99':>9} {'load':>6}")
    for r in rows:
        print(f"{r['voices']:>6} {r['cpu_ms_mean']:>8.2f} {r['cpu_ms_p99']:>8.2f} {r['render_ms_mean']:>8.2f} "
              f"{r['render_ms_p99']:>9.2f} {r['load_mean']:>6.2f}")
    if fit is not None:
        print(f"per voice {slope:.3f} ms CPU per frame (+{base:.3f} ms fixed); voices within {args.budget:.0%} of a "
              f"core: {fit}")
    print(f"JACK dummy{' (jackd -R)' if args.jack_realtime else ''} 48 kHz / 256, buffer {fmt_buffer(args.buffer_ms)} "
          f"(ended at {live['buffer_samples']} samples), producer priority {live['rt_priority']}: "
          f"{live['voices']} voices for {live['seconds']:.0f} s: "
          f"{live['underflows']} underflows, "
          f"{live['ring_underruns']} ring underruns (render {live['render_ms_mean']:.2f} ms mean, "
          f"{live['render_ms_max']:.2f} max)")
    write_result(args.out, {"benchmark": "voices", "model": what, "freewheel": rows,
                            "per_voice_ms": None if fit is None else round(float(slope), 4),
                            "fixed_ms": None if fit is None else round(float(base), 4),
                            "frame_ms": round(frame_ms, 3), "budget": args.budget, "voices_that_fit": fit,
                            "jack_realtime": args.jack_realtime, "realtime": live})
    return 0


if __name__ == "__main__":
    sys.exit(main())
