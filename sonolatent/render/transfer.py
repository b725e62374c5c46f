"""Offline transfer: a recorded performance moved toward a sample's timbre, through the live input's path.

:func:`transfer` drives the live engine's :class:`~sonolatent.engine.core.EngineCore` exactly as the
daemon does with ``serve --input``: the input is the live source in slot 0 (streaming mel, causal
encoder, gate), the sample's timbre (its energy-weighted mean latent, ``/sono/slot/1/timbre``) in
slot 1, ``/sono/morph`` between them at ``amount``, decoded by the one streaming synth. So a transfer
is what the daemon plays for the same input with the same settings, bit for bit, only written out
lined up with the input (the daemon plays it ``live_delay`` samples later, plus its buffering).
"""

from __future__ import annotations

import math

import numpy as np

from ..engine.core import EngineCore
from ..models.encoder import LiveEncoder
from ..models.synth import StreamingSynth

#: The settings a transfer applies at block 0, besides the blend (the daemon's defaults otherwise).
TRANSFER_GAIN = 1.0
TRANSFER_ATTACK = 0.001


def transfer_changes(amount: float, timbre_name: str, gate_db: float, gain_db: float = 0.0) -> list:
    """The control changes that set a core up for a transfer (and a daemon, sent over OSC)."""
    return [("/sono/input/slot", (0,)), ("/sono/slot/1/timbre", (timbre_name,)), ("/sono/morph/pair", (0, 1)),
            ("/sono/morph", (float(amount),)), ("/sono/input/gate", (float(gate_db),)),
            ("/sono/input/gain", (float(gain_db),)), ("/sono/gain", (TRANSFER_GAIN,)),
            ("/sono/attack", (TRANSFER_ATTACK,)), ("/sono/play", (1.0,))]


def transfer(bundle, audio: np.ndarray, timbre, amount: float, *, gate_db: float = -50.0, gain_db: float = 0.0,
             chunk: int | None = None) -> np.ndarray:
    """``audio`` (mono, model rate) moved ``amount`` (0..1) toward ``timbre`` (a one-column
    :class:`~sonolatent.engine.slots.SlotSound`); returns ``len(audio)`` samples lined up with the input.
    ``chunk``: feed the input in pieces of this many samples (the result is the same)."""
    core = EngineCore(StreamingSynth(bundle), bundle.sample_rate, live_input=LiveEncoder(bundle))
    core.apply(transfer_changes(amount, timbre.name, gate_db, gain_db), {1: timbre})
    step = chunk or len(audio) or 1
    for i in range(0, len(audio), step):
        core.feed_input(audio[i:i + step])
    core.live.end()
    blocks = core.live.ready() + math.ceil((core.synth.delay + core.output.delay) / core.hop) + 1
    parts = [core.render_block() for _ in range(blocks)]
    y = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return y[:len(audio)].astype(np.float32)
