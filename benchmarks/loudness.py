"""How steady is the output's loudness across the ways of playing, with and without the output stage?

Renders through the engine's deterministic core (what ``serve --freewheel``, the live engine and
``bounce`` run) with the shipped checkpoint and the bundled samples, at gain 0.8, looping:

- single: each sample alone;
- blend: every pair of samples at morph 0.5;
- offset: piano + strings at morph 0.5 with one of the first 8 latent coordinates at -3 or +3 sd;
- free: free mode, at the latent mean and with one of the first 4 coordinates at -2 or +2 sd.

Each case is measured as its RMS level (dB re full scale) after the first 0.25 s, and its peak.
"before" plays with loudness tracking and the limiter off, "after" with both on (the default).
The spread is max - min of the RMS levels over all cases (and within each mode). Prints a table
and writes benchmarks/results/loudness.json.

    python -m benchmarks.loudness [--checkpoint DIR] [--seconds S]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, table, write_result

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "patches" / "samples"
GAIN = 0.8


def cases(names: list[str], D: int) -> list[tuple[str, str, dict, list]]:
    """``(mode, label, slots {k: name}, changes)`` for every case."""
    out = [("single", n, {0: n}, []) for n in names]
    out += [("blend", f"{a}+{b}", {0: a, 1: b}, [("/sono/morph", (0.5,))])
            for a, b in itertools.combinations(names, 2)]
    pair = {0: "piano_c4", 1: "strings_c4"} if {"piano_c4", "strings_c4"} <= set(names) else {0: names[0], 1: names[1]}
    for k in range(min(8, D)):
        for v in (-3.0, 3.0):
            out.append(("offset", f"latent/{k} {v:+g}", pair, [("/sono/morph", (0.5,)), (f"/sono/latent/{k}", (v,))]))
    out.append(("free", "mean", {}, [("/sono/free", (1,))]))
    for k in range(min(4, D)):
        for v in (-2.0, 2.0):
            out.append(("free", f"latent/{k} {v:+g}", {}, [("/sono/free", (1,)), (f"/sono/latent/{k}", (v,))]))
    return out


def render(synth, sounds, slots, changes, safety, seconds: float) -> np.ndarray:
    from sonolatent.engine.core import EngineCore

    core = EngineCore(synth, synth.sample_rate, safety=safety)
    core.apply([(f"/sono/slot/{k}/load", (n,)) for k, n in slots.items()], {k: sounds[n] for k, n in slots.items()})
    core.apply(changes + [("/sono/gain", (GAIN,)), ("/sono/play", (1.0,))])
    return np.concatenate([core.render_block() for _ in range(int(seconds / core.dt))]).astype(np.float64)


def db(x: float) -> float:
    return round(10 * np.log10(max(x, 1e-12)), 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="model bundle (default: checkpoints/default)")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each render (default: 2)")
    args = ap.parse_args(argv)

    import torch

    from sonolatent.engine.safety import SafetyConfig
    from sonolatent.engine.slots import SampleCache
    from sonolatent.models import load_bundle
    from sonolatent.models.synth import StreamingSynth

    torch.set_num_threads(1)
    bundle = load_bundle(args.checkpoint)
    synth = StreamingSynth(bundle)
    cache = SampleCache(synth, SAMPLES)
    names = sorted(p.stem for p in SAMPLES.glob("*.wav"))
    sounds = {n: cache.load(n) for n in names}
    configs = {"before": SafetyConfig(limiter=False, track=False), "after": SafetyConfig()}
    skip = int(0.25 * bundle.sample_rate)
    rows, t0 = [], time.perf_counter()
    for mode, label, slots, changes in cases(names, bundle.vae.latent_dim):
        row = {"mode": mode, "case": label}
        for tag, cfg in configs.items():
            y = render(synth, sounds, slots, changes, cfg, args.seconds)
            row[f"{tag}_rms_db"] = db(np.mean(y[skip:] ** 2))
            row[f"{tag}_peak_db"] = db(np.max(np.abs(y)) ** 2)
        rows.append(row)
    took = time.perf_counter() - t0

    def spread(tag, rs):
        v = [r[f"{tag}_rms_db"] for r in rs]
        return {"min": min(v), "max": max(v), "spread": round(max(v) - min(v), 2), "std": round(float(np.std(v)), 2),
                "peak_db": max(r[f"{tag}_peak_db"] for r in rs)}

    summary = []
    for mode in ("single", "blend", "offset", "free", "all"):
        rs = [r for r in rows if mode in ("all", r["mode"])]
        s = {"mode": mode, "cases": len(rs)}
        for tag in configs:
            for k, v in spread(tag, rs).items():
                s[f"{tag}_{k}"] = v
        summary.append(s)
    print(table(rows, ["mode", "case", "before_rms_db", "after_rms_db", "before_peak_db", "after_peak_db"]))
    print()
    print(table(summary, ["mode", "cases", "before_min", "before_max", "before_spread", "before_std", "before_peak_db",
                          "after_min", "after_max", "after_spread", "after_std", "after_peak_db"]))
    print(f"\n{len(rows)} cases x 2 settings, {args.seconds:g} s each, in {took:.0f} s")
    write_result(RESULTS / "loudness.json", {"checkpoint": str(bundle.folder), "gain": GAIN, "seconds": args.seconds,
                                             "summary": summary, "cases": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
