"""Resumable training state without pickle.

A run folder holds ``state.safetensors`` (model, optimizer and any other
module tensors, flattened to ``prefix/...`` keys) and ``state.json`` (step,
elapsed time, optimizer param groups, configs). Written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..outputs import usual_mode


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            key = f"{prefix}/state/{idx}/{name}"
            if torch.is_tensor(v):
                tensors[key] = v.detach().cpu().contiguous()
            else:
                scalars[key] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    pre = f"{prefix}/state/"
    for key, v in tensors.items():
        if key.startswith(pre):
            idx, name = key[len(pre):].split("/", 1)
            state.setdefault(int(idx), {})[name] = v
    for key, v in meta.get("scalars", {}).items():
        idx, name = key[len(pre):].split("/", 1)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_state(folder: str | os.PathLike, modules: dict, optimizers: dict, info: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    meta = {"info": info, "optimizers": {}}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"{name}/{k}"] = v.detach().cpu().contiguous()
    for name, opt in optimizers.items():
        t, m = _flatten_optimizer(f"opt.{name}", opt)
        tensors.update(t)
        meta["optimizers"][name] = m
    tmp_w, tmp_j = folder / ".state.safetensors.part", folder / ".state.json.part"
    try:
        save_file(tensors, str(tmp_w))
        usual_mode(tmp_w)   # safetensors writes 0600: the user's umask decides
        tmp_j.write_text(json.dumps(meta, indent=1))
        os.replace(tmp_w, folder / "state.safetensors")
        os.replace(tmp_j, folder / "state.json")
    except BaseException:   # a second Ctrl-C, a full disk: no .part files left behind
        for t in (tmp_w, tmp_j):
            t.unlink(missing_ok=True)
        raise


def load_state(folder: str | os.PathLike, modules: dict, optimizers: dict) -> dict:
    folder = Path(folder)
    w, j = folder / "state.safetensors", folder / "state.json"
    if not (w.is_file() and j.is_file()):
        raise CheckpointError(f"{folder}: no training state to resume (state.safetensors + state.json)")
    try:
        tensors = load_file(str(w))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{w}: unreadable training state ({str(e).splitlines()[0]})") from None
    try:
        meta = json.loads(j.read_text(encoding="utf-8"))
        info, saved_opts = meta["info"], meta["optimizers"]
        if not isinstance(info, dict) or not isinstance(saved_opts, dict):
            raise TypeError("info and optimizers must be tables")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{j}: unreadable training state ({type(e).__name__}: {e})") from None
    for name, m in modules.items():
        pre = f"{name}/"
        sd = {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)}
        if not sd:
            continue  # a module added since the state was saved (e.g. the discriminator): starts fresh
        try:
            m.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{w}: cannot resume {name}: {str(e).splitlines()[0]}") from None
    for name, opt in optimizers.items():
        if name in saved_opts:
            try:
                _unflatten_optimizer(f"opt.{name}", opt, tensors, saved_opts[name])
            except (KeyError, ValueError, TypeError) as e:
                raise CheckpointError(f"{folder}: cannot resume the optimizer {name} ({type(e).__name__}: {e})") from None
    return info
