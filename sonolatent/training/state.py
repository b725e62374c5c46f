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
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError


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
    save_file(tensors, str(tmp_w))
    tmp_j.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_w, folder / "state.safetensors")
    os.replace(tmp_j, folder / "state.json")


def load_state(folder: str | os.PathLike, modules: dict, optimizers: dict) -> dict:
    folder = Path(folder)
    w, j = folder / "state.safetensors", folder / "state.json"
    if not (w.is_file() and j.is_file()):
        raise CheckpointError(f"{folder}: no training state to resume (state.safetensors + state.json)")
    tensors = load_file(str(w))
    meta = json.loads(j.read_text())
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
        if name in meta["optimizers"]:
            _unflatten_optimizer(f"opt.{name}", opt, tensors, meta["optimizers"][name])
    return meta["info"]
