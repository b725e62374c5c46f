"""Does a steady note come out at its own pitch?

A vocoder that makes each frame afresh from the mel around it is the same
function at every frame, so a steady input makes the same frame, phase
included, every mel hop: its output then repeats every hop and its partials sit
on multiples of ``sample_rate / hop_length`` (86.1 Hz with the default mel),
whatever the note's own pitch. The carried phase (``phase_carry``) is the
cure. This measures it on concert-pitch notes from C2 to C7, as a pure sine
and as a six-partial harmonic tone (partial k at 1/k), 2 s each at -10 dBFS:

- pitch error: the strongest spectral peak within half an octave of the
  fundamental, in cents from the true fundamental (parabolic interpolation on
  a 1 s Hann FFT of the held middle);
- off-pitch energy: the share of the held middle's energy further than
  max(8 Hz, 30 cents) from every partial of the note (a clean tone: near 0 %).

for the vocoder alone (the note's own mel), the full model (encode, decode,
vocode; the path the instrument plays) and Griffin-Lim-64 on the same mel.
Prints a table and writes benchmarks/results/tuning.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks.common import RESULTS, write_result

from sonolatent.models import DEFAULT_CHECKPOINT, load_bundle

NOTES = (36, 43, 48, 55, 60, 64, 67, 69, 72, 76, 79, 84, 88, 91, 96)
PARTIALS = {"sine": 1, "harmonic": 6}


def tone(f0: float, partials: int, sr: int, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    ks = [k for k in range(1, partials + 1) if k * f0 < 0.45 * sr]
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in ks)
    return (10 ** (-10 / 20) * x / np.abs(x).max()).astype(np.float32)


def analyse(y: np.ndarray, f0: float, partials: int, sr: int) -> tuple[float, float]:
    """(pitch error in cents, off-pitch share of energy) of the held middle second of ``y``."""
    n = sr
    start = max(0, len(y) // 2 - n // 2)
    seg = y[start: start + n].astype(np.float64)
    seg = np.pad(seg, (0, n - len(seg)))
    spec = np.abs(np.fft.rfft(seg * np.hanning(n))) ** 2
    f = np.fft.rfftfreq(n, 1.0 / sr)
    lo, hi = np.searchsorted(f, f0 / np.sqrt(2)), np.searchsorted(f, f0 * np.sqrt(2))
    i = lo + int(np.argmax(spec[lo:hi]))
    if 0 < i < len(spec) - 1:   # parabolic interpolation on the log power
        a, b, c = np.log(spec[i - 1: i + 2] + 1e-30)
        i = i + 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else i
    peak = i * sr / n
    near = np.zeros_like(f, dtype=bool)
    for k in range(1, partials + 1):
        fk = k * f0
        if fk >= 0.45 * sr:
            break
        near |= np.abs(f - fk) <= max(8.0, fk * (2 ** (30 / 1200) - 1))
    return float(1200 * np.log2(max(peak, 1e-9) / f0)), float(spec[~near].sum() / max(spec.sum(), 1e-30))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--no-griffinlim", action="store_true", help="skip the Griffin-Lim reference (slow)")
    ap.add_argument("--out", default=str(RESULTS / "tuning.json"))
    args = ap.parse_args(argv)

    import torch

    from sonolatent.audio.mel import MelSpectrogram
    from sonolatent.evaluation import full_model, griffin_lim, vocode

    torch.set_num_threads(1)
    t0 = time.time()
    bundle = load_bundle(args.checkpoint)
    sr, cfg = bundle.sample_rate, bundle.mel_config
    melspec = MelSpectrogram(cfg)
    paths = {"vocoder": lambda x: vocode(bundle, x), "model": lambda x: full_model(bundle, x)}
    if not args.no_griffinlim:
        def gl(x):
            with torch.no_grad():
                return griffin_lim(melspec(torch.from_numpy(x)[None])[0].numpy(), cfg, 64)
        paths["griffinlim"] = gl
    rows = []
    print(f"{'tone':<9}{'note':>5}{'f0 Hz':>9}" + "".join(f"{p + ' cents':>18}{'off %':>8}" for p in paths))
    for kind, partials in PARTIALS.items():
        for note in NOTES:
            f0 = 440.0 * 2 ** ((note - 69) / 12)
            x = tone(f0, partials, sr)
            row = {"tone": kind, "note": note, "f0": round(f0, 2)}
            for name, fn in paths.items():
                cents, off = analyse(fn(x), f0, partials, sr)
                row[name] = {"cents": round(cents, 1), "off_pitch": round(off, 4)}
            rows.append(row)
            print(f"{kind:<9}{note:>5}{f0:>9.1f}" + "".join(
                f"{row[p]['cents']:>18.1f}{100 * row[p]['off_pitch']:>8.1f}" for p in paths), flush=True)
    summary = {}
    print()
    print(f"{'path':<12}{'median |cents|':>16}{'worst |cents|':>15}{'within 10 cents':>17}{'median off %':>14}")
    for p in paths:
        c = np.abs([r[p]["cents"] for r in rows])
        off = [r[p]["off_pitch"] for r in rows]
        summary[p] = {"median_abs_cents": round(float(np.median(c)), 1), "worst_abs_cents": round(float(c.max()), 1),
                      "within_10_cents": int((c <= 10).sum()), "of": len(c),
                      "median_off_pitch": round(float(np.median(off)), 4)}
        s = summary[p]
        print(f"{p:<12}{s['median_abs_cents']:>16.1f}{s['worst_abs_cents']:>15.1f}"
              f"{s['within_10_cents']:>11} / {s['of']:<3}{100 * s['median_off_pitch']:>13.1f}")
    write_result(args.out, {"benchmark": "tuning", "checkpoint": str(args.checkpoint), "summary": summary,
                            "tones": rows, "seconds": round(time.time() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
