"""Dataset folders: the on-disk layout, atomic writing, loading and the split.

A dataset folder ``DIR`` holds

- ``DIR/audio/*.wav``: mono 44100 Hz WAV files (16-bit or float), each
  peak-normalised to -1 dBFS;
- ``DIR/manifest.jsonl``: one JSON object per line with at least ``path``
  (relative to ``DIR``), ``label`` (instrument name), ``group`` (what the
  train/validation split is made on), ``split`` (``"train"`` or ``"valid"``),
  ``duration`` (seconds) and ``sample_rate``, plus source-specific keys
  (``program``, ``bank``, ``pitch``, ``velocity``, ``note_seconds`` for
  soundfont renders; ``source``, ``offset`` for folders);
- ``DIR/dataset.json``: a summary (counts, seconds, validation groups, the
  settings of the command that built it).

Every file is written to a temporary name in the same folder and moved into
place; the manifest is written last, so an interrupted build never leaves a
manifest that names missing audio.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Iterable

import numpy as np

from ..audio.io import peak_normalize, write_audio
from ..errors import ConfigError, SonolatentError
from ..jsonl import read_records
from ..outputs import remove_quietly, write_text_atomic

SAMPLE_RATE = 44100
MANIFEST = "manifest.jsonl"
SUMMARY = "dataset.json"
AUDIO_DIR = "audio"
SPLITS = ("train", "valid")
REQUIRED_KEYS = ("path", "label", "group", "split", "duration", "sample_rate")
PEAK_DB = -1.0
#: The shortest clip a dataset holds and training reads (seconds): a few mel frames, what ``reconstruct``
#: refuses below. A shorter one (a one-sample clip) would reach the models' norm layers as a single frame.
MIN_CLIP_SECONDS = 0.05


# ----------------------------------------------------------------------------- reading


def load_manifest(root: str | os.PathLike, split: str | None = None) -> list[dict]:
    """Read ``root/manifest.jsonl`` and return its entries (optionally one split).

    Raises :class:`ConfigError` with one line naming the file (and line) for a
    missing folder or manifest, a line that is not a JSON object, a missing
    key, or an unknown split.
    """
    if split is not None and split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: choose train or valid")
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise ConfigError(f"{root}: no such dataset folder")
    if not path.is_file():
        raise ConfigError(f"{path}: no manifest (is {root} a dataset folder built by 'sonolatent dataset'?)")
    entries = []
    for n, entry in read_records(path, "manifest"):
        missing = [k for k in REQUIRED_KEYS if k not in entry]
        if missing:
            raise ConfigError(f"{path}:{n}: missing key(s) {', '.join(missing)}")
        if entry["split"] not in SPLITS:
            raise ConfigError(f"{path}:{n}: split must be train or valid, got {entry['split']!r}")
        if not isinstance(entry["path"], str) or Path(entry["path"]).is_absolute() or ".." in Path(entry["path"]).parts:
            raise ConfigError(f"{path}:{n}: path must be relative to the dataset folder, got {entry['path']!r}")
        if split is None or entry["split"] == split:
            entries.append(entry)
    return entries


def load_summary(root: str | os.PathLike) -> dict:
    """Read ``root/dataset.json`` (ConfigError if missing or garbled)."""
    path = Path(root) / SUMMARY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


# ----------------------------------------------------------------------------- the split


def choose_valid(keys: Iterable[str], *, fraction: float, seed: int) -> set[str]:
    """Pick the keys (groups or files) that go to validation.

    ``round(fraction * n)`` of the sorted keys, chosen by a seeded shuffle; at
    least one when ``fraction > 0`` and there are two or more keys, never all
    of them. Deterministic for the same keys, fraction and seed.
    """
    if not 0.0 <= fraction < 1.0:
        raise SonolatentError(f"--valid-fraction must be in [0, 1), got {fraction}")
    keys = sorted(set(keys))
    if fraction == 0.0 or len(keys) < 2:
        return set()
    n = min(max(1, round(fraction * len(keys))), len(keys) - 1)
    rng = random.Random(seed)
    rng.shuffle(keys)
    return set(keys[:n])


# ----------------------------------------------------------------------------- writing


def own_audio(out: str | os.PathLike) -> set[str]:
    """The names under ``out/audio`` that the dataset already in ``out`` lists in its manifest (read
    leniently: a garbled line names nothing). These, and nothing else there, a rebuild may replace."""
    names = set()
    try:
        text = (Path(out) / MANIFEST).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return names
    for line in text.splitlines():
        try:
            p = json.loads(line).get("path")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(p, str):
            parts = Path(p).parts
            if len(parts) == 2 and parts[0] == AUDIO_DIR and parts[1] not in (".", ".."):
                names.add(parts[1])
    return names


def _foreign(out: Path) -> list[Path]:
    """What ``out`` holds besides an empty ``audio/`` folder."""
    try:
        entries = list(out.iterdir())
    except OSError as e:
        raise SonolatentError(f"--out {out}: cannot list the folder ({e.strerror or e})") from None
    return [e for e in entries if not (e.name == AUDIO_DIR and e.is_dir() and not any(e.iterdir()))]


def prepare_output(out: str | os.PathLike, *, force: bool) -> tuple[Path, list[Path], set[str]]:
    """Create (or check) the output folder; refuse to overwrite a dataset, or to write into a folder
    holding anything else, without ``force``.

    With ``force`` the old manifest and summary are removed first, so a build
    interrupted half-way never pairs an old manifest with new audio. Returns
    the folder, the folders this call created and the audio names the old
    manifest listed (:func:`own_audio`): the only files already there that the
    build may replace or remove. Nothing else in the folder is ever touched.
    """
    out = Path(out)
    fresh = [d for d in (*reversed((out / AUDIO_DIR).parents), out / AUDIO_DIR) if not d.exists()]
    if out.exists() and not out.is_dir():
        raise SonolatentError(f"--out {out}: exists and is not a folder")
    has_dataset = (out / MANIFEST).exists() or (out / SUMMARY).exists()
    if has_dataset and not force:
        raise SonolatentError(f"--out {out}: already holds a dataset (use --force to replace it)")
    if out.is_dir() and not has_dataset and not force:
        other = _foreign(out)
        if other:
            raise SonolatentError(f"--out {out}: not empty and not a dataset folder (holds {other[0].name}"
                                  f"{f' and {len(other) - 1} more' if len(other) > 1 else ''}); choose an empty "
                                  f"or new folder, or --force to add a dataset beside what is there")
    own = own_audio(out) if has_dataset else set()
    try:
        (out / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SonolatentError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    for d in (out, out / AUDIO_DIR):
        if not os.access(d, os.W_OK | os.X_OK):
            raise SonolatentError(f"--out {out}: the folder {d} is not writable")
    if force:
        for name in (MANIFEST, SUMMARY):
            try:
                (out / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise SonolatentError(f"--out {out}: cannot remove the old {name} ({e.strerror or e})") from None
    return out, fresh, own


class DatasetWriter:
    """Writes normalised clips into ``out/audio`` and, on :meth:`finish`, the manifest and summary.

    Creating one prepares the output folder (see :func:`prepare_output`).
    """

    def __init__(self, out: str | os.PathLike, *, force: bool = False, fmt: str = "16"):
        self.out, self._created, self._own = prepare_output(out, force=force)
        self.fmt = fmt
        self.entries: list[dict] = []
        self._names: set[str] = set()

    def add(self, name: str, audio: np.ndarray, entry: dict) -> dict:
        """Peak-normalise ``audio`` (mono, 44100 Hz), write ``audio/NAME.wav`` and remember its entry."""
        base, n = name, 1
        while name in self._names or (f"{name}.wav" not in self._own
                                      and os.path.lexists(self.out / AUDIO_DIR / f"{name}.wav")):
            n += 1   # a file this build did not write and the old manifest does not list: never ours to replace
            name = f"{base}_{n}"
        self._names.add(name)
        rel = f"{AUDIO_DIR}/{name}.wav"
        write_audio(self.out / rel, peak_normalize(audio, PEAK_DB), SAMPLE_RATE, fmt=self.fmt)
        full = {"path": rel, **entry, "duration": round(len(audio) / SAMPLE_RATE, 6), "sample_rate": SAMPLE_RATE}
        self.entries.append(full)
        return full

    def abort(self) -> None:
        """After an interrupted or failed build: remove the audio it wrote and the folders it created."""
        for e in self.entries:
            remove_quietly(self.out / e["path"])
        self.entries = []
        for d in reversed(self._created):
            try:
                d.rmdir()
            except OSError:
                pass

    def finish(self, *, valid_groups: Iterable[str], settings: dict, extra: dict | None = None) -> dict:
        """Write ``dataset.json`` then ``manifest.jsonl``; remove the audio the old manifest listed that
        this build did not write again (and no other file)."""
        keep = {Path(e["path"]).name for e in self.entries}
        for name in sorted(self._own - keep):
            remove_quietly(self.out / AUDIO_DIR / name)
        summary = summarize(self.entries, valid_groups=valid_groups, settings=settings, extra=extra)
        write_text_atomic(self.out / SUMMARY, json.dumps(summary, indent=2, sort_keys=False) + "\n")
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.entries)
        write_text_atomic(self.out / MANIFEST, lines)
        return summary


def summarize(entries: list[dict], *, valid_groups: Iterable[str], settings: dict, extra: dict | None = None) -> dict:
    counts = {s: sum(1 for e in entries if e["split"] == s) for s in SPLITS}
    seconds = {s: round(sum(e["duration"] for e in entries if e["split"] == s), 3) for s in SPLITS}
    summary = {
        "format": 1,
        "sample_rate": SAMPLE_RATE,
        "files": len(entries),
        "counts": counts,
        "seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 3),
        "labels": len({e["label"] for e in entries}),
        "groups": sorted({e["group"] for e in entries}),
        "valid_groups": sorted(valid_groups),
        "settings": settings,
    }
    if extra:
        summary.update(extra)
    return summary
