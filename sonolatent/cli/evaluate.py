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
                    "original as log-mel L1 and multi-resolution STFT distance (lower is better), with --visqol "
                    "also as ViSQOL v3 MOS-LQO (1-5, higher is better), and timed in x real time (higher is "
                    "faster). When DIR is a dataset folder (it has manifest.jsonl) the figures are also given "
                    "per source and per kind.",
        epilog="examples:\n  sonolatent eval data/real-heldout --visqol --json eval.json\n"
               "  sonolatent eval data/gm/audio --limit 40",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="folder of sound files (searched recursively)")
    p.add_argument("--json", metavar="OUT", help="write per-file and average figures as JSON")
    p.add_argument("--checkpoint", metavar="DIR", help="model bundle (default: checkpoints/default)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate at most N files, evenly spread (default: all)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads for the speed figures (default: 1)")
    p.add_argument("--gl-iters", type=int, default=64, metavar="N", help="Griffin-Lim iterations (default: 64)")
    p.add_argument("--visqol", action="store_true",
                   help="also score ViSQOL v3 audio mode (needs visqol-python; a few seconds per file)")
    p.add_argument("--split", choices=("train", "valid"), default=None,
                   help="in a dataset folder, only this split (default: all)")
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
    tags = _dataset_tags(folder, args.split)
    files = sorted(tags) if tags else find_sound_files(folder)
    if not files:
        raise SonolatentError(f"{folder}: no sound files (wav, flac, ogg, aiff) found")
    if args.limit and len(files) > args.limit:
        files = _spread(files, tags, args.limit)
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
    visqol = None
    if args.visqol:
        from ..evaluation import Visqol
        visqol = Visqol()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(args.checkpoint)
    warm_up(bundle)   # compiled kernels load before the first timed file, not inside it
    for f in tqdm(usable, desc="eval", unit="file", leave=False):
        group, kind = tags.get(f, ("", ""))
        try:
            results.append(evaluate_file(bundle, f, args.gl_iters, visqol, group, kind))
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
    if "visqol" in summary:
        vq = summary["visqol"]
        print(f"ViSQOL MOS-LQO ({summary['visqol_files']} files of at least 1 s; higher is better): " +
              ", ".join(f"{n} {vq[n]:.2f}" for n in PATHS))
    by = {}
    if any(r.group for r in results):
        from ..evaluation import summarize_by
        by = {"source": summarize_by(results, "group"), "kind": summarize_by(results, "kind")}
        for title, table in by.items():
            _print_breakdown(title, table)
    print(f"speed (x real time, {args.threads} thread{'s' if args.threads != 1 else ''}): " +
          ", ".join(f"{n} {sp[n]:.1f}" for n in PATHS))
    if args.json:
        doc = {"checkpoint": str(bundle.folder), "threads": args.threads, "summary": summary, "by": by,
               "files": [r.to_dict() for r in results], "skipped": skipped}
        write_text_atomic(args.json, json.dumps(doc, indent=1) + "\n")
    return 0


def _dataset_tags(folder: Path, split: str | None) -> dict:
    """For a dataset folder: {file: (group, kind)} from its manifest; {} for a plain folder."""
    from ..datasets.manifest import MANIFEST, load_manifest

    if not (folder / MANIFEST).is_file():
        return {}
    return {folder / e["path"]: (str(e.get("group", "")), str(e.get("kind", e.get("label", ""))))
            for e in load_manifest(folder, split=split)}


def _spread(files: list, tags: dict, limit: int) -> list:
    """At most ``limit`` files, evenly spread; in a dataset folder, shared evenly among its sources."""
    import numpy as np

    if not tags:
        return [files[int(i)] for i in np.linspace(0, len(files) - 1, limit)]
    groups: dict[str, list] = {}
    for f in files:
        groups.setdefault(tags[f][0], []).append(f)
    share = max(1, limit // len(groups))
    out = []
    for g in sorted(groups):
        fs = groups[g]
        out += fs if len(fs) <= share else [fs[int(i)] for i in np.linspace(0, len(fs) - 1, share)]
    return sorted(out)


def _print_breakdown(title: str, table: dict) -> None:
    from ..evaluation import PATHS

    w = max(8, max(len(k) for k in table))
    has_vq = any("visqol" in s for s in table.values())
    head = f"{title:<{w}} {'files':>5}  " + "  ".join(f"{'log-mel ' + n[:5]:>14}" for n in PATHS) + "  " + \
        "  ".join(f"{'MR-STFT ' + n[:5]:>14}" for n in PATHS) + \
        ("  " + "  ".join(f"{'ViSQOL ' + n[:5]:>13}" for n in PATHS) if has_vq else "")
    print()
    print(head)
    for k, s in table.items():
        row = f"{k:<{w}} {s['files']:>5}  " + "  ".join(f"{s['logmel'][n]:>14.4f}" for n in PATHS) + "  " + \
            "  ".join(f"{s['stft'][n]:>14.4f}" for n in PATHS)
        if has_vq:
            row += "  " + "  ".join(f"{s['visqol'][n]:>13.2f}" if "visqol" in s else f"{'-':>13}" for n in PATHS)
        print(row)
