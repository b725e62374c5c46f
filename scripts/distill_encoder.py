"""Distil a causal live encoder from a bundle's VAE encoder (the live input's encoder, ``BUNDLE/encoder``).

    OMP_NUM_THREADS=1 python scripts/distill_encoder.py --data data/gm --minutes 5 --out checkpoints/default/encoder

The student (:class:`sonolatent.models.encoder.CausalEncoder`) reads mel frames up to the present only;
it starts as the VAE's per-frame linear path and learns to match the VAE's posterior mean (MSE in
latent space) on clips of the data set's ``train`` split (each clip padded with silence on both sides,
gains -20..0 dB). At the end it prints the decoded log-mel L1 (the bundle's decoder, no vocoder) on the
``valid`` split and on the bundled samples, for the offline encoder, the linear path alone and the
student, and saves the student with ``provenance.teacher_sha256`` = the VAE's weights' sha256.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from sonolatent.audio.io import read_audio
from sonolatent.audio.mel import MelSpectrogram
from sonolatent.models import load_bundle, load_checkpoint, save_checkpoint
from sonolatent.models.encoder import CausalEncoder, EncoderConfig

ROOT = Path(__file__).resolve().parents[1]


def clips(data: Path, split: str, n: int, rng: random.Random) -> list[Path]:
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == split]
    rng.shuffle(rows)
    return [data / r["path"] for r in rows[:n]]


def mels(paths, mel, sr, pad_frames, gains_db, rng) -> list[torch.Tensor]:
    out = []
    floor = math.log(mel.config.log_floor)
    for p in paths:
        x, _ = read_audio(p, sr, allow_silent=True)
        m = mel(torch.from_numpy(x)[None])[0]
        g = rng.uniform(*gains_db) * math.log(10) / 20
        m = (m + g).clamp(min=floor)
        pad = torch.full((m.shape[0], pad_frames), floor)
        out.append(torch.cat([pad, m, pad], 1))
    return out


@torch.no_grad()
def decoded_l1(vae, mel_list, encode) -> float:
    ls = [(vae.decode_frames(encode(m[None])) - m[None]).abs().mean().item() for m in mel_list]
    return float(np.mean(ls))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "default"))
    ap.add_argument("--data", default=str(ROOT / "data" / "gm"), help="data set folder with manifest.jsonl")
    ap.add_argument("--files", type=int, default=1500)
    ap.add_argument("--valid-files", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="go on from this encoder checkpoint (same layout)")
    ap.add_argument("--out", default=None, help="default: CHECKPOINT/encoder")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    bundle = load_bundle(a.checkpoint)
    vae = bundle.vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    mel = MelSpectrogram(bundle.mel_config)
    sr = bundle.sample_rate
    data = Path(a.data)
    t0 = time.time()
    train = mels(clips(data, "train", a.files, rng), mel, sr, 40, (-20.0, 0.0), rng)
    valid = mels(clips(data, "valid", a.valid_files, rng), mel, sr, 0, (0.0, 0.0), rng)
    samples = mels(sorted(glob.glob(str(ROOT / "patches" / "samples" / "*.wav"))), mel, sr, 0, (0.0, 0.0), rng)
    with torch.no_grad():
        teach = [vae.encode(m[None])[0] for m in train]
    print(f"{len(train)} train clips, teacher encoded in {time.time() - t0:.0f} s", flush=True)
    student = CausalEncoder(bundle.mel_config, EncoderConfig(latent_dim=vae.latent_dim, channels=a.channels,
                                                             layers=a.layers, gelu=vae.config.gelu))
    student.start_from(vae)
    steps_before = 0
    if a.init:
        init, init_meta = load_checkpoint(a.init, "encoder")
        student.load_state_dict(init.state_dict())
        steps_before = int(init_meta["provenance"].get("steps", 0))
        student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=1e-4)
    warm = student.receptive_field
    T = a.frames + warm
    t_end = time.time() + 60 * a.minutes
    step = 0
    while time.time() < t_end:
        frac = 1 - (t_end - time.time()) / (60 * a.minutes)
        for g in opt.param_groups:
            g["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        xs, ys = [], []
        for _ in range(a.batch):
            i = rng.randrange(len(train))
            m, z = train[i], teach[i]
            s = rng.randrange(0, max(1, m.shape[1] - T))
            xs.append(m[:, s:s + T])
            ys.append(z[:, s:s + T])
        n = min(x.shape[1] for x in xs)
        x = torch.stack([v[:, :n] for v in xs])
        y = torch.stack([v[:, :n] for v in ys])
        pred = student(x)
        w = min(warm, n - 1)   # frames whose whole context is inside the crop
        loss = torch.mean((pred[..., w:] - y[..., w:]) ** 2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 200 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e}", flush=True)
    student.eval()
    lin = (lambda m: vae.enc_lin(vae.normalize(m))) if vae.config.linear_path else None
    table = {}
    for name, ms in (("valid", valid), ("samples", samples)):
        table[name] = {"offline": decoded_l1(vae, ms, vae.encode), "causal": decoded_l1(vae, ms, student)}
        if lin is not None:
            table[name]["linear"] = decoded_l1(vae, ms, lin)
    print(json.dumps(table, indent=1), flush=True)
    vae_meta = bundle.meta["vae"]
    out = Path(a.out) if a.out else Path(a.checkpoint) / "encoder"
    save_checkpoint(out, student, {
        "teacher": str(Path(a.checkpoint)), "teacher_sha256": vae_meta["provenance"]["sha256"],
        "data": [str(data)], "steps": steps_before + step, "init": a.init, "minutes": a.minutes, "files": len(train), "seed": a.seed,
        "how": "distilled: MSE to the VAE's posterior mean on train-split clips padded with 40 silent frames, "
               "gains -20..0 dB, crops of frames + receptive field, loss on frames with full context",
        "decoded_logmel_l1": table})
    print(f"saved {out} after {steps_before + step} steps", flush=True)


if __name__ == "__main__":
    main()
