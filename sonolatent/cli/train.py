"""``sonolatent train vae|vocoder``: train a model on dataset folders."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..errors import SonolatentError
from ..outputs import check_output_folder, report_stale_parts, write_text_atomic

EPILOG = """\
examples:
  sonolatent dataset sf2 --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2 --out data/gm
  sonolatent train vae --data data/gm --out checkpoints/mine/vae --max-minutes 30
  sonolatent train vocoder --data data/gm --out checkpoints/mine/vocoder --max-minutes 60
  sonolatent train vocoder --data data/gm --out checkpoints/mine/vocoder --resume   # continue
  torchrun --nproc_per_node 2 -m sonolatent train vae --data data/gm --out ...      # DDP, gloo

The run folder (--run-dir, default runs/<kind>-<name of --out's parent>) keeps the full
training state (weights, optimizer, step) for --resume; --out receives a loadable
checkpoint (config.json + model.safetensors) at every save and at the end."""


def register(sub) -> None:
    p = sub.add_parser("train", help="train the VAE or the vocoder",
                       description="Train the mel VAE or the vocoder on one or more dataset folders.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="MODEL", required=True)
    for kind, helptext, batch, lr in (("vae", "the convolutional mel VAE", 16, "1e-3"),
                                      ("vocoder", "the streaming neural vocoder", 8, "5e-4")):
        k = kinds.add_parser(kind, help=f"train {helptext}", epilog=EPILOG,
                             description=f"Train {helptext} on one or more dataset folders.",
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        k.add_argument("--data", action="append", required=True, metavar="DIR",
                       help="dataset folder made by 'sonolatent dataset' (repeat for several)")
        k.add_argument("--mix", metavar="W,W,...",
                       help="share of training crops from each --data folder, in their order (e.g. 0.4,0.15,0.45; "
                            "default: as many as each folder has clips)")
        k.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder to write")
        k.add_argument("--run-dir", metavar="DIR",
                       help="run folder with the resumable training state (default: runs/<kind>-<name of --out's parent>)")
        k.add_argument("--resume", action="store_true", help="continue from the run folder's saved state")
        k.add_argument("--init", metavar="DIR", help="start from the weights of this checkpoint")
        k.add_argument("--max-minutes", type=float, metavar="MIN",
                       help="time budget in minutes, counted over --resume too; stops cleanly, saves and exports")
        k.add_argument("--max-steps", type=int, metavar="N", help="step budget (the total, counted over --resume too)")
        k.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
        k.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's choice)")
        k.add_argument("--batch-size", type=int, metavar="N", help=f"crops per step (default: {batch})")
        k.add_argument("--lr", type=float, help=f"AdamW learning rate (default: {lr})")
        k.add_argument("--lr-half-life", type=int, metavar="STEPS",
                       help="halve the learning rate every STEPS steps, smoothly (default: 0, constant)")
        k.add_argument("--valid-every", type=int, default=500, metavar="STEPS",
                       help="validate every STEPS steps (default: 500)")
        k.add_argument("--save-every", type=int, default=2000, metavar="STEPS",
                       help="save the training state and export the checkpoint every STEPS steps (default: 2000)")
        k.add_argument("--keep-exports", action="store_true",
                       help="also keep every export in RUN/exports/step-N (average them with scripts/average_checkpoints.py)")
        k.add_argument("--no-progress", action="store_true", help="no progress bar")
        if kind == "vae":
            k.add_argument("--latent-dim", type=int, metavar="N", help="latent dimensions, 1..64 (default: 16)")
            k.add_argument("--channels", type=int, metavar="N", help="convolution channels (default: 192)")
            k.add_argument("--dec-layers", type=int, metavar="N", help="causal decoder layers (default: 8)")
            k.add_argument("--enc-blocks", type=int, metavar="N",
                           help="residual blocks per encoder stage, 0..2 (default: 2)")
            k.add_argument("--downsample", type=int, metavar="N", choices=(1, 2, 4, 8),
                           help="mel frames per latent frame: 1, 2, 4 or 8 (default: 4, 21.5 latent frames/s); "
                                "fewer keeps more detail, more gives smoother latent paths")
            k.add_argument("--linear-path", dest="linear_path", action="store_const", const=True,
                           help="add per-frame linear encoder and decoder paths, started as a PCA of the "
                                "training frames (needs --downsample 1)")
            k.add_argument("--kl-beta", type=float, metavar="B", help="KL weight after warm-up (default: 0.02)")
            k.add_argument("--kl-warmup", type=int, metavar="STEPS", help="KL warm-up steps (default: 5000)")
            k.add_argument("--stretch-prob", type=float, metavar="P",
                           help="share of crops time-stretched 0.5x..4x, so slow or frozen latent paths "
                                "decode well (default: 0.5; 0 turns it off)")
            k.add_argument("--interp-weight", type=float, metavar="W",
                           help="weight of the morph term: decoded blends of two sounds' latents must move "
                                "their brightness and loudness in proportion (default: 0, off)")
            k.add_argument("--eq-prob", type=float, metavar="P",
                           help="share of crops given a random smooth EQ (tilt and three bells), so the VAE "
                                "meets timbres its instruments lack (default: 0, off)")
            k.add_argument("--mag-weight", type=float, metavar="W",
                           help="weight of an L1 on the mel's magnitudes over each crop's total, so the loudest "
                                "bands weigh most (default: 0, the log-mel L1 alone)")
            k.add_argument("--eq-db", type=float, metavar="DB", help="most boost or cut of that EQ (default: 12)")
            k.add_argument("--frames", type=int, metavar="N",
                           help="mel frames per training crop, at least 16 (default: 128, 1.5 s)")
        else:
            k.add_argument("--dim", type=int, metavar="N", help="backbone width (default: 192)")
            k.add_argument("--layers", type=int, metavar="N", help="ConvNeXt blocks (default: 8)")
            k.add_argument("--istft-n-fft", type=int, metavar="N",
                           help="inverse-STFT size of the head (default: 1024)")
            k.add_argument("--upsample", type=int, metavar="N",
                           help="inverse-STFT frames per mel frame; hop = mel hop / N (default: 2)")
            k.add_argument("--prior-iters", type=int, metavar="N",
                           help="sharpen the mel prior with N non-negative least-squares steps, so its own mel "
                                "matches the input (needs the mel prior; default: 0)")
            k.add_argument("--phase-carry", dest="phase_carry", action="store_const", const=True,
                           help="let each bin carry its phase on from the last frame at its spectral peak's frequency, "
                                "so steady partials keep their pitch instead of snapping to multiples of "
                                "sample rate / hop (86 Hz); grows it onto an --init vocoder without it")
            k.add_argument("--mel-weight", type=float, metavar="W", help="weight of the log-mel L1 loss (default: 1)")
            k.add_argument("--stft-weight", type=float, metavar="W",
                           help="weight of the multi-resolution STFT loss (default: 1)")
            k.add_argument("--no-mel-prior", dest="mel_prior", action="store_const", const=False,
                           help="predict the whole magnitude, not a correction to the mel's own envelope "
                                "(the layout of vocoders made before it)")
            k.add_argument("--segment", type=int, metavar="SAMPLES",
                           help="samples per training crop, at least 4096 (default: 16384, 0.37 s)")
            k.add_argument("--vae", metavar="DIR",
                           help="also learn from this VAE's decoded mels (the full model's path live)")
            k.add_argument("--vae-share", type=float, metavar="P",
                           help="share of crops vocoded from the --vae decoder's mel (default: 0.5)")
            k.add_argument("--frozen-weight", type=float, metavar="W",
                           help="weight of the held-frame term: one mel frame held for a whole crop (a frozen "
                                "playhead, free mode) must come out with that frame's own mel (default: 0, off; "
                                "validation reports it either way as 'frozen')")
            k.add_argument("--adversarial", action="store_true",
                           help="add the adversarial stage (multi-resolution spectrogram discriminator)")
            k.add_argument("--gan-start", type=int, metavar="STEP",
                           help="step at which the adversarial losses start (default: 0)")
        k.set_defaults(func=run)


def _pick(ns, mapping: dict) -> dict:
    return {key: getattr(ns, opt) for opt, key in mapping.items() if getattr(ns, opt, None) is not None}


def _check_options(args) -> None:
    for opt, value, low in (("--max-steps", args.max_steps, 1), ("--valid-every", args.valid_every, 1),
                            ("--save-every", args.save_every, 1), ("--threads", args.threads, 1)):
        if value is not None and value < low:
            raise SonolatentError(f"{opt} {value}: must be at least {low}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise SonolatentError(f"--max-minutes {args.max_minutes:g}: must be positive")


def _parse_mix(text: str | None, n: int) -> list[float] | None:
    if text is None:
        return None
    try:
        shares = [float(w) for w in text.split(",")]
    except ValueError:
        raise SonolatentError(f"--mix {text}: comma-separated numbers wanted, one per --data folder") from None
    if len(shares) != n or not all(math.isfinite(w) and w >= 0 for w in shares) or sum(shares) <= 0:
        raise SonolatentError(f"--mix {text}: {n} non-negative shares wanted (one per --data folder), not all zero")
    return shares


def _read_run(run_json: Path) -> dict:
    try:
        saved = json.loads(run_json.read_text(encoding="utf-8"))
        for key in ("mel", "model", "train"):
            if not isinstance(saved[key], dict):
                raise TypeError(f"{key} is not a table")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise SonolatentError(f"{run_json}: unreadable ({type(e).__name__}: {e}); cannot resume") from None
    return saved


def run(args) -> int:
    from dataclasses import replace

    from ..audio.mel import MelConfig
    from ..models.checkpoint import read_config
    from ..models.vae import MelVAE, VAEConfig
    from ..models.vocoder import Vocoder, VocoderConfig
    from ..training.loop import LoopConfig, run as run_loop, setup_distributed
    from ..training.tasks import VAETask, VAETrainConfig, VocoderTask, VocoderTrainConfig

    _check_options(args)
    mix = _parse_mix(args.mix, len(args.data))
    for d in args.data:
        if not (Path(d) / "manifest.jsonl").is_file():
            raise SonolatentError(f"{d}: not a dataset folder (no manifest.jsonl); build one with 'sonolatent dataset'")
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{args.kind}-{out.parent.name or out.name}"
    run_json = run_dir / "run.json"
    check_output_folder(out, "--out")
    check_output_folder(run_dir, "--run-dir")
    report_stale_parts(out.parent)   # a checkpoint export cut short leaves .NAME.XXXXXXXX.part there
    init = None
    if args.init:   # a missing or broken --init is named before anything is created
        prov = read_config(args.init).get("provenance")
        prov = prov if isinstance(prov, dict) else {}
        init = {"from": str(args.init), "steps": prov.get("steps"), "sha256": prov.get("sha256")}
    if args.resume:
        if not run_json.is_file():
            raise SonolatentError(f"{run_dir}: nothing to resume (no run.json)")
        saved = _read_run(run_json)
        mel_cfg = MelConfig.from_dict(saved["mel"])
        init = init or saved.get("init")   # where the run's weights first came from
        mix = mix or saved.get("mix")
    else:
        saved = None
        mel_cfg = MelConfig()
    if args.kind == "vae":
        mcls, tcls, task_cls = VAEConfig, VAETrainConfig, VAETask
        model_over = _pick(args, {"latent_dim": "latent_dim", "channels": "channels", "dec_layers": "dec_layers",
                                  "enc_blocks": "enc_blocks", "downsample": "downsample",
                                  "linear_path": "linear_path"})
        train_over = _pick(args, {"batch_size": "batch_size", "lr": "lr", "kl_beta": "kl_beta",
                                  "kl_warmup": "kl_warmup_steps", "frames": "frames",
                                  "stretch_prob": "stretch_prob", "interp_weight": "interp_weight",
                                  "eq_prob": "eq_prob", "eq_db": "eq_db", "mag_weight": "mag_weight",
                                  "lr_half_life": "lr_half_life"})
    else:
        mcls, tcls, task_cls = VocoderConfig, VocoderTrainConfig, VocoderTask
        model_over = _pick(args, {"dim": "dim", "layers": "n_layers", "mel_prior": "mel_prior",
                                  "istft_n_fft": "istft_n_fft", "upsample": "upsample",
                                  "prior_iters": "prior_iters", "phase_carry": "phase_carry"})
        train_over = _pick(args, {"batch_size": "batch_size", "lr": "lr", "segment": "segment",
                                  "gan_start": "gan_start", "vae_share": "vae_share",
                                  "mel_weight": "mel_weight", "stft_weight": "stft_weight",
                                  "lr_half_life": "lr_half_life", "frozen_weight": "frozen_weight"})
        if args.vae:
            read_config(args.vae)   # a missing or broken --vae is named before anything is created
            train_over["vae"] = str(args.vae)
        if args.adversarial:
            train_over["adversarial"] = True
    if saved:
        mcfg = mcls.from_dict(saved["model"])
        if model_over and replace(mcfg, **model_over) != mcfg:
            raise SonolatentError(f"{run_dir}: model options differ from the run being resumed")
        tcfg = replace(tcls.from_dict(saved["train"]), **train_over)
    else:
        mcfg = replace(mcls(), **model_over)
        tcfg = replace(tcls(), **train_over)
    model_cls = MelVAE if args.kind == "vae" else Vocoder
    model_cls(mel_cfg, mcfg)   # a layout the model refuses is named before any data is read
    ddp = setup_distributed()
    loop = LoopConfig(max_steps=args.max_steps, max_minutes=args.max_minutes, valid_every=args.valid_every,
                      save_every=args.save_every, seed=args.seed, threads=args.threads,
                      progress=not args.no_progress, keep_exports=args.keep_exports)
    provenance = {"world_size": ddp.world, "seed": args.seed, **({"init": init} if init else {})}
    task = task_cls(args.data, out, mel_cfg, mcfg, tcfg, provenance, ddp, init=args.init, progress=not args.no_progress,
                    mix=mix)
    if ddp.main:   # only now that the data and the models are ready: a failed start leaves nothing
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SonolatentError(f"cannot create {run_dir} or {out.parent}: {e.strerror}") from None
        write_text_atomic(run_json, json.dumps({"kind": args.kind, "mel": mel_cfg.to_dict(), "model": mcfg.to_dict(),
                                                "train": tcfg.to_dict(), "data": args.data, "mix": mix, "out": str(out),
                                                "init": init}, indent=2))
    summary = run_loop(task, run_dir, loop, args.resume, ddp)
    if ddp.main:
        val = ", ".join(f"{k} {v:.4f}" for k, v in summary["valid"].items())
        how = "stopped on request after" if summary.get("interrupted") else "trained for"
        print(f"{args.kind}: {how} {summary['steps']} steps ({summary['minutes']:.1f} min); {val}")
        print(f"checkpoint: {out}   training state: {run_dir / 'state'}")
        if summary.get("interrupted"):
            print("continue with the same command and --resume")
    # stopped by a signal: saved and exported, but the exit status says so (a script or the recipe stops too)
    return 128 + summary["signal"] if summary.get("signal") else 0
