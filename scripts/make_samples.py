#!/usr/bin/env python3
"""Render the bundled sample sounds in patches/samples/ from the FluidR3 GM soundfont.

Dry single notes (no reverb, no chorus), mono, 44.1 kHz, 16-bit, trimmed after
the sound decays below -60 dB and peak-normalised to -1 dBFS. Re-running it
reproduces the files (fluidsynth is deterministic).

    .venv/bin/python scripts/make_samples.py [--soundfont PATH] [--out patches/samples]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sonolatent.audio.io import peak_normalize, write_audio
from sonolatent.datasets.sf2 import SAMPLE_RATE, Renderer, trim_tail
from sonolatent.errors import SonolatentError

ROOT = Path(__file__).resolve().parent.parent

#: file name -> (bank, program, key, velocity, hold seconds, release seconds)
SAMPLES = {
    "piano_c4.wav": (0, 0, 60, 100, 1.2, 0.6),      # Acoustic Grand Piano
    "strings_c4.wav": (0, 48, 60, 100, 1.3, 0.5),   # String Ensemble 1
    "flute_c5.wav": (0, 73, 72, 100, 1.3, 0.4),     # Flute
    "brass_c4.wav": (0, 61, 60, 100, 1.3, 0.4),     # Brass Section
    "organ_c3.wav": (0, 16, 48, 100, 1.4, 0.3),     # Drawbar Organ
    "marimba_c5.wav": (0, 12, 72, 110, 1.0, 0.8),   # Marimba
    "kick.wav": (128, 0, 36, 120, 0.5, 0.8),        # Standard kit, Bass Drum 1
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--soundfont", default="/usr/share/sounds/sf2/FluidR3_GM.sf2")
    ap.add_argument("--out", default=str(ROOT / "patches" / "samples"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with Renderer(args.soundfont) as r:
            r.note(0, 0, 60, 1, 0.1, 0.1)  # warm-up: the synth's very first voice differs slightly
            for name, (bank, prog, key, vel, hold, release) in SAMPLES.items():
                x = trim_tail(r.note(bank, prog, key, vel, hold, release))
                write_audio(out / name, peak_normalize(x, -1.0), SAMPLE_RATE, fmt="16")
                print(f"{name}: {r.preset_name(bank, prog)}, key {key}, {len(x) / SAMPLE_RATE:.2f} s")
    except SonolatentError as e:
        print(f"make_samples: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
