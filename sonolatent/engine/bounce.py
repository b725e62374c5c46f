"""Offline re-rendering of a logged performance (``sonolatent bounce``).

A performance log (``serve --log-osc``) is JSON lines: a header (model and
output rates, checkpoint, sample folder, commit chunk, resampler), one line per
block in which changes were applied (``{"block": b, "changes": [[address, values],
...], "sounds": {slot: {name, sha256}}}``), one per late change (``{"block": b,
"at": sample, "changes": ...}``: applied after frame ``b`` was rendered, from its
sample ``at`` on, while it was being committed) and ``{"end": n_blocks}``.
Replaying the changes at the same blocks (and samples) through the same
:class:`EngineCore`, committed in the same chunks, gives the samples the daemon
played, bit for bit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, SonolatentError
from ..jsonl import read_records
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
    header, events, end = None, [], None
    last = order = -1
    for i, rec in read_records(p, "performance log"):
        if header is None:
            if rec.get("format") != LOG_FORMAT:
                raise ConfigError(f"{p}:{i}: not a sonolatent performance log")
            if rec.get("version") not in (1, LOG_VERSION):
                raise ConfigError(f"{p}:{i}: unknown log version {rec.get('version')!r}")
            header = rec
        elif "end" in rec:
            end = rec["end"]
            if not isinstance(end, int) or end < last:
                raise ConfigError(f"{p}:{i}: bad end block {end!r}")
        else:
            b = rec.get("block")
            ch = rec.get("changes")
            at = rec.get("at")
            if at is not None and (not isinstance(at, int) or isinstance(at, bool) or at < 0):
                raise ConfigError(f"{p}:{i}: bad late sample {at!r}")
            # a late change belongs between frames b and b + 1
            if not isinstance(b, int) or 2 * b + (at is not None) < order or not isinstance(ch, list):
                raise ConfigError(f"{p}:{i}: expected {{block, changes}} in block order")
            last, order = b, 2 * b + (at is not None)
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
    # a version 1 log was committed whole frames through the HQ resampler
    old = header.get("version") == 1
    chunk = header.get("chunk", bundle.mel_config.hop_length if old else None)
    quality = header.get("resampler", "hq" if old else None)
    try:
        core = EngineCore(synth, rate, voices=voices, channels=channels,
                          safety=safety or SafetyConfig.from_dict(header.get("safety")),
                          **({"chunk": chunk} if chunk is not None else {}),
                          **({"resampler": quality} if quality is not None else {}))
    except SonolatentError as e:
        raise ConfigError(f"{log_path}: {e}") from None
    cache = SampleCache(synth, samples_dir or header.get("samples") or ".")
    if end is None:
        last = events[-1]["block"] if events else 0
        end = last + int(TAIL_SECONDS / core.dt)
    parts = []
    ev = iter(events)
    nxt = next(ev, None)
    def sounds_of(event):
        sounds = {}
        for k, meta in (event.get("sounds") or {}).items():
            s = cache.load_timbre(meta["name"]) if meta.get("timbre") else cache.load(meta["name"])
            if meta.get("sha256") and s.sha256 != meta["sha256"]:
                raise ConfigError(f"{log_path}: sample {meta['name']!r} differs from the one played "
                                  "(sha256 mismatch)")
            sounds[int(k)] = s
        return sounds

    while core.block < end and not core.finished:
        while nxt is not None and nxt["block"] <= core.block and "at" not in nxt:
            core.apply(_checked_changes(log_path, nxt, core.namespace), sounds_of(nxt))
            nxt = next(ev, None)
        core.render_frame()
        # late changes: into this frame, in the order and at the samples they were applied live
        while nxt is not None and "at" in nxt and nxt["block"] == core.block - 1:
            if nxt["at"] >= core.hop:
                raise ConfigError(f"{log_path}: block {nxt['block']}: late sample {nxt['at']} is past the frame")
            core.apply_late(_checked_changes(log_path, nxt, core.namespace), sounds_of(nxt), nxt["at"])
            nxt = next(ev, None)
        if nxt is not None and "at" in nxt and nxt["block"] < core.block:
            raise ConfigError(f"{log_path}: block {nxt['block']}: a late change out of order")
        while core.uncommitted:
            out = core.commit()
            parts.append(out)
            if writer is not None:
                writer(out)
    if not parts:
        return np.zeros((0, channels) if channels > 1 else 0, np.float32)
    return np.concatenate(parts).astype(np.float32)
