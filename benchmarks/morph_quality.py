"""How good are morphs? Latent morph vs a plain crossfade, on pairs of instrument notes.

For every pair of sound files in --dir (default patches/samples), or of
held-out notes picked from a dataset's validation split (--dataset), render an
11-step morph (fixed blends 0, 0.1, .., 1; `--align stretch` to the longer
note) through the streaming synth, and measure:

(a) spectral centroid vs blend position: R^2 of a straight-line fit (1 = the
    brightness moves evenly from A to B); median over pairs;
(b) evenness: the largest log-mel distance between neighbouring steps divided
    by the length of the whole path (the sum of the 10 distances); 0.1 is
    perfectly even, 1.0 is one jump;
(c) the same two numbers for a plain crossfade of the input audio;
clicks: the largest sample-to-sample jump in a 4-s linear morph vs in the two
inputs and vs in the model's own rendering of each input over the same 4 s
(blend held at 0 and 1; a jump the morph adds stands above these), all at
-1 dBFS peak, and that jump relative to the signal's own 99.9th-percentile
jump (a click is an outlier; noisy sounds have big jumps everywhere).

Prints a table and writes benchmarks/results/morph_quality.json. Meaningful
only with a trained checkpoint (--checkpoint, default checkpoints/default).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, ROOT, write_result

from sonolatent.audio.io import peak_normalize
from sonolatent.audio.mel import MelSpectrogram
from sonolatent.latent import get_curve
from sonolatent.models import DEFAULT_CHECKPOINT, load_bundle
from sonolatent.render import load_source, render_morph

STEPS = 11


def centroid(y: np.ndarray, sr: int, n_fft: int = 4096) -> float:
    """Spectral centroid (Hz) of the time-averaged power spectrum."""
    import librosa

    S = np.abs(librosa.stft(y.astype(np.float32), n_fft=n_fft, hop_length=n_fft // 4)) ** 2
    p = S.mean(axis=1)
    f = np.fft.rfftfreq(n_fft, 1 / sr)
    return float((f * p).sum() / max(p.sum(), 1e-20))


def r2_linear(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    A = np.c_[x, np.ones_like(x)]
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    ss_res = float(((y - A @ coef) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def evenness(mels: list[np.ndarray]) -> float:
    """max neighbour distance / path length (log-mel, mean abs difference per bin and frame)."""
    d = [float(np.abs(a - b).mean()) for a, b in zip(mels[:-1], mels[1:])]
    total = sum(d)
    return max(d) / total if total > 0 else float("nan")


def max_jump(y: np.ndarray) -> float:
    return float(np.abs(np.diff(y)).max())


def jump_outlier(y: np.ndarray) -> float:
    """Largest sample jump / 99.9th percentile jump of the same signal: a click stands far above 1."""
    d = np.abs(np.diff(y))
    q = float(np.percentile(d, 99.9))
    return float(d.max() / q) if q > 0 else float("nan")


def held_out_notes(dataset: Path, pitch: int = 60) -> list[Path]:
    """One validation-split note per held-out group of a dataset (manifest.jsonl): nearest ``pitch``,
    longest hold, middle velocity; drum kits left out (a morph between pitched notes is the question)."""
    best: dict[str, tuple] = {}
    for line in (dataset / "manifest.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e.get("split") != "valid" or str(e.get("group", "")).startswith("drums/"):
            continue
        key = (abs(int(e.get("pitch", pitch)) - pitch), -float(e.get("note_seconds", 0)),
               abs(int(e.get("velocity", 80)) - 80), e["path"])
        if e["group"] not in best or key < best[e["group"]][0]:
            best[e["group"]] = (key, dataset / e["path"])
    return [v[1] for _, v in sorted(best.items())]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--dir", default=str(ROOT / "patches" / "samples"), help="folder of WAV notes")
    ap.add_argument("--dataset", default=None,
                    help="instead of --dir: one held-out (validation-split) note per program of this dataset folder")
    ap.add_argument("--max-pairs", type=int, default=0, help="use at most this many pairs (0: all)")
    ap.add_argument("--interp", default="slerp", choices=("lerp", "slerp"))
    ap.add_argument("--out", default=str(RESULTS / "morph_quality.json"))
    args = ap.parse_args(argv)

    import torch

    t0 = time.time()
    bundle = load_bundle(args.checkpoint)
    sr = bundle.sample_rate
    mel = MelSpectrogram(bundle.mel_config)
    files = held_out_notes(Path(args.dataset)) if args.dataset else sorted(Path(args.dir).glob("*.wav"))
    if len(files) < 2:
        print(f"morph_quality: need at least 2 WAV files in {args.dir}", file=sys.stderr)
        return 2
    sources = {f.name: load_source(bundle, f) for f in files}
    pairs = list(itertools.combinations([f.name for f in files], 2))
    if args.max_pairs:
        pairs = pairs[: args.max_pairs]

    def logmel(y):
        with torch.no_grad():
            return mel(torch.from_numpy(np.asarray(y, np.float32))[None])[0].numpy()

    blends = np.linspace(0, 1, STEPS)
    rows = []
    for na, nb in pairs:
        a, b = sources[na], sources[nb]
        morph = [render_morph(bundle, a, b, x, interp=args.interp, align="stretch").audio for x in blends]
        n = len(morph[0])
        pa = peak_normalize(np.pad(a.audio, (0, max(0, n - len(a.audio))))[:n])
        pb = peak_normalize(np.pad(b.audio, (0, max(0, n - len(b.audio))))[:n])
        xfade = [peak_normalize(((1 - x) * pa + x * pb).astype(np.float32)) for x in blends]
        cm = [centroid(y, sr) for y in morph]
        cx = [centroid(y, sr) for y in xfade]
        sweep = render_morph(bundle, a, b, get_curve("linear"), duration=4.0, interp=args.interp).audio
        # the model's own rendering of each source over the same 4 s (blend held at 0 and at 1):
        # a jump the morph adds is one above these; one that these have too is how the model plays the source
        ends = [peak_normalize(render_morph(bundle, a, b, x, duration=4.0, interp=args.interp).audio)
                for x in (0.0, 1.0)]
        rows.append({
            "a": na, "b": nb,
            "morph_centroid_r2": r2_linear(blends, cm), "xfade_centroid_r2": r2_linear(blends, cx),
            "morph_evenness": evenness([logmel(y) for y in morph]),
            "xfade_evenness": evenness([logmel(y) for y in xfade]),
            "morph_centroids_hz": [round(c, 1) for c in cm], "xfade_centroids_hz": [round(c, 1) for c in cx],
            "morph_max_jump": max_jump(sweep),
            "inputs_max_jump": max(max_jump(peak_normalize(a.audio)), max_jump(peak_normalize(b.audio))),
            "rendered_inputs_max_jump": max(max_jump(e) for e in ends),
            "morph_jump_outlier": jump_outlier(sweep),
            "inputs_jump_outlier": max(jump_outlier(a.audio), jump_outlier(b.audio)),
        })
        r = rows[-1]
        print(f"  {na:>16} -> {nb:<16} centroid R2 morph {r['morph_centroid_r2']:.3f} xfade {r['xfade_centroid_r2']:.3f} | "
              f"evenness morph {r['morph_evenness']:.3f} xfade {r['xfade_evenness']:.3f} | "
              f"jump {r['morph_max_jump']:.3f} vs inputs {r['inputs_max_jump']:.3f}", flush=True)

    def med(k):
        return float(np.nanmedian([r[k] for r in rows]))

    summary = {
        "pairs": len(rows), "steps": STEPS, "interp": args.interp,
        "centroid_r2_median": {"morph": med("morph_centroid_r2"), "crossfade": med("xfade_centroid_r2")},
        "evenness_median": {"morph": med("morph_evenness"), "crossfade": med("xfade_evenness"),
                            "perfectly_even": 1.0 / (STEPS - 1)},
        "clicks": {"morph_max_jump_worst": max(r["morph_max_jump"] for r in rows),
                   "inputs_max_jump_worst": max(r["inputs_max_jump"] for r in rows),
                   "pairs_where_morph_jumps_more_than_inputs":
                       sum(r["morph_max_jump"] > r["inputs_max_jump"] for r in rows),
                   "pairs_where_morph_jumps_more_than_rendered_inputs":
                       sum(r["morph_max_jump"] > 1.01 * r["rendered_inputs_max_jump"] for r in rows),
                   "morph_jump_outlier_worst": max(r["morph_jump_outlier"] for r in rows),
                   "inputs_jump_outlier_worst": max(r["inputs_jump_outlier"] for r in rows)},
    }
    print()
    print(f"{'metric (median over ' + str(len(rows)) + ' pairs)':<44}{'latent morph':>14}{'crossfade':>12}")
    print(f"{'(a) centroid vs blend, R^2 of linear fit':<44}{summary['centroid_r2_median']['morph']:>14.3f}"
          f"{summary['centroid_r2_median']['crossfade']:>12.3f}")
    print(f"{'(b) largest step / path (0.100 = even)':<44}{summary['evenness_median']['morph']:>14.3f}"
          f"{summary['evenness_median']['crossfade']:>12.3f}")
    c = summary["clicks"]
    print(f"clicks: largest sample jump in a 4-s morph {c['morph_max_jump_worst']:.3f} vs inputs "
          f"{c['inputs_max_jump_worst']:.3f} (morph above inputs in {c['pairs_where_morph_jumps_more_than_inputs']} "
          f"of {len(rows)} pairs)")
    print(f"        above the model's own rendering of the two sources (blend held at 0 / 1) by over 1 %: "
          f"{c['pairs_where_morph_jumps_more_than_rendered_inputs']} of {len(rows)} pairs")
    print(f"        largest jump / 99.9th-percentile jump: morph {c['morph_jump_outlier_worst']:.2f}, "
          f"inputs {c['inputs_jump_outlier_worst']:.2f} (a click stands far above the inputs' value)")
    out = {
        "benchmark": "morph_quality", "checkpoint": str(args.checkpoint),
        "inputs": f"held-out notes of {args.dataset}" if args.dataset else str(args.dir),
        "files": [str(f) for f in files],
        "summary": summary, "pairs": rows, "seconds": round(time.time() - t0, 1),
    }
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
