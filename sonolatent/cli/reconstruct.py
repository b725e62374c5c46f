"""``sonolatent reconstruct IN -o OUT``: what the model makes of a sound file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SonolatentError

MIN_SECONDS = 0.05
#: Mel frames per chunk of the encoder's passes and of the decode (a chunk's work is what memory holds).
CHUNK_FRAMES = 4096


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
    from ..audio.io import AudioReader, AudioWriter, check_audio_file
    from ..models import load_bundle
    from ..models.synth import model_stream, vocoder_stream
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
    sr = bundle.sample_rate
    # Read, encoded, decoded and written a block at a time: memory does not grow with the file's length
    # (the encoder's passes read the log-mel back from a temporary file; see docs/models.md).
    reader = AudioReader(args.input, sr, min_seconds=MIN_SECONDS)
    stream = (vocoder_stream if args.vocoder_only else model_stream)(bundle, reader, CHUNK_FRAMES)
    what = "vocoder only" if args.vocoder_only else "encode -> decode -> vocoder"
    out_mel = _MelOf(bundle) if plot is not None else None
    with AudioWriter(out, args.sr or sr, args.format, source_rate=sr) as w:
        written = 0
        for y in stream:
            y = y[: max(0, reader.samples - written)]   # the output never runs ahead of what was read
            written += len(y)
            w.write(y)
            if out_mel is not None:
                out_mel.push(y)
    print(f"wrote {out} ({w.frames / w.sample_rate:.2f} s, {what})")
    if plot is not None:   # drawn from the model-rate output, so both spectrograms share one mel definition
        from ..render.plots import plot_reconstruction
        in_mel = _MelOf(bundle)
        for x in AudioReader(args.input, sr, min_seconds=MIN_SECONDS):
            in_mel.push(x)
        plot_reconstruction(plot, (f"original: {Path(args.input).name}", in_mel.finish()),
                            (f"model ({what})", out_mel.finish()), bundle.mel_config.frame_rate,
                            title=f"{Path(args.input).name}: {what}")
        print(f"wrote {plot}")
    return 0


class _MelOf:
    """The log-mel of audio pushed block by block, whole at the end (for --plot: a picture of the file)."""

    def __init__(self, bundle):
        from ..audio.mel import MelChunker, MelSpectrogram
        self.chunker, self.parts = MelChunker(MelSpectrogram(bundle.mel_config)), []

    def push(self, x) -> None:
        self.parts += [m.numpy() for m in self.chunker.push(x)]

    def finish(self):
        import numpy as np
        return np.concatenate(self.parts + [m.numpy() for m in self.chunker.finish()], axis=1)
