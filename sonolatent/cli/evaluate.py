"""``sonolatent eval DIR``: reconstruction quality and speed against Griffin-Lim."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import AudioFileError, SonolatentError
from ..outputs import check_output_path, write_text_atomic


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="measure reconstruction quality and speed against Griffin-Lim",
        description="For every sound file in DIR (any format, any rate), three reconstructions: the vocoder "
                    "alone (mel of the original -> vocoder), the full model (encode -> decode -> vocoder) and "
                    "the Griffin-Lim baseline (mel inversion + --gl-iters iterations). Each is compared with the "
                    "original as log-mel L1 and multi-resolution STFT distance (lower is better) and timed in "
                    "x real time (higher is faster).",
        epilog="example:\n  sonolatent eval data/gm/audio --limit 40 --json eval.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="folder of sound files (searched recursively)")
    p.add_argument("--json", metavar="OUT", help="write per-file and average figures as JSON")
    p.add_argument("--checkpoint", metavar="DIR", help="model bundle (default: checkpoints/default)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate at most N files, evenly spread (default: all)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads for the speed figures (default: 1)")
    p.add_argument("--gl-iters", type=int, default=64, metavar="N", help="Griffin-Lim iterations (default: 64)")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..audio.io import check_audio_file
    from ..evaluation import MIN_SECONDS, PATHS, evaluate_file, find_sound_files, summarize, warm_up
    from ..models import load_bundle

    for opt, value, low in (("--limit", args.limit, 1), ("--threads", args.threads, 1), ("--gl-iters", args.gl_iters, 1)):
        if value is not None and value < low:
            raise SonolatentError(f"{opt} {value}: must be at least {low}")
    if args.json:
        check_output_path(args.json, "--json")   # before minutes of work, not after
    folder = Path(args.dir)
    if not folder.is_dir():
        raise SonolatentError(f"{folder}: not a folder")
    files = find_sound_files(folder)
    if not files:
        raise SonolatentError(f"{folder}: no sound files (wav, flac, ogg, aiff) found")
    if args.limit and len(files) > args.limit:
        files = [files[int(i)] for i in np.linspace(0, len(files) - 1, args.limit)]
    results, skipped, usable = [], [], []
    for f in files:   # what the headers tell, before the model loads
        try:
            check_audio_file(f, min_seconds=MIN_SECONDS)
            usable.append(f)
        except AudioFileError as e:
            skipped.append({"file": str(f), "reason": str(e).removeprefix(f"{f}: ")})
    if not usable:
        for sk in skipped:
            print(f"sonolatent: skipped {sk['file']}: {sk['reason']}", file=sys.stderr)
        raise SonolatentError(f"{folder}: none of its {len(files)} sound files could be evaluated")
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.checkpoint)
    warm_up(bundle)   # compiled kernels load before the first timed file, not inside it
    for f in tqdm(usable, desc="eval", unit="file", leave=False):
        try:
            results.append(evaluate_file(bundle, f, args.gl_iters))
        except AudioFileError as e:   # one unreadable or too-short file does not sink the whole run
            skipped.append({"file": str(f), "reason": str(e).removeprefix(f"{f}: ")})
    for sk in skipped:
        print(f"sonolatent: skipped {sk['file']}: {sk['reason']}", file=sys.stderr)
    if not results:
        raise SonolatentError(f"{folder}: none of its {len(files)} sound files could be evaluated")
    summary = summarize(results)
    summary["skipped"] = len(skipped)
    mean = "mean" if not skipped else f"mean of {len(results)} ({len(skipped)} skipped)"
    w = max(12, len(mean), min(40, max(len(Path(r.file).name) for r in results)))
    group = 12 * len(PATHS) - 1
    print((f"{'':<{w}} " + f"{'log-mel L1':^{group}}" + " " + f"{'multi-resolution STFT':^{group}}").rstrip())
    head = f"{'file':<{w}} " + " ".join(f"{n:>11}" for n in PATHS) + " " + " ".join(f"{n:>11}" for n in PATHS)
    print(head)
    for r in results:
        print(f"{Path(r.file).name[:w]:<{w}} " + " ".join(f"{r.logmel[n]:>11.4f}" for n in PATHS) + " " +
              " ".join(f"{r.stft[n]:>11.4f}" for n in PATHS))
    print("-" * len(head))
    print(f"{mean:<{w}} " + " ".join(f"{summary['logmel'][n]:>11.4f}" for n in PATHS) + " " +
          " ".join(f"{summary['stft'][n]:>11.4f}" for n in PATHS))
    sp = summary["speed_x_realtime"]
    print("distances to the original: lower is better")
    print(f"speed (x real time, {args.threads} thread{'s' if args.threads != 1 else ''}): " +
          ", ".join(f"{n} {sp[n]:.1f}" for n in PATHS))
    if args.json:
        doc = {"checkpoint": str(bundle.folder), "threads": args.threads, "summary": summary,
               "files": [r.to_dict() for r in results], "skipped": skipped}
        write_text_atomic(args.json, json.dumps(doc, indent=1) + "\n")
    return 0
