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


#: Frames :class:`AudioReader` decodes per block.
READ_BLOCK = 1 << 16


class AudioReader:
    """A sound file as mono float32 blocks at ``sample_rate`` (None: the file's), read a block at a time:
    memory does not grow with the file. Iterate once; the blocks together are what :func:`read_audio`
    returns (it is built on this), with the same checks, each raised where it is found: a block with
    NaN or inf as it is read; too short, and silent (unless ``allow_silent``), at the end.
    ``samples`` counts what has come out so far (all of it once the iteration is over)."""

    def __init__(self, path: str | os.PathLike, sample_rate: int | None = None, *,
                 max_seconds: float | None = DEFAULT_MAX_SECONDS, min_seconds: float = 0.0,
                 allow_silent: bool = False, blocksize: int | None = None):
        self.path = Path(path)
        info = check_audio_file(self.path, max_seconds=max_seconds)
        self.file_rate = info.sample_rate
        self.sample_rate = int(sample_rate) if sample_rate is not None else info.sample_rate
        self.min_seconds, self.allow_silent = min_seconds, allow_silent
        self.blocksize = READ_BLOCK if blocksize is None else blocksize
        self.samples = 0

    def __iter__(self):
        p, sr = self.path, self.sample_rate
        stream = None if sr == self.file_rate else soxr.ResampleStream(self.file_rate, sr, 1, dtype="float32",
                                                                       quality="HQ")
        peak, read = 0.0, 0
        try:
            with sf.SoundFile(str(p)) as f:
                while True:
                    data = f.read(self.blocksize, dtype="float32", always_2d=True)
                    last = len(data) < self.blocksize
                    read += len(data)
                    if not np.all(np.isfinite(data)):
                        raise AudioFileError(f"{p}: the audio contains NaN or infinite samples")
                    mono = data.mean(axis=1).astype(np.float32)
                    if stream is not None:
                        mono = stream.resample_chunk(mono, last=last).astype(np.float32, copy=False)
                    if len(mono):
                        peak = max(peak, float(np.max(np.abs(mono))))
                        self.samples += len(mono)
                        yield np.ascontiguousarray(mono)
                    if last:
                        break
        except AudioFileError:
            raise
        except Exception as e:
            raise AudioFileError(f"{p}: cannot decode audio ({_short(e)})") from None
        if read == 0:
            raise AudioFileError(f"{p}: the file holds no audio")
        if self.samples / sr < self.min_seconds:
            raise AudioFileError(f"{p}: too short ({1000 * self.samples / sr:.1f} ms; "
                                 f"at least {1000 * self.min_seconds:g} ms needed)")
        if not self.allow_silent and peak < 1e-5:
            raise AudioFileError(f"{p}: the audio is silent")


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
    reader = AudioReader(path, sample_rate, max_seconds=max_seconds, min_seconds=min_seconds,
                         allow_silent=allow_silent)
    blocks = list(reader)
    return np.ascontiguousarray(np.concatenate(blocks)), reader.sample_rate


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr (offline, whole signal)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    return soxr.resample(x.astype(np.float32, copy=False), sr_in, sr_out, quality="HQ").astype(np.float32)


class AudioWriter:
    """A WAV file written block by block (``with AudioWriter(path, rate, fmt) as w: w.write(block)``),
    optionally resampled on the way from ``source_rate`` (the same samples as :func:`resample` of the
    whole). Blocks go to a temporary file beside ``path``, which takes the name only when the ``with``
    block ends without an error: a failure or Ctrl-C half-way leaves no file under the final name and
    no temporary file. :func:`write_audio` is built on this. ``frames``: frames written so far."""

    def __init__(self, path: str | os.PathLike, sample_rate: int, fmt: str = "16", channels: int = 1,
                 source_rate: int | None = None):
        self.path = Path(path)
        if fmt not in WRITE_FORMATS:
            raise SonolatentError(f"unknown output format {fmt!r}: choose 16, 24 or float")
        self.sample_rate, self.fmt, self.channels = int(sample_rate), fmt, channels
        self.resampler = None
        if source_rate is not None and int(source_rate) != self.sample_rate:
            self.resampler = soxr.ResampleStream(int(source_rate), self.sample_rate, channels, dtype="float32",
                                                 quality="HQ")
        self.frames = 0
        self._file = self._tmp = None

    def __enter__(self):
        check_output_path(self.path)
        self._tmp = temp_beside(self.path)
        try:
            self._file = sf.SoundFile(str(self._tmp), "w", self.sample_rate, self.channels,
                                      subtype=WRITE_FORMATS[self.fmt], format="WAV")
        except Exception as e:
            remove_quietly(self._tmp)
            raise SonolatentError(f"{self.path}: cannot write ({_short(e)})") from None
        return self

    def write(self, audio: np.ndarray) -> None:
        a = np.asarray(audio, dtype=np.float32)
        if a.ndim not in (1, 2):
            raise SonolatentError(f"{self.path}: audio must be 1-D or 2-D, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise SonolatentError(f"{self.path}: refusing to write audio containing NaN or infinite samples")
        if self.resampler is not None:
            a = self.resampler.resample_chunk(a, last=False)
        self._put(a)

    def _put(self, a: np.ndarray) -> None:
        if self.fmt != "float":
            a = np.clip(a, -1.0, 1.0)
        try:
            self._file.write(a)
        except Exception as e:
            raise SonolatentError(f"{self.path}: cannot write ({_short(e)})") from None
        self.frames += len(a)

    def __exit__(self, kind, exc, tb):
        try:
            if kind is None and self.resampler is not None:
                self._put(self.resampler.resample_chunk(np.zeros((0,) if self.channels == 1 else (0, self.channels),
                                                                 np.float32), last=True))
            self._file.close()
            if kind is None:
                os.replace(self._tmp, self.path)
        except Exception as e:
            remove_quietly(self._tmp)
            if isinstance(e, SonolatentError):
                raise
            raise SonolatentError(f"{self.path}: cannot write ({_short(e)})") from None
        if kind is not None:
            remove_quietly(self._tmp)
        return False


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
    with AudioWriter(p, sample_rate, fmt, channels=1 if a.ndim == 1 else a.shape[1]) as w:
        w.write(a)
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
