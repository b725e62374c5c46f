"""Render dry single notes from a General MIDI soundfont into a dataset folder.

One fluidsynth synthesizer (pyfluidsynth, no audio driver: samples are pulled
with ``fluid_synth_write_float``), reverb and chorus off. Each note is held for
``note_seconds``, released, and rendered until its voices end or fall below
-60 dB of the note's peak (at most ``release`` seconds after the note-off).
Silent renders (a key outside the instrument's range) are dropped; the rest are
trimmed after the sound decays below -60 dB (with a 10 ms fade), peak-normalised
and written as ``audio/*.wav``. The train/validation split is made on whole
programs (or drum kits), never on notes.
"""

from __future__ import annotations

import os
import re
import sys
from ctypes import c_int, c_void_p
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import SonolatentError
from .manifest import MIN_CLIP_SECONDS, SAMPLE_RATE, DatasetWriter, choose_valid

#: GM percussion key numbers (Acoustic Bass Drum .. Open Triangle).
DRUM_KEYS = tuple(range(35, 82))
#: A render whose absolute peak (at synth gain 0.2) is below this is silence.
SILENCE_PEAK = 1e-4
#: Trim the tail where the sound stays below this fraction of its peak (-60 dB).
TAIL_FLOOR = 1e-3
FADE_SECONDS = 0.01
#: fluidsynth renders in 64-sample blocks; pulling whole blocks keeps note-ons sample-exact.
FLUID_BLOCK = 64
CHUNK = 64 * FLUID_BLOCK


@dataclass(frozen=True)
class SF2Config:
    soundfont: str
    programs: tuple[int, ...] = tuple(range(128))
    drums: tuple[int, ...] = ()
    pitches: tuple[int, ...] = tuple(range(24, 97, 3))
    velocities: tuple[int, ...] = (40, 80, 120)
    durations: tuple[float, ...] = (0.5, 1.5)
    release: float = 2.0
    valid_fraction: float = 0.1
    valid_programs: tuple[int, ...] | None = None
    valid_drums: tuple[int, ...] | None = None
    seed: int = 0
    fmt: str = "16"

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------- option parsing


