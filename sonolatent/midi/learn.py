"""MIDI learn: bind the next control that moves to an OSC address.

Armed with an address, :class:`Learner` looks at the messages the mapper
sees. The first control change, pitch bend or aftertouch binds:

- CC n -> a ``[[cc]]`` entry on that channel (replacing any entry for the
  same CC and channel). If the very next message is CC n+32 (n < 32) on the
  same channel, the entry becomes a 14-bit pair (``lsb = n+32``).
- CC 99/98 then CC 6 -> an ``[[nrpn]]`` entry for that parameter.
- pitch bend -> the ``[pitchbend]`` table; aftertouch -> an ``[[aftertouch]]``.

The value range comes from the address (:func:`learn_range`): ``.../norm``
0..1, ``/sono/latent/K`` -3..3, ``/sono/transpose`` -12..12 (pitch bend:
±2 semitones), ``/sono/rate`` 0..2, other known ones 0..1. Addresses that do
not take one number (``/sono/play``, ``/sono/xy``, ``/sono/weights``...)
cannot be learned. Nor can an address the daemon's namespace does not know
(:func:`known_address`): learn writes a file, and the control port that arms
it takes packets from the network.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import mido

from ..control.convert import resolve
from ..params.namespace import build_namespace
from ..errors import ConfigError, SonolatentError
from ..outputs import write_text_atomic
from .mapping import AftertouchMap, CCMap, FieldError, Mapping, NRPNMap, PitchbendConfig, check_address, save_mapping

_FIXED_RANGES = {
    "/sono/gain": (0.0, 1.0),
    "/sono/morph": (0.0, 1.0),
    "/sono/position": (0.0, 1.0),
    "/sono/xy/x": (0.0, 1.0),
    "/sono/xy/y": (0.0, 1.0),
    "/sono/transpose": (-12.0, 12.0),
    "/sono/rate": (0.0, 2.0),
}
_NOT_ONE_NUMBER = {
    "/sono/play": "a trigger",
    "/sono/stop": "a trigger",
    "/sono/ping": "a query",
    "/sono/patch/load": "a patch name (use [program])",
    "/sono/xy": "two numbers (learn /sono/xy/x and /sono/xy/y)",
    "/sono/weights": "one number per slot",
    "/sono/latent": "one number per latent coordinate (learn /sono/latent/K)",
    "/sono/patch/save": "a patch name",
    "/sono/quit": "a command",
    "/sono/info": "a query",
    "/sono/status": "a query",
    "/sono/subscribe": "a subscription",
    "/sono/unsubscribe": "a command",
}
_SLOT_ACTION_RE = re.compile(r"/sono/slot/\d+/(load|clear|name)")
_LATENT_RE = re.compile(r"/sono/latent/\d+")
_IGNORED_CCS = {38, 96, 97} | set(range(120, 128))
MAX_LATENT_DIM = 64   # the most latent coordinates a daemon has (the VAE's linear paths go up to 64)
_NAMESPACE = build_namespace(latent_dim=MAX_LATENT_DIM)


def known_address(address: str) -> bool:
    """Whether a daemon's namespace has ``address`` (or its ``/norm`` form), for any model it may run."""
    return resolve(_NAMESPACE, address) is not None


def learn_range(address: str) -> tuple[float, float]:
    """The min..max a learned control gets for ``address``; ConfigError if it cannot be learned."""
    try:
        check_address(address)
    except FieldError as e:
        raise ConfigError(f"MIDI learn: {e.message}") from None
    if not known_address(address):
        raise ConfigError(f"MIDI learn: {address} is not an address of the daemon (see docs/osc.md)")
    if _SLOT_ACTION_RE.fullmatch(address):
        raise ConfigError(f"MIDI learn: {address} takes a sample name or a command, not one controller value")
    if address in _NOT_ONE_NUMBER:
        raise ConfigError(f"MIDI learn: {address} takes {_NOT_ONE_NUMBER[address]}, not one controller value")
    if address.endswith("/norm"):
        return (0.0, 1.0)
    if _LATENT_RE.fullmatch(address):
        return (-3.0, 3.0)
    return _FIXED_RANGES.get(address, (0.0, 1.0))


