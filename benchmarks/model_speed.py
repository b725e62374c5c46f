"""Decode + vocode speed, offline and streaming.

- offline: 10 s of latents -> decoder -> vocoder, x real time, on 1 thread and on all threads;
- streaming: StreamingSynth fed block by block (block sizes 64..2048 samples at the model
  rate; a block smaller than a mel frame (512) renders one frame every 512/B blocks), mean and
  p99 cost per block and x real time, 1 thread.

    python -m benchmarks.model_speed [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmarks.common import RESULTS, table, write_result

from sonolatent.models import load_bundle
from sonolatent.models.synth import StreamingSynth


def offline(bundle, zf, threads, reps=3):
    torch.set_num_threads(threads)
    hop = bundle.mel_config.hop_length
    with torch.no_grad():
        z = torch.from_numpy(zf)[None]
        bundle.vocoder(bundle.vae.decode_frames(z[..., :50]))  # warm-up
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            bundle.vocoder(bundle.vae.decode_frames(z))
            best = min(best, time.perf_counter() - t)
    return zf.shape[1] * hop / bundle.sample_rate / best


def streaming(bundle, zf, block):
    torch.set_num_threads(1)
    hop = bundle.mel_config.hop_length
    synth = StreamingSynth(bundle)
    frames_per_call = max(1, block // hop)
    calls_per_frame = max(1, hop // block)
    costs = []
    n = zf.shape[1] // frames_per_call
    for i in range(min(n, 400)):
        t = time.perf_counter()
        synth.process(zf[:, i * frames_per_call:(i + 1) * frames_per_call])
        costs.append(time.perf_counter() - t)
    costs = np.array(costs[5:])
    per_block = costs / calls_per_frame if block < hop else costs
    block_s = block / bundle.sample_rate
    return {"block": block, "mean_ms": round(per_block.mean() * 1e3, 3),
            "worst_call_ms": round(costs.max() * 1e3, 3), "p99_call_ms": round(np.percentile(costs, 99) * 1e3, 3),
            "x_realtime": round(block_s / per_block.mean(), 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--out", default=str(RESULTS / "model_speed.json"))
    args = ap.parse_args()
    bundle = load_bundle(args.checkpoint)
    n = int(args.seconds * bundle.mel_config.frame_rate)
    zf = (np.random.default_rng(0).standard_normal((bundle.vae.latent_dim, n)) * 0.5).astype(np.float32)
    zf = zf + bundle.vae.pca_mean.numpy()[:, None]
    rows_off = [{"threads": t, "x_realtime": round(offline(bundle, zf, t), 1)} for t in (1, os.cpu_count() or 1)]
    rows_st = [streaming(bundle, zf, b) for b in (64, 128, 256, 512, 1024, 2048)]
    print(f"decode + vocode, offline, {args.seconds:.0f} s of audio ({bundle.folder})")
    print(table(rows_off, ["threads", "x_realtime"]))
    print("\nstreaming (StreamingSynth), 1 thread; block in samples at 44.1 kHz")
    print(table(rows_st, ["block", "mean_ms", "p99_call_ms", "worst_call_ms", "x_realtime"]))
    print(f"\ndelay: decoder {bundle.vae.delay} samples, vocoder {bundle.vocoder.delay} samples "
          f"({bundle.delay / bundle.sample_rate * 1e3:.1f} ms)")
    write_result(args.out, {"checkpoint": str(bundle.folder), "offline": rows_off, "streaming": rows_st,
                            "delay_samples": {"decoder": bundle.vae.delay, "vocoder": bundle.vocoder.delay}})


if __name__ == "__main__":
    main()
