"""``sonolatent render SCORE.toml -o OUT.wav``: render a morph score.

A score names sound sources and keys (time, weights per source, optional
offsets in PCA standard deviations, gain); see docs/latent-api.md and the
examples in patches/scores/. Every mistake in the score is reported as one
line naming the score file, the line and the key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .morph import add_output_options, check_output_options, format_label, load_bundle_arg, write_outputs


SCORE_HELP = """\
score format (TOML):
  duration = 8.0            # seconds (default: the last key's time)
  interp = "slerp"          # lerp | slerp (default: lerp)
  align = "stretch"         # stretch | loop (default: stretch)
  [[source]]                # one per sound; file relative to the score
  name = "flute"
  file = "../samples/flute_c5.wav"
  [[key]]                   # values move linearly between keys
  time = 0.0
  weights = { flute = 1, strings = 0 }   # or a list in source order
  latent = { 0 = 1.5 }      # optional offsets in PCA standard deviations
  gain = -3.0               # optional, dB

example: sonolatent render patches/scores/flute-strings-brass.toml -o out.wav --plot out.png"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "render",
        help="render a morph score (TOML)",
        description=__doc__.split("\n\n", 1)[1].replace("\n", " ").replace("``", "").strip(),
        epilog=SCORE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("score", metavar="SCORE.toml", help="the score file")
    p.add_argument("-o", "--output", required=True, metavar="OUT.wav", help="output WAV file")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..latent.score import parse_score

    check_output_options(args)
    score = parse_score(args.score)
    from ..render.common import check_not_input

    check_not_input(args.output, [args.score] + [s.file for s in score.sources])
    from ..audio.io import write_audio
    from ..render.score import check_score_files, load_score_sources, render_score

    check_score_files(score)   # a bad source is named before the model loads
    bundle = load_bundle_arg(args)
    score.check_latent_dim(bundle.vae.latent_dim)
    sources = load_score_sources(bundle, score)
    from ..engine.safety import config_from_args

    r = render_score(bundle, score, sources=sources, sr=args.sr, peak_db=args.peak, safety=config_from_args(args))

    def plot() -> None:
        import numpy as np

        from ..render.plots import log_mel, plot_morph

        mc = bundle.mel_config
        out_mel = log_mel(mc, r.audio, r.sample_rate)
        n = out_mel.shape[1]
        x = np.linspace(0, r.weights.shape[1] - 1, n)
        curves = {s.name: np.interp(x, np.arange(r.weights.shape[1]), w) for s, w in zip(score.sources, r.weights)}
        plot_morph(args.plot, [(f"{s.name}: {s.path.name}", log_mel(mc, s.audio)) for s in sources],
                   (f"score {Path(args.score).name} ({score.interp}, align {score.align})", out_mel),
                   mc.frame_rate, curves, "weight")

    jobs = [(args.plot, plot)] if args.plot else []
    write_outputs(jobs + [(args.output, lambda: write_audio(args.output, r.audio, r.sample_rate, args.format))])
    print(f"wrote {args.output} ({len(r.audio) / r.sample_rate:.2f} s, {r.sample_rate} Hz, "
          f"{format_label(args.format)}; {len(score.sources)} sources, {len(score.keys)} keys, {score.interp})")
    if args.plot:
        print(f"wrote {args.plot}")
    return 0