def save_learned(mapping: Mapping, path) -> Path | None:
    """Save a learned mapping atomically, first copying the file it replaces to ``NAME.bak``.

    Returns the backup's path (None when there was no previous file). Errors are one-line ConfigErrors;
    when the backup cannot be written, the mapping file is left as it was.
    """
    p = Path(path)
    backup = None
    if p.exists():
        backup = p.with_name(p.name + ".bak")
        try:
            old = p.read_text(encoding="utf-8")
            write_text_atomic(backup, old, fsync=True, what="back up the mapping")
        except (OSError, UnicodeDecodeError, SonolatentError) as e:
            raise ConfigError(f"{p}: not saved, the previous file could not be backed up ({e})") from None
    save_mapping(mapping, p)
    return backup


class Learner:
    """The learn state machine (used by :class:`~sonolatent.midi.mapper.Mapper`)."""

    def __init__(self):
        self.address: str | None = None
        self._select: dict[int, tuple[str, int, int]] = {}  # channel -> ("nrpn"|"rpn", msb, lsb)
        self._upgrade: CCMap | None = None  # a CC just learned that may turn out to be 14-bit

    @property
    def armed(self) -> bool:
        return self.address is not None or self._upgrade is not None

    def arm(self, address: str) -> None:
        learn_range(address)
        self.address = address
        self._select.clear()
        self._upgrade = None

    def cancel(self) -> None:
        self.address = None
        self._upgrade = None

    def offer(self, msg: mido.Message, mapping: Mapping) -> tuple[Mapping, str] | None:
        """Look at one message; returns (new mapping, description) when it binds something."""
        if self._upgrade is not None:
            m, self._upgrade = self._upgrade, None
            if (msg.type == "control_change" and msg.control == m.cc + 32 and m.channel == msg.channel + 1):
                cc = tuple(replace(x, lsb=m.cc + 32) if x == m else x for x in mapping.cc)
                return replace(mapping, cc=cc), f"CC {m.cc}/{m.cc + 32} (14-bit) on channel {m.channel} -> {m.address}"
        address = self.address
        if address is None:
            return None
        lo, hi = learn_range(address)
        ch = msg.channel + 1
        if msg.type == "control_change":
            c, v = msg.control, msg.value
            if c in (99, 98, 101, 100):
                kind, msb, lsb = self._select.get(ch, ("none", 127, 127))
                kind2 = "nrpn" if c in (99, 98) else "rpn"
                if kind != kind2:
                    msb, lsb = 127, 127
                if c in (99, 101):
                    msb = v
                else:
                    lsb = v
                self._select[ch] = (kind2, msb, lsb)
                return None
            if c == 6 and ch in self._select:
                kind, msb, lsb = self._select[ch]
                if kind != "nrpn":
                    return None
                param = (msb << 7) | lsb
                new = NRPNMap(param=param, address=address, min=lo, max=hi, channel=ch)
                kept = tuple(x for x in mapping.nrpn if not (x.param == param and x.channel in (None, ch)))
                self.address = None
                return replace(mapping, nrpn=kept + (new,)), f"NRPN {param} on channel {ch} -> {address}"
            if c in _IGNORED_CCS:
                return None
            new = CCMap(cc=c, address=address, min=lo, max=hi, channel=ch)
            kept = tuple(x for x in mapping.cc if not (x.cc == c and x.channel in (None, ch)))
            self.address = None
            if c < 32:
                self._upgrade = new
            return replace(mapping, cc=kept + (new,)), f"CC {c} on channel {ch} -> {address}"
        if msg.type == "pitchwheel":
            if mapping.notes is not None and address == mapping.notes.transpose_address:
                rng = mapping.pitchbend.range if mapping.pitchbend and mapping.pitchbend.range else 2.0
                pb = PitchbendConfig(address=address, range=rng, channel=ch)
            else:
                pb = PitchbendConfig(address=address, range=None, min=lo, max=hi, channel=ch)
            self.address = None
            return replace(mapping, pitchbend=pb), f"pitch bend on channel {ch} -> {address}"
        if msg.type in ("aftertouch", "polytouch"):
            kind = "poly" if msg.type == "polytouch" else "channel"
            new = AftertouchMap(address=address, type=kind, min=lo, max=hi, channel=ch)
            kept = tuple(x for x in mapping.aftertouch if not (x.type == kind and x.channel in (None, ch)))
            self.address = None
            return replace(mapping, aftertouch=kept + (new,)), f"{kind} aftertouch on channel {ch} -> {address}"
        return None
