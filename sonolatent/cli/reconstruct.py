"""``sonolatent reconstruct IN -o OUT``: what the model makes of a sound file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SonolatentError

MIN_SECONDS = 0.05


def register(sub) -> None:
    p = sub.add_parser(
        "reconstruct", help="write what the model makes of a sound file",
        description="Encode a sound file to its latent trajectory and decode it back to audio (or, with "
                    "--vocoder-only, vocode its mel directly), so you can listen to the model.",
        epilog="examples:\n  sonolatent reconstruct patches/samples/piano_c4.wav -o piano_rt.wav\n"
               "  sonolatent reconstruct take.flac -o take_voc.wav --vocoder-only --format 24 --plot take_voc.png",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="sound file (wav, flac, ogg, aiff; any rate)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="WAV file to write")
    p.add_argument("--vocoder-only", action="store_true", help="skip the VAE: mel of IN -> vocoder")
    p.add_argument("--checkpoint", metavar="DIR", help="model bundle (default: checkpoints/default)")
    p.add_argument("--sr", type=int, metavar="HZ", help="output sample rate (default: the model's, 44100)")
    p.add_argument("--format", choices=("16", "24", "float"), default="16", help="WAV sample format (default: 16)")
    p.add_argument("--plot", metavar="OUT.png",
                   help="also draw the original's spectrogram, the output's and their difference")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..audio.io import check_audio_file, read_audio, resample, write_audio
    from ..evaluation import full_model, vocode
    from ..models import load_bundle
    from ..outputs import check_output_path
    from ..render.common import check_not_input

    if args.sr is not None and not 8000 <= args.sr <= 192000:
        raise SonolatentError(f"--sr {args.sr}: choose a rate between 8000 and 192000")
    out = check_output_path(args.output, "-o", suffixes=(".wav", ".wave"))   # before the model work
    check_not_input(out, [args.input])
    plot = check_output_path(args.plot, "--plot", suffixes=(".png",)) if args.plot else None
    if plot is not None and plot.resolve() == out.resolve():
        raise SonolatentError(f"--plot {args.plot}: the picture and the sound need different names")
    check_audio_file(args.input, min_seconds=MIN_SECONDS)   # a bad input is named before the model loads
    bundle = load_bundle(args.checkpoint)
    x, sr = read_audio(args.input, bundle.sample_rate, min_seconds=MIN_SECONDS)
    y = vocode(bundle, x) if args.vocoder_only else full_model(bundle, x)
    y = y[: len(x)]
    what = "vocoder only" if args.vocoder_only else "encode -> decode -> vocoder"
    y_out, sr_out = (resample(y, sr, args.sr), args.sr) if args.sr and args.sr != sr else (y, sr)
    write_audio(out, y_out, sr_out, args.format)
    print(f"wrote {out} ({len(y_out) / sr_out:.2f} s, {what})")
    if plot is not None:   # drawn from the model-rate output, so both spectrograms share one mel definition
        from ..render.plots import log_mel, plot_reconstruction
        mc = bundle.mel_config
        plot_reconstruction(plot, (f"original: {Path(args.input).name}", log_mel(mc, x)),
                            (f"model ({what})", log_mel(mc, y)), mc.frame_rate,
                            title=f"{Path(args.input).name}: {what}")
        print(f"wrote {plot}")
    return 0
