"""``sonolatent train vae|vocoder``: train a model on dataset folders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import SonolatentError
from ..outputs import check_output_folder, write_text_atomic

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
    for kind, helptext in (("vae", "the convolutional mel VAE"), ("vocoder", "the streaming neural vocoder")):
        k = kinds.add_parser(kind, help=f"train {helptext}", epilog=EPILOG,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        k.add_argument("--data", action="append", required=True, metavar="DIR",
                       help="dataset folder made by 'sonolatent dataset' (repeat for several)")
        k.add_argument("--out", required=True, metavar="DIR", help="checkpoint folder to write")
        k.add_argument("--run-dir", metavar="DIR", help="run folder with the resumable training state")
        k.add_argument("--resume", action="store_true", help="continue from the run folder's saved state")
        k.add_argument("--init", metavar="DIR", help="start from the weights of this checkpoint")
        k.add_argument("--max-minutes", type=float, help="time budget; stops cleanly and saves")
        k.add_argument("--max-steps", type=int, help="step budget")
        k.add_argument("--seed", type=int, default=0)
        k.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
        k.add_argument("--batch-size", type=int)
        k.add_argument("--lr", type=float)
        k.add_argument("--valid-every", type=int, default=500, metavar="STEPS")
        k.add_argument("--save-every", type=int, default=2000, metavar="STEPS")
        k.add_argument("--no-progress", action="store_true", help="no progress bar")
        if kind == "vae":
            k.add_argument("--latent-dim", type=int, help="latent dimensions (<= 32, default 16)")
            k.add_argument("--channels", type=int, help="convolution channels (default 192)")
            k.add_argument("--dec-layers", type=int, help="causal decoder layers (default 8)")
            k.add_argument("--enc-blocks", type=int, help="residual blocks per encoder stage (default 2)")
            k.add_argument("--kl-beta", type=float, help="KL weight after warm-up (default 0.02)")
            k.add_argument("--kl-warmup", type=int, help="KL warm-up steps (default 5000)")
            k.add_argument("--frames", type=int, help="mel frames per training crop (default 128)")
        else:
            k.add_argument("--dim", type=int, help="backbone width (default 192)")
            k.add_argument("--layers", type=int, help="ConvNeXt blocks (default 8)")
            k.add_argument("--segment", type=int, help="samples per training crop (default 16384)")
            k.add_argument("--adversarial", action="store_true",
                           help="add the adversarial stage (multi-resolution spectrogram discriminator)")
            k.add_argument("--gan-start", type=int, help="step at which the adversarial losses start")
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
    from ..models.vae import VAEConfig
    from ..models.vocoder import VocoderConfig
    from ..training.loop import LoopConfig, run as run_loop, setup_distributed
    from ..training.tasks import VAETask, VAETrainConfig, VocoderTask, VocoderTrainConfig

    _check_options(args)
    for d in args.data:
        if not (Path(d) / "manifest.jsonl").is_file():
            raise SonolatentError(f"{d}: not a dataset folder (no manifest.jsonl); build one with 'sonolatent dataset'")
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / f"{args.kind}-{out.parent.name or out.name}"
    run_json = run_dir / "run.json"
    check_output_folder(out, "--out")
    check_output_folder(run_dir, "--run-dir")
    if args.init:
        read_config(args.init)   # a missing or broken --init is named before anything is created
    if args.resume:
        if not run_json.is_file():
            raise SonolatentError(f"{run_dir}: nothing to resume (no run.json)")
        saved = _read_run(run_json)
        mel_cfg = MelConfig.from_dict(saved["mel"])
    else:
        saved = None
        mel_cfg = MelConfig()
    if args.kind == "vae":
        mcls, tcls, task_cls = VAEConfig, VAETrainConfig, VAETask
        model_over = _pick(args, {"latent_dim": "latent_dim", "channels": "channels", "dec_layers": "dec_layers",
                                  "enc_blocks": "enc_blocks"})
        train_over = _pick(args, {"batch_size": "batch_size", "lr": "lr", "kl_beta": "kl_beta",
                                  "kl_warmup": "kl_warmup_steps", "frames": "frames"})
    else:
        mcls, tcls, task_cls = VocoderConfig, VocoderTrainConfig, VocoderTask
        model_over = _pick(args, {"dim": "dim", "layers": "n_layers"})
        train_over = _pick(args, {"batch_size": "batch_size", "lr": "lr", "segment": "segment",
                                  "gan_start": "gan_start"})
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
    ddp = setup_distributed()
    loop = LoopConfig(max_steps=args.max_steps, max_minutes=args.max_minutes, valid_every=args.valid_every,
                      save_every=args.save_every, seed=args.seed, threads=args.threads,
                      progress=not args.no_progress)
    task = task_cls(args.data, out, mel_cfg, mcfg, tcfg, {"world_size": ddp.world, "seed": args.seed}, ddp,
                    init=args.init, progress=not args.no_progress)
    if ddp.main:   # only now that the data and the models are ready: a failed start leaves nothing
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SonolatentError(f"cannot create {run_dir} or {out.parent}: {e.strerror}") from None
        write_text_atomic(run_json, json.dumps({"kind": args.kind, "mel": mel_cfg.to_dict(), "model": mcfg.to_dict(),
                                                "train": tcfg.to_dict(), "data": args.data, "out": str(out)}, indent=2))
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