def parse_int_list(text: str, *, option: str, lo: int = 0, hi: int = 127) -> tuple[int, ...]:
    """``"0-7,24,40-43"`` -> sorted unique ints in ``[lo, hi]`` (one-line error naming ``option``)."""
    out: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise SonolatentError(f"{option}: cannot read {part!r} (expected numbers and ranges like 0-7,24)")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if a > b:
            raise SonolatentError(f"{option}: range {part!r} runs backwards")
        if a < lo or b > hi:
            raise SonolatentError(f"{option}: {part!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1))
    if not out:
        raise SonolatentError(f"{option}: empty list")
    return tuple(sorted(out))


def parse_pitches(text: str, *, option: str = "--pitches") -> tuple[int, ...]:
    """``"24:96:3"`` (start:stop:step, stop included), ``"48:72"``, or a list ``"60,64,67,70-72"``."""
    t = str(text).replace(" ", "")
    if ":" in t:
        parts = t.split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
            raise SonolatentError(f"{option}: cannot read {text!r} (expected START:STOP[:STEP], e.g. 24:96:3)")
        a, b = int(parts[0]), int(parts[1])
        step = int(parts[2]) if len(parts) == 3 else 1
        if step < 1 or a > b or b > 127:
            raise SonolatentError(f"{option}: {text!r} needs START <= STOP <= 127 and STEP >= 1")
        return tuple(range(a, b + 1, step))
    return parse_int_list(t, option=option)


def parse_float_list(text: str, *, option: str, lo: float, hi: float) -> tuple[float, ...]:
    out = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            v = float(part)
        except ValueError:
            raise SonolatentError(f"{option}: {part!r} is not a number") from None
        if not lo < v <= hi:
            raise SonolatentError(f"{option}: {part} is outside ({lo:g}, {hi:g}]")
        out.append(v)
    if not out:
        raise SonolatentError(f"{option}: empty list")
    return tuple(sorted(set(out)))


# ----------------------------------------------------------------------------- audio helpers


def trim_tail(x: np.ndarray, floor: float = TAIL_FLOOR, fade_seconds: float = FADE_SECONDS) -> np.ndarray:
    """Cut ``x`` after its last sample above ``floor * peak``, ending in a short linear fade."""
    a = np.abs(x)
    peak = float(a.max()) if a.size else 0.0
    if peak <= 0.0:
        return x
    last = int(np.flatnonzero(a > floor * peak)[-1])
    fade = int(round(fade_seconds * SAMPLE_RATE))
    end = min(len(x), last + 1 + fade)
    y = x[:end].astype(np.float32, copy=True)
    n = min(fade, len(y))
    if n > 0:
        y[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return y


class Renderer:
    """A dry fluidsynth synthesizer with one soundfont loaded, rendering one note at a time."""

    def __init__(self, soundfont: str | os.PathLike):
        try:
            import fluidsynth
        except Exception as e:  # ImportError, or OSError when libfluidsynth is missing
            raise SonolatentError(f"cannot load pyfluidsynth / libfluidsynth ({e})") from None
        path = Path(soundfont)
        if not path.is_file():
            raise SonolatentError(f"--soundfont {path}: no such file")
        self._write = fluidsynth.cfunc(
            "fluid_synth_write_float", c_int,
            ("synth", c_void_p, 1), ("len", c_int, 1),
            ("lout", c_void_p, 1), ("loff", c_int, 1), ("lincr", c_int, 1),
            ("rout", c_void_p, 1), ("roff", c_int, 1), ("rincr", c_int, 1),
        )
        settings = {"synth.reverb.active": 0, "synth.chorus.active": 0, "synth.polyphony": 256}
        self.fs = fluidsynth.Synth(gain=0.2, samplerate=float(SAMPLE_RATE), **settings)
        self.sfid = self.fs.sfload(str(path))
        if self.sfid < 0:
            self.fs.delete()
            raise SonolatentError(f"--soundfont {path}: fluidsynth cannot load it (not a SoundFont 2 file?)")
        self._chan = 0
        self._selected: tuple[int, int] | None = None

    def close(self) -> None:
        if self.fs is not None:
            self.fs.delete()
            self.fs = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def preset_name(self, bank: int, program: int) -> str | None:
        return self.fs.sfpreset_name(self.sfid, bank, program)

    def _pull(self, n: int) -> np.ndarray:
        buf = np.zeros(2 * n, dtype=np.float32)
        p = buf.ctypes.data
        if self._write is not None:
            self._write(self.fs.synth, n, p, 0, 2, p, 1, 2)
        else:  # very old libfluidsynth: int16 only
            buf[:] = self.fs.get_samples(n).astype(np.float32) / 32768.0
        return buf.reshape(n, 2).mean(axis=1)

    def note(self, bank: int, program: int, pitch: int, velocity: int, note_seconds: float, release: float) -> np.ndarray:
        """Render one note (mono float32, raw level); the synth is silent again afterwards."""
        if self._selected != (bank, program):
            self.fs.program_select(self._chan, self.sfid, bank, program)
            self._selected = (bank, program)
        hold = max(FLUID_BLOCK, int(np.ceil(note_seconds * SAMPLE_RATE / FLUID_BLOCK)) * FLUID_BLOCK)
        self.fs.noteon(self._chan, pitch, velocity)
        parts = [self._pull(hold)]
        peak = float(np.abs(parts[0]).max())
        self.fs.noteoff(self._chan, pitch)
        left = int(release * SAMPLE_RATE)
        while left > 0:
            block = self._pull(CHUNK)
            parts.append(block)
            left -= CHUNK
            bpeak = float(np.abs(block).max())
            peak = max(peak, bpeak)
            if self.fs.get_active_voice_count() == 0 or bpeak < TAIL_FLOOR * peak:
                break
        self.fs.all_sounds_off(self._chan)
        self._pull(FLUID_BLOCK)  # let the killed voices go before the next note
        return np.concatenate(parts)


# ----------------------------------------------------------------------------- the build


def _jobs(cfg: SF2Config) -> list[tuple]:
    jobs = []
    for prog in cfg.programs:
        for pitch in cfg.pitches:
            for vel in cfg.velocities:
                for dur in cfg.durations:
                    jobs.append((0, prog, pitch, vel, dur))
    # drum hits: noteoff is ignored by most kits, so one (the shortest) hold is enough
    for kit in cfg.drums:
        for key in DRUM_KEYS:
            for vel in cfg.velocities:
                jobs.append((128, kit, key, vel, min(cfg.durations)))
    return jobs


def _group(bank: int, program: int) -> str:
    return f"drums/{program:03d}" if bank == 128 else f"gm/{program:03d}"


def build_from_soundfont(
    cfg: SF2Config, out: str | os.PathLike, *, force: bool = False, progress: bool | None = None
) -> dict:
    """Render the notes ``cfg`` asks for into dataset folder ``out``; returns the summary."""
    if not cfg.programs and not cfg.drums:
        raise SonolatentError("nothing to render: give --programs and/or --drums")
    if not 0.0 < cfg.release <= 30.0:
        raise SonolatentError(f"--release must be in (0, 30] seconds, got {cfg.release}")
    with Renderer(cfg.soundfont) as r:
        names: dict[tuple[int, int], str] = {}
        for bank, progs in ((0, cfg.programs), (128, cfg.drums)):
            missing = []
            for p in progs:
                name = r.preset_name(bank, p)
                if name is None:
                    missing.append(p)
                names[(bank, p)] = name or ""
            if missing:
                what = "--drums" if bank == 128 else "--programs"
                have = [p for p in range(128) if r.preset_name(bank, p) is not None]
                raise SonolatentError(
                    f"{what}: {','.join(map(str, missing))} not in {cfg.soundfont} bank {bank}"
                    f" (it has {_compact(have) or 'none'})"
                )
        valid = _valid_groups(cfg)
        writer = DatasetWriter(out, force=force, fmt=cfg.fmt)
        dropped = 0
        jobs = _jobs(cfg)
        from tqdm import tqdm

        try:
            bar = tqdm(jobs, desc="rendering", unit="note", disable=(None if progress is None else not progress),
                       file=sys.stderr, dynamic_ncols=True)
            for bank, prog, pitch, vel, dur in bar:
                x = r.note(bank, prog, pitch, vel, dur, cfg.release)
                if float(np.abs(x).max()) < SILENCE_PEAK:
                    dropped += 1
                    continue
                x = trim_tail(x)
                if len(x) < MIN_CLIP_SECONDS * SAMPLE_RATE:   # a short hit: silence after it, as training needs
                    x = np.pad(x, (0, int(np.ceil(MIN_CLIP_SECONDS * SAMPLE_RATE)) - len(x)))
                group = _group(bank, prog)
                kind = "d" if bank == 128 else "p"
                name = f"{kind}{prog:03d}_n{pitch:03d}_v{vel:03d}_d{int(round(dur * 1000)):05d}"
                writer.add(name, x, {
                    "label": f"{group} {names[(bank, prog)]}",
                    "group": group,
                    "split": "valid" if group in valid else "train",
                    "program": prog,
                    "bank": bank,
                    "pitch": pitch,
                    "velocity": vel,
                    "note_seconds": dur,
                })
            bar.close()
            if not writer.entries:
                raise SonolatentError(
                    f"nothing rendered: all {len(jobs)} notes were silent (pitches outside the instruments' ranges?)"
                )
        except BaseException:  # Ctrl-C, an error half-way or nothing rendered: no half-built dataset left
            writer.abort()
            raise
    return writer.finish(
        valid_groups=sorted(valid & {e["group"] for e in writer.entries}),
        settings={"source": "sf2", **cfg.to_dict()},
        extra={"rendered": len(writer.entries), "dropped_silent": dropped},
    )


def _valid_groups(cfg: SF2Config) -> set[str]:
    valid: set[str] = set()
    for bank, progs, chosen, opt in (
        (0, cfg.programs, cfg.valid_programs, "--valid-programs"),
        (128, cfg.drums, cfg.valid_drums, "--valid-drums"),
    ):
        if chosen is not None:
            extra = sorted(set(chosen) - set(progs))
            if extra:
                raise SonolatentError(f"{opt}: {','.join(map(str, extra))} not among the rendered ones")
            valid |= {_group(bank, p) for p in chosen}
        else:
            valid |= choose_valid([_group(bank, p) for p in progs], fraction=cfg.valid_fraction, seed=cfg.seed)
    every = {_group(0, p) for p in cfg.programs} | {_group(128, p) for p in cfg.drums}
    if valid >= every:
        raise SonolatentError("--valid-programs/--valid-drums: every program would be in validation, none left to train on")
    return valid


def _compact(nums: list[int]) -> str:
    """[0,1,2,5,8,9] -> '0-2,5,8-9'."""
    out, i = [], 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(out)
