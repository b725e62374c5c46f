"""Reading and writing sound files.

Reading accepts WAV, FLAC, OGG and AIFF at any sample rate and channel count;
the result is mono float32 at the requested rate (mixed down, resampled with
soxr). Writing produces WAV in 16-bit, 24-bit or 32-bit float, atomically: the
file appears whole or not at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioFileError, SonolatentError
from ..outputs import check_output_path, remove_quietly, temp_beside

SUPPORTED_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc")

#: Longest file we accept by default (seconds); longer inputs are almost always a mistake.
DEFAULT_MAX_SECONDS = 20 * 60

WRITE_FORMATS = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / float(self.sample_rate)


def check_audio_file(path: str | os.PathLike, *, min_seconds: float = 0.0,
                     max_seconds: float | None = DEFAULT_MAX_SECONDS) -> AudioInfo:
    """What :func:`read_audio` would refuse that the file's header already tells, without decoding it:
    a missing file, a folder, an unreadable or unsupported file, no audio, too short, too long. Commands
    call it on their inputs before loading a model, so a bad file is reported in a moment, not after
    seconds of work. Raises :class:`AudioFileError` with one line naming the file."""
    p = Path(path)
    if not p.exists():
        raise AudioFileError(f"{p}: no such file")
    if p.is_dir():
        raise AudioFileError(f"{p}: is a folder, not a sound file")
    try:
        info = sf.info(str(p))
    except Exception as e:  # soundfile raises RuntimeError/LibsndfileError/TypeError
        raise AudioFileError(f"{p}: not a readable sound file ({_short(e)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioFileError(f"{p}: the file holds no audio")
    seconds = info.frames / info.samplerate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioFileError(f"{p}: too long ({seconds:.0f} s; the limit is {max_seconds:.0f} s)")
    if seconds < min_seconds:
        raise AudioFileError(f"{p}: too short ({1000 * seconds:.1f} ms; at least {1000 * min_seconds:g} ms needed)")
    return AudioInfo(str(p), int(info.samplerate), int(info.channels), int(info.frames))


def wav_shortfall(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(bytes the header promises, bytes the file holds)`` of a RIFF/WAVE file's ``data`` chunk when the
    file holds less (cut short by a crash or a copy), else None (also for anything that is not WAVE)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = os.fstat(f.fileno()).st_size
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                h = f.read(8)
                n = int.from_bytes(h[4:8], "little")
                if h[:4] == b"data":
                    have = size - (pos + 8)
                    return (n, have) if n > have else None
                pos += 8 + n + (n & 1)
    except OSError:
        return None
    return None


def read_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    min_seconds: float = 0.0,
    allow_silent: bool = False,
) -> tuple[np.ndarray, int]:
    """Read a sound file as mono float32.

    Returns ``(audio, sr)`` where ``audio`` has shape ``(n,)``. If
    ``sample_rate`` is given the audio is resampled to it (soxr, high quality)
    and ``sr == sample_rate``.

    Raises :class:`AudioFileError` with one line naming the file for: a missing
    or unreadable file, an unsupported format, an empty, silent (unless
    ``allow_silent``), too short, too long or NaN/inf-containing signal.
    """
    p = Path(path)
    check_audio_file(p, max_seconds=max_seconds)
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioFileError(f"{p}: cannot decode audio ({_short(e)})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{p}: the file holds no audio")
    if not np.all(np.isfinite(data)):
        raise AudioFileError(f"{p}: the audio contains NaN or infinite samples")
    mono = data.mean(axis=1).astype(np.float32)
    if sample_rate is not None and sr != sample_rate:
        mono = resample(mono, sr, sample_rate)
        sr = sample_rate
    if mono.shape[0] / sr < min_seconds:
        raise AudioFileError(f"{p}: too short ({1000 * mono.shape[0] / sr:.1f} ms; "
                             f"at least {1000 * min_seconds:g} ms needed)")
    if not allow_silent and float(np.max(np.abs(mono))) < 1e-5:
        raise AudioFileError(f"{p}: the audio is silent")
    return np.ascontiguousarray(mono), int(sr)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr (offline, whole signal)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    return soxr.resample(x.astype(np.float32, copy=False), sr_in, sr_out, quality="HQ").astype(np.float32)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int, fmt: str = "16") -> Path:
    """Write ``audio`` (``(n,)`` mono or ``(n, channels)``) as a WAV file.

    ``fmt`` is ``"16"``, ``"24"`` or ``"float"``. Integer formats clip at full
    scale. The file is written to a temporary name in the same folder and moved
    into place, so a failure never leaves a half-written file.
    """
    p = Path(path)
    if fmt not in WRITE_FORMATS:
        raise SonolatentError(f"unknown output format {fmt!r}: choose 16, 24 or float")
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim not in (1, 2):
        raise SonolatentError(f"{p}: audio must be 1-D or 2-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise SonolatentError(f"{p}: refusing to write audio containing NaN or infinite samples")
    if fmt != "float":
        a = np.clip(a, -1.0, 1.0)
    check_output_path(p)
    tmp = temp_beside(p)
    try:
        sf.write(str(tmp), a, int(sample_rate), subtype=WRITE_FORMATS[fmt], format="WAV")
        os.replace(tmp, p)
    except Exception as e:
        remove_quietly(tmp)
        raise SonolatentError(f"{p}: cannot write ({_short(e)})") from None
    except BaseException:  # Ctrl-C half-way: no temporary file left behind
        remove_quietly(tmp)
        raise
    return p


def peak_normalize(x: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    """Scale so the absolute peak sits at ``peak_db`` dBFS (silence is left alone)."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m < 1e-9:
        return x
    return (x * (10 ** (peak_db / 20) / m)).astype(np.float32)


def _short(e: Exception) -> str:
    s = str(e).strip().splitlines()
    return s[0][:160] if s else type(e).__name__
