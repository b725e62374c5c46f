"""How fast is an offline morph? `sonolatent morph` of two 2-s sounds into 10 s, on one thread.

Times the steps the morph command runs once the model is loaded (read and
encode both sounds, align and blend, render through the streaming synth,
resample/normalise, write the WAV) and reports x real time (10 s of output /
seconds taken), median of --repeats runs after one warm-up run; also the whole command in a fresh
process (Python start and model load included). Prints a table and writes
benchmarks/results/morph_speed.json. Meaningful only with a trained
checkpoint (--checkpoint, default checkpoints/default).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, ROOT, write_result


DURATION = 10.0
INPUT_SECONDS = 2.0


def two_inputs(folder: Path, samples: Path, sr: int) -> list[Path]:
    """Two 2-s inputs: the first two bundled samples cut/padded to 2 s (or two tones if there are none)."""
    import soundfile as sf

    from sonolatent.audio.io import read_audio

    files = sorted(samples.glob("*.wav"))[:2] if samples.is_dir() else []
    n = int(INPUT_SECONDS * sr)
    out = []
    for i in range(2):
        if i < len(files):
            y, _ = read_audio(files[i], sr)
            y = np.pad(y, (0, max(0, n - len(y))))[:n]
        else:
            t = np.arange(n) / sr
            y = (0.4 * np.sin(2 * np.pi * (220 * (i + 1)) * t) * np.exp(-t)).astype(np.float32)
        p = folder / f"in{i}.wav"
        sf.write(p, y, sr, subtype="PCM_16")
        out.append(p)
    return out


def main(argv=None) -> int:
    from sonolatent.models import DEFAULT_CHECKPOINT

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--samples", default=str(ROOT / "patches" / "samples"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--interp", default="slerp", choices=("lerp", "slerp"))
    ap.add_argument("--out", default=str(RESULTS / "morph_speed.json"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from sonolatent.audio.io import write_audio
    from sonolatent.latent import get_curve
    from sonolatent.models import load_bundle
    from sonolatent.render import load_source, render_morph

    t = time.perf_counter()
    bundle = load_bundle(args.checkpoint)
    load_s = time.perf_counter() - t
    runs = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        a_path, b_path = two_inputs(d, Path(args.samples), bundle.sample_rate)
        for i in range(max(1, args.repeats) + 1):  # the first run warms up (imports, JIT, allocator); not counted
            t0 = time.perf_counter()
            a, b = load_source(bundle, a_path), load_source(bundle, b_path)
            t1 = time.perf_counter()
            r = render_morph(bundle, a, b, get_curve("linear"), duration=DURATION, interp=args.interp)
            t2 = time.perf_counter()
            write_audio(d / "out.wav", r.audio, r.sample_rate, "16")
            t3 = time.perf_counter()
            if i:
                runs.append({"encode_s": t1 - t0, "render_s": t2 - t1, "write_s": t3 - t2, "total_s": t3 - t0})
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "sonolatent", "morph", str(a_path), str(b_path), "-o", str(d / "cli.wav"),
               "--duration", str(DURATION), "--interp", args.interp, "--checkpoint", str(args.checkpoint)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=str(ROOT))
        cli_s = time.perf_counter() - t
        if proc.returncode != 0:
            print(f"morph_speed: the CLI failed: {proc.stderr.strip()}", file=sys.stderr)
            return 1

    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    xrt = DURATION / med["total_s"]
    print(f"morph of two {INPUT_SECONDS:g}-s sounds into {DURATION:g} s, 1 thread, {args.interp}, "
          f"median of {len(runs)} runs ({args.checkpoint})")
    print(f"{'step':<36}{'seconds':>10}")
    for k, label in (("encode_s", "read + encode both inputs"), ("render_s", "blend + render + normalise"),
                     ("write_s", "write WAV"), ("total_s", "total (model loaded)")):
        print(f"{label:<36}{med[k]:>10.3f}")
    print(f"{'x real time (model loaded)':<36}{xrt:>10.1f}")
    print(f"{'model load':<36}{load_s:>10.3f}")
    print(f"{'whole CLI in a fresh process':<36}{cli_s:>10.3f}   ({DURATION / cli_s:.1f} x real time)")
    out = {
        "benchmark": "morph_speed", "checkpoint": str(args.checkpoint), "output_seconds": DURATION,
        "input_seconds": INPUT_SECONDS, "interp": args.interp, "threads": 1, "runs": runs, "median": med,
        "x_real_time": xrt, "model_load_s": load_s, "cli_fresh_process_s": cli_s,
    }
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
