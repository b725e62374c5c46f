"""Does the decoder stay on sound when a latent path moves slower than any training sound?

A performer slows a sound down (``/sono/rate``), freezes it, or stretches it
across a long morph; the VAE decoder then meets latent paths that no training
sound made. For held-out notes (per program of a dataset's validation split,
the notes nearest 5 pitches from C2 to C6; or every WAV of --dir), this
renders each note's own latent trajectory

- at its own speed (1x), stretched 2x and 4x (latent frames read slower), and
- frozen: the latent at the note's loudest frame held for 2 s,

through the streaming synth, and measures for each render

- the peak of the decoded log-mel (a decoder that runs away hits the clamp,
  ``mel_max`` of the VAE config) against the original's peak, and
- the share of the output's energy above 16 kHz against the original's
  (a run-away decoder comes out of the vocoder as a loud tone near Nyquist).

A render "runs away" when its decoded peak reaches the clamp or rises more than 2
(natural log, ~17 dB) above both the original's and the 1x render's, or when its
energy above 16 kHz exceeds 10 % and 5x the original's. Prints a table and
writes benchmarks/results/decoder_stability.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, ROOT, write_result
from benchmarks.morph_quality import held_out_notes

from sonolatent.audio.mel import MelSpectrogram
from sonolatent.latent import sample, to_mel_rate
from sonolatent.models import DEFAULT_CHECKPOINT, load_bundle
from sonolatent.models.synth import render_frames
from sonolatent.render import load_source

STRETCHES = (1, 2, 4)
FREEZE_S = 2.0
PITCHES = (36, 48, 60, 72, 84)


def hf_share(y: np.ndarray, sr: int, cutoff: float = 16000.0) -> float:
    spec = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1.0 / sr)
    return float(spec[f >= cutoff].sum() / max(spec.sum(), 1e-20))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--dataset", default=str(ROOT / "data" / "gm"),
                    help="one held-out (validation-split) note per program of this dataset folder")
    ap.add_argument("--dir", default=None, help="instead of --dataset: every WAV file of this folder")
    ap.add_argument("--out", default=str(RESULTS / "decoder_stability.json"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    bundle = load_bundle(args.checkpoint)
    vae, sr, ds = bundle.vae, bundle.sample_rate, bundle.vae.config.downsample
    if args.dir:
        files = sorted(Path(args.dir).glob("*.wav"))
    else:   # per held-out program, the notes nearest each of these pitches
        files = sorted({f for p in PITCHES for f in held_out_notes(Path(args.dataset), pitch=p)})
    if not files:
        print("decoder_stability: no input files", file=sys.stderr)
        return 2

    def decoded_peak(zf: np.ndarray) -> float:
        with torch.no_grad():
            return float(vae.decode_frames(torch.from_numpy(zf)[None]).max())

    melspec = MelSpectrogram(bundle.mel_config)
    rows = []
    for f in files:
        src = load_source(bundle, f)
        with torch.no_grad():
            mel = melspec(torch.from_numpy(src.audio)[None])[0]
        orig_peak, orig_hf = float(mel.max()), hf_share(src.audio, sr)
        own = to_mel_rate(src.latents, src.frames, ds)
        paths = {}
        for s in STRETCHES:
            pos = (np.arange(src.frames * s) + 0.5) / (ds * s) - 0.5   # latent positions read s times slower
            paths[f"stretch {s}x"] = sample(src.latents, pos)
        loudest = min(int(torch.argmax(mel.exp().sum(0))), own.shape[1] - 1)
        n_freeze = int(round(FREEZE_S * sr / bundle.mel_config.hop_length))
        paths["freeze"] = np.repeat(own[:, loudest:loudest + 1], n_freeze, axis=1)
        row = {"file": f.name, "orig_peak": orig_peak, "orig_hf": orig_hf, "renders": {}}
        for name, zf in paths.items():
            zf = np.ascontiguousarray(zf, np.float32)
            y = render_frames(bundle, zf)
            peak, hf = decoded_peak(zf), hf_share(y, sr)
            ref = max(orig_peak, row["renders"]["stretch 1x"]["decoded_peak"]) if row["renders"] else orig_peak
            away = (peak >= vae.config.mel_max - 1e-3 or peak > ref + 2.0 or (hf > 0.10 and hf > 5 * orig_hf))
            row["renders"][name] = {"decoded_peak": peak, "hf_share": hf, "runs_away": bool(away)}
        rows.append(row)
        print(f"  {f.name:<28} peak {orig_peak:5.2f} hf {100 * orig_hf:5.2f}% | " + " | ".join(
            f"{k} {v['decoded_peak']:5.2f} {100 * v['hf_share']:5.1f}%{' RUNS AWAY' if v['runs_away'] else ''}"
            for k, v in row["renders"].items()), flush=True)

    names = list(rows[0]["renders"])
    summary = {}
    print()
    print(f"{'path':<12}{'run-aways':>12}{'worst decoded peak':>20}{'median HF share':>18}{'worst HF share':>16}")
    for k in names:
        r = [row["renders"][k] for row in rows]
        summary[k] = {"runs_away": sum(x["runs_away"] for x in r), "of": len(r),
                      "decoded_peak_worst": max(x["decoded_peak"] for x in r),
                      "hf_share_median": float(np.median([x["hf_share"] for x in r])),
                      "hf_share_worst": max(x["hf_share"] for x in r)}
        s = summary[k]
        print(f"{k:<12}{s['runs_away']:>8} / {s['of']:<3}{s['decoded_peak_worst']:>18.2f}"
              f"{100 * s['hf_share_median']:>17.2f}%{100 * s['hf_share_worst']:>15.1f}%")
    print(f"originals: worst peak {max(r['orig_peak'] for r in rows):.2f}, "
          f"median HF share {100 * float(np.median([r['orig_hf'] for r in rows])):.2f}%")
    write_result(args.out, {"benchmark": "decoder_stability", "checkpoint": str(args.checkpoint),
                            "inputs": str(args.dir) if args.dir else f"held-out notes of {args.dataset}",
                            "mel_max": vae.config.mel_max, "summary": summary, "files": rows,
                            "seconds": round(time.time() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
