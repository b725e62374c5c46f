"""Offline re-rendering of a logged performance (``sonolatent bounce``).

A performance log (``serve --log-osc``) is JSON lines: a header (model and
output rates, checkpoint, sample folder), one line per block in which changes
were applied (``{"block": b, "changes": [[address, values], ...], "sounds":
{slot: {name, sha256}}}``) and ``{"end": n_blocks}``. Replaying the changes at
the same blocks through the same :class:`EngineCore` gives the samples the
daemon played, bit for bit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SonolatentError
from ..params.values import coerce
from .core import EngineCore
from .runtime import LOG_FORMAT, LOG_VERSION
from .safety import SafetyConfig
from .slots import SampleCache

#: Rendered after the last event when a log has no end line (the daemon was killed).
TAIL_SECONDS = 2.0


def read_log(path: str | os.PathLike) -> tuple[dict, list[dict], int | None]:
    """``(header, events, end_block)``; raises :class:`ConfigError` naming the line at fault."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{p}: performance log not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, not a performance log") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the log ({e})") from None
    header, events, end = None, [], None
    last = -1
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise ConfigError(f"{p}:{i}: expected a JSON object")
        if header is None:
            if rec.get("format") != LOG_FORMAT:
                raise ConfigError(f"{p}:{i}: not a sonolatent performance log")
            if rec.get("version") != LOG_VERSION:
                raise ConfigError(f"{p}:{i}: unknown log version {rec.get('version')!r}")
            header = rec
        elif "end" in rec:
            end = rec["end"]
            if not isinstance(end, int) or end < last:
                raise ConfigError(f"{p}:{i}: bad end block {end!r}")
        else:
            b = rec.get("block")
            ch = rec.get("changes")
            if not isinstance(b, int) or b < last or not isinstance(ch, list):
                raise ConfigError(f"{p}:{i}: expected {{block, changes}} in block order")
            last = b
            events.append(rec)
    if header is None:
        raise ConfigError(f"{p}: the log is empty")
    return header, events, end


def _checked_changes(log_path, event: dict, namespace: dict) -> list:
    """The ``(address, values)`` of one logged block, each checked like a patch's values."""
    out = []
    for change in event["changes"]:
        if not (isinstance(change, list) and len(change) == 2 and isinstance(change[0], str)):
            raise ConfigError(f"{log_path}: block {event['block']}: expected [address, values], got {change!r}")
        address, values = change
        p = namespace.get(address)
        if p is None:
            raise ConfigError(f"{log_path}: block {event['block']}: {address}: no such address")
        try:
            out.append((address, coerce(p, values)))
        except SonolatentError as e:
            raise ConfigError(f"{log_path}: block {event['block']}: {e}") from None
    return out


def bounce(log_path, synth, *, samples_dir=None, output_rate: int | None = None, writer=None,
           safety: SafetyConfig | None = None) -> np.ndarray:
    """Render the performance in ``log_path`` through ``synth`` (a fresh ``StreamingSynth``); returns the samples.

    The logged changes are checked against the namespace here, where they enter.
    ``writer`` (optional) receives every block's samples as they are rendered.
    ``safety`` overrides the output stage the log says was played (loudness
    tracking, limiter); a log without it played with neither.
    """
    header, events, end = read_log(log_path)
    bundle = synth.bundle
    rate = int(output_rate or header.get("output_rate") or bundle.sample_rate)
    if bundle.sample_rate != header.get("model_rate", bundle.sample_rate) or \
            bundle.mel_config.hop_length != header.get("hop", bundle.mel_config.hop_length):
        raise ConfigError(f"{log_path}: recorded with a model at another rate or hop than this checkpoint")
    voices = header.get("voices", 1)
    if not isinstance(voices, int) or not 1 <= voices <= 64:
        raise ConfigError(f"{log_path}: bad voice count {voices!r} in the header")
    channels = header.get("channels", 1)
    if channels not in (1, 2):
        raise ConfigError(f"{log_path}: bad channel count {channels!r} in the header")
    core = EngineCore(synth, rate, voices=voices, channels=channels,
                      safety=safety or SafetyConfig.from_dict(header.get("safety")))
    cache = SampleCache(synth, samples_dir or header.get("samples") or ".")
    if end is None:
        last = events[-1]["block"] if events else 0
        end = last + int(TAIL_SECONDS / core.dt)
    parts = []
    ev = iter(events)
    nxt = next(ev, None)
    while core.block < end and not core.finished:
        while nxt is not None and nxt["block"] <= core.block:
            sounds = {}
            for k, meta in (nxt.get("sounds") or {}).items():
                s = cache.load_timbre(meta["name"]) if meta.get("timbre") else cache.load(meta["name"])
                if meta.get("sha256") and s.sha256 != meta["sha256"]:
                    raise ConfigError(f"{log_path}: sample {meta['name']!r} differs from the one played "
                                      "(sha256 mismatch)")
                sounds[int(k)] = s
            core.apply(_checked_changes(log_path, nxt, core.namespace), sounds)
            nxt = next(ev, None)
        out = core.render_block()
        parts.append(out)
        if writer is not None:
            writer(out)
    if not parts:
        return np.zeros((0, channels) if channels > 1 else 0, np.float32)
    return np.concatenate(parts).astype(np.float32)
