"""Build a dataset folder from the user's own sound files.

Every file below ``src`` (recursively) with a supported extension (WAV, FLAC,
OGG, AIFF) is read with :func:`sonolatent.audio.read_audio` (mono, resampled to
44100 Hz), optionally cut into ``max_seconds`` chunks (or trimmed to the first
one), peak-normalised and written as ``audio/*.wav``.

- ``label``: the file's folder relative to ``src`` (``src``'s own name for files
  directly in it);
- ``group``: the top-level sub-folder (files directly in ``src`` form the group
  ``"."``);
- split: whole groups go to validation when there are two or more groups,
  otherwise single files, chosen with a fixed seed.

Unreadable, empty, silent or too short files (and silent chunks) are skipped
with a one-line warning each and counted in the summary; so are files with an
extension that is not read (an ``.mp3``: one warning line for all of them). A
WAV file cut short (its header promises more audio than it holds) is used as far
as it goes, with a warning.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio.io import SUPPORTED_EXTENSIONS, read_audio, wav_shortfall
from ..errors import AudioFileError, SonolatentError
from .manifest import AUDIO_DIR, MIN_CLIP_SECONDS, SAMPLE_RATE, DatasetWriter, choose_valid

ROOT_GROUP = "."
#: A chunk quieter than this (absolute peak) is silence.
SILENCE_PEAK = 1e-4
#: The last chunk of a split file is kept only if at least this long (seconds).
MIN_CHUNK_SECONDS = 0.25


def _warn_stderr(msg: str) -> None:
    print(f"sonolatent: warning: {msg}", file=sys.stderr)


def find_sound_files(src: Path, others: list[Path] | None = None) -> list[Path]:
    """Sound files below ``src`` in a stable order (hidden files and folders left out); the other files
    (an extension that is not read) are appended to ``others`` when it is given."""
    found = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            if Path(f).suffix.lower() in SUPPORTED_EXTENSIONS:
                found.append(Path(dirpath) / f)
            elif others is not None:
                others.append(Path(dirpath) / f)
    return found


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def _safe_name(rel: Path) -> str:
    """``drums/kick 1.flac`` -> ``drums__kick_1_flac`` (unique per source path)."""
    s = "__".join(rel.parent.parts + (rel.stem + "_" + rel.suffix.lstrip(".").lower(),))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)


def build_from_folder(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    max_seconds: float | None = None,
    long_files: str = "chunk",
    valid_fraction: float = 0.1,
    seed: int = 0,
    fmt: str = "16",
    force: bool = False,
    progress: bool | None = None,
    warn: Callable[[str], None] = _warn_stderr,
) -> dict:
    """Build dataset folder ``out`` from the sound files below ``src``; returns the summary."""
    src = Path(src)
    if not src.exists():
        raise SonolatentError(f"{src}: no such folder")
    if not src.is_dir():
        raise SonolatentError(f"{src}: not a folder")
    if long_files not in ("chunk", "trim"):
        raise SonolatentError(f"--long-files must be chunk or trim, got {long_files!r}")
    if max_seconds is not None and not max_seconds > 0:
        raise SonolatentError(f"--max-seconds must be positive, got {max_seconds}")
    out_path = Path(out)
    if out_path.resolve() == src.resolve() or src.resolve() in out_path.resolve().parents:
        raise SonolatentError(f"--out {out_path}: must not be inside the source folder {src}")
    if _overlaps(out_path / AUDIO_DIR, src):
        raise SonolatentError(f"--out {out_path}: its {AUDIO_DIR}/ folder would overlap the source folder {src}")
    others: list[Path] = []
    files = find_sound_files(src, others)
    exts = " ".join(sorted({e.lstrip('.') for e in SUPPORTED_EXTENSIONS}))
    if others:
        kinds: dict[str, int] = {}
        for o in others:
            k = o.suffix.lower() or "(no extension)"
            kinds[k] = kinds.get(k, 0) + 1
        listed = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
        warn(f"skipped {len(others)} file{'s' * (len(others) != 1)} in {src} that {'are' if len(others) != 1 else 'is'}"
             f" not a sound format read here ({listed}; read: {exts})")
    if not files:
        raise SonolatentError(f"{src}: no sound files found ({exts})")

    rels = [f.relative_to(src) for f in files]
    groups = {r: (r.parts[0] if len(r.parts) > 1 else ROOT_GROUP) for r in rels}
    by_group = len(set(groups.values())) >= 2
    if by_group:
        valid_keys = choose_valid(groups.values(), fraction=valid_fraction, seed=seed)
    else:
        valid_keys = choose_valid((r.as_posix() for r in rels), fraction=valid_fraction, seed=seed)

    writer = DatasetWriter(out_path, force=force, fmt=fmt)
    skipped: dict[str, int] = {"unreadable": 0, "silent_chunks": 0}
    truncated = 0
    from tqdm import tqdm

    try:
        bar = tqdm(list(zip(files, rels)), desc="reading", unit="file", file=sys.stderr, dynamic_ncols=True,
                   disable=(None if progress is None else not progress))
        for path, rel in bar:
            try:
                audio, _ = read_audio(path, SAMPLE_RATE, min_seconds=MIN_CLIP_SECONDS)
            except AudioFileError as e:
                skipped["unreadable"] += 1
                warn(f"skipped {e}")
                continue
            short = wav_shortfall(path)
            if short is not None:
                truncated += 1
                warn(f"{path}: cut short (the header promises {short[0]} bytes of audio, the file holds "
                     f"{short[1]}); using what is there")
            label = rel.parent.as_posix() if len(rel.parts) > 1 else src.resolve().name
            group = groups[rel]
            split = "valid" if (group if by_group else rel.as_posix()) in valid_keys else "train"
            for offset, chunk in _chunks(audio, max_seconds, long_files):
                if float(np.max(np.abs(chunk))) < SILENCE_PEAK:
                    skipped["silent_chunks"] += 1
                    continue
                name = _safe_name(rel) + (f"_c{int(round(offset / max_seconds)):04d}" if offset or len(audio) > len(chunk) else "")
                writer.add(name, chunk, {
                    "label": label,
                    "group": group,
                    "split": split,
                    "source": rel.as_posix(),
                    "offset": round(offset, 6),
                })
        bar.close()
        if not writer.entries:
            raise SonolatentError(f"{src}: none of the {len(files)} sound files could be used (see the warnings)")
    except BaseException:  # Ctrl-C, an error half-way or nothing usable: no half-built dataset left
        writer.abort()
        raise
    settings = {
        "source": "folder", "src": str(src.resolve()), "max_seconds": max_seconds, "long_files": long_files,
        "valid_fraction": valid_fraction, "seed": seed, "fmt": fmt,
    }
    return writer.finish(
        valid_groups=sorted(valid_keys) if by_group else [],
        settings=settings,
        extra={
            "split_by": "group" if by_group else "file",
            "source_files": len(files),
            "skipped_unreadable": skipped["unreadable"],
            "skipped_silent_chunks": skipped["silent_chunks"],
            "skipped_unsupported": len(others),
            "truncated_used": truncated,
        },
    )


def _chunks(audio: np.ndarray, max_seconds: float | None, long_files: str):
    """Yield ``(offset_seconds, samples)`` pieces of at most ``max_seconds``."""
    if max_seconds is None or len(audio) <= int(max_seconds * SAMPLE_RATE):
        yield 0.0, audio
        return
    n = int(max_seconds * SAMPLE_RATE)
    if long_files == "trim":
        yield 0.0, audio[:n]
        return
    for start in range(0, len(audio), n):
        piece = audio[start:start + n]
        if start and len(piece) < MIN_CHUNK_SECONDS * SAMPLE_RATE:
            break
        yield start / SAMPLE_RATE, piece
