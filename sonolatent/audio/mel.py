"""The one mel definition every sonolatent model uses.

A :class:`MelConfig` fixes every choice that changes the numbers (rate, FFT
size, hop, band count, frequency range, Slaney mel scale and norm, magnitude
(power 1) and the log floor). :class:`MelSpectrogram` implements it once, in
torch. Models store their MelConfig; pairing two models whose MelConfigs
differ is refused by :func:`MelConfig.check_compatible`.

Shapes: audio ``(batch, samples)`` -> log-mel ``(batch, n_mels, frames)`` with
``frames = samples // hop_length + 1`` (centred frames: frame ``t`` is centred
on sample ``t * hop_length``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 100
    fmin: float = 0.0
    fmax: float = 22050.0
    log_floor: float = 1e-5
    mel_scale: str = "slaney"
    power: float = 1.0

    def __post_init__(self):
        check_positive(self, "mel", ("sample_rate", "n_fft", "n_mels", "log_floor", "power"))
        if self.hop_length <= 0 or self.n_fft < self.hop_length:
            raise ConfigError(f"mel: need 0 < hop_length <= n_fft (got {self.hop_length}, {self.n_fft})")
        if not (0 <= self.fmin < self.fmax <= self.sample_rate / 2):
            raise ConfigError(f"mel: need 0 <= fmin < fmax <= sample_rate/2 (got {self.fmin}, {self.fmax})")
        if self.mel_scale not in ("slaney", "htk"):
            raise ConfigError(f"mel: mel_scale must be 'slaney' or 'htk', got {self.mel_scale!r}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MelConfig":
        return config_from_dict(cls, d, "mel")

    def check_compatible(self, other: "MelConfig", what: str = "models") -> None:
        """Refuse to pair two models trained on different mel definitions."""
        if self != other:
            diff = [
                f"{f.name} {getattr(self, f.name)} vs {getattr(other, f.name)}"
                for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)
            ]
            raise ConfigError(f"{what} use different mel definitions ({'; '.join(diff)})")


def check_positive(config, what: str, names) -> None:
    """Raise :class:`ConfigError` for the first of ``names`` that is not a positive number."""
    for name in names:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ConfigError(f"{what}: {name} must be positive, got {v!r}")


def config_from_dict(cls, d: dict, what: str):
    """Build a config dataclass from a dict, strictly: unknown or mistyped keys are errors."""
    if not isinstance(d, dict):
        raise ConfigError(f"{what}: expected a table of settings, got {type(d).__name__}")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ConfigError(f"{what}: unknown setting(s) {', '.join(unknown)}")
    kw = {}
    for k, v in d.items():
        default = getattr(cls, k, None) if not callable(getattr(cls, k, None)) else None
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ConfigError(f"{what}.{k}: expected true/false, got {v!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{what}.{k}: expected a number, got {v!r}")
            if isinstance(default, int) and not float(v).is_integer():
                raise ConfigError(f"{what}.{k}: expected a whole number, got {v!r}")
            v = type(default)(v)
        if isinstance(default, tuple) and isinstance(v, list):
            v = tuple(v)
        kw[k] = v
    try:
        return cls(**kw)
    except TypeError as e:
        raise ConfigError(f"{what}: {e}") from None


def mel_filterbank(config: MelConfig, n_fft: int | None = None) -> np.ndarray:
    """The mel filterbank ``(n_mels, n_fft // 2 + 1)`` of the project's one mel definition; with ``n_fft``,
    the same bands laid on the bins of an STFT of that size instead of the mel's own."""
    n_fft = config.n_fft if n_fft is None else n_fft
    with warnings.catch_warnings():   # bands narrower than a bin of a smaller STFT are expected there
        warnings.simplefilter("ignore", UserWarning)
        return librosa.filters.mel(sr=config.sample_rate, n_fft=n_fft, n_mels=config.n_mels, fmin=config.fmin,
                                   fmax=config.fmax, htk=config.mel_scale == "htk", norm="slaney")


def mel_envelope_matrix(config: MelConfig, n_fft: int) -> np.ndarray:
    """``(n_fft // 2 + 1, n_mels)``: a non-negative map from a linear-magnitude mel
    back to a smooth magnitude envelope on the bins of an ``n_fft``-point STFT.

    Each linear bin takes the filter-weighted mean of the mel bands that cover
    it, each band divided by its filter's sum, so a flat spectrum maps back to
    the same flat spectrum. Bins no filter covers (0 Hz, above ``fmax``) take
    their nearest covered neighbour's row. It is a prior, not an inverse: the
    detail inside a band (harmonics) is left to whoever uses it.
    """
    fb = mel_filterbank(config).astype(np.float64)
    cover = fb.sum(axis=0)                                     # (bins,)
    rows = fb.T / np.where(cover > 0, cover, 1.0)[:, None]     # each bin: its bands' weights, summing to 1
    weights = rows / fb.sum(axis=1)[None, :]                   # a flat spectrum gives band value = filter sum
    covered = np.flatnonzero(cover > 0)
    src_f = np.arange(fb.shape[1]) * config.sample_rate / config.n_fft
    dst_f = np.arange(n_fft // 2 + 1) * config.sample_rate / n_fft
    src_idx = np.clip(np.rint(dst_f / (config.sample_rate / config.n_fft)).astype(int), 0, fb.shape[1] - 1)
    nearest = covered[np.abs(src_f[covered][None, :] - src_f[src_idx][:, None]).argmin(axis=1)]
    return np.where(cover[src_idx, None] > 0, weights[src_idx], weights[nearest]).astype(np.float32)


class MelSpectrogram(torch.nn.Module):
    """Log-mel spectrogram, ``(B, samples) -> (B, n_mels, samples // hop + 1)``."""

    def __init__(self, config: MelConfig = MelConfig()):
        super().__init__()
        self.config = config
        fb = mel_filterbank(config)
        self.register_buffer("filterbank", torch.from_numpy(fb.astype(np.float32)), persistent=False)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """Linear-magnitude mel, ``(B, n_mels, frames)``."""
        c = self.config
        squeeze = audio.dim() == 1
        if squeeze:
            audio = audio[None]
        pad = c.n_fft // 2
        mode = "reflect" if audio.shape[-1] > pad else "constant"
        mel = self.magnitude_padded(F.pad(audio[:, None, :], (pad, pad), mode=mode)[:, 0])
        return mel[0] if squeeze else mel

    def magnitude_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The frames of audio already padded by ``n_fft // 2`` on each side (``(B, samples)``): frame ``t``
        reads ``x[t * hop : t * hop + n_fft]``. :meth:`magnitude` pads and calls this (:class:`MelStream` makes
        the same frames one at a time in numpy, tested equal)."""
        c = self.config
        spec = torch.stft(x, c.n_fft, c.hop_length, window=self.window, center=False, return_complex=True)
        mag = spec.abs()
        if c.power != 1.0:
            mag = mag.pow(c.power)
        return torch.matmul(self.filterbank, mag)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(self.magnitude(audio), min=self.config.log_floor))

    def chunked(self, audio: torch.Tensor, chunk_frames: int = 4096) -> torch.Tensor:
        """The same log-mel as ``self(audio)`` for mono ``(samples,)`` audio, ``(n_mels, frames)``, made
        ``chunk_frames`` frames at a time (:class:`MelChunker`): the STFT of a long file (complex, n_fft/2 + 1
        bins per frame: ~0.8 GB for 20 minutes) never exists whole, only the log-mel does."""
        chunker = MelChunker(self, chunk_frames)
        x = audio.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.cat(chunker.push(x) + chunker.finish(), dim=-1)

    def _logmel_padded(self, seg: np.ndarray) -> torch.Tensor:
        """Log-mel ``(n_mels, k)`` of audio padded as :meth:`magnitude` pads it, ``seg`` holding frames
        ``t .. t + k - 1`` (``(k - 1) * hop + n_fft`` samples from padded sample ``t * hop``)."""
        mag = self.magnitude_padded(torch.from_numpy(np.ascontiguousarray(seg))[None])[0]
        return torch.log(torch.clamp(mag, min=self.config.log_floor))

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.config.hop_length + 1

    def mel_frequencies(self) -> np.ndarray:
        """Centre frequency (Hz) of each mel band."""
        c = self.config
        return librosa.mel_frequencies(c.n_mels + 2, fmin=c.fmin, fmax=c.fmax, htk=c.mel_scale == "htk")[1:-1]


class MelChunker:
    """:class:`MelSpectrogram`'s log-mel of one long signal, made from its audio as the audio comes, in
    chunks of ``chunk_frames`` frames: ``push(block)`` returns the chunks that became complete (tensors
    ``(n_mels, chunk_frames)``), ``finish()`` the rest (the right edge padded by reflection as the offline
    mel pads it). It holds about one chunk of audio, whatever the length. All chunks together equal
    ``MelSpectrogram(config)(audio)`` (the same STFT frames, up to float rounding); ``frames``: how many
    have come out. (:class:`MelStream` is the live, frame-by-frame counterpart.)"""

    def __init__(self, mel: MelSpectrogram, chunk_frames: int = 4096):
        c = mel.config
        self.mel, self.chunk = mel, int(chunk_frames)
        self.pad, self.hop, self.n_fft = c.n_fft // 2, c.hop_length, c.n_fft
        self.head = np.zeros(0, np.float32)   # raw samples while the left reflection cannot be made yet
        self.buf = None                        # the padded signal from padded sample ``base`` on
        self.base = self.frames = self.total = 0

    def push(self, audio) -> list[torch.Tensor]:
        x = np.asarray(audio, np.float32).reshape(-1)
        self.total += len(x)
        if self.buf is None:
            self.head = np.concatenate([self.head, x])
            if len(self.head) <= self.pad:
                return []
            x, self.head = self.head, None
            self.buf = np.concatenate([x[1:self.pad + 1][::-1], x])   # the reflection at the start
        else:
            self.buf = np.concatenate([self.buf, x])
        return self._emit(final=False)

    def _emit(self, final: bool) -> list[torch.Tensor]:
        out, end = [], self.base + len(self.buf)
        n_total = self.total // self.hop + 1
        while True:
            a = self.frames
            b = a + self.chunk
            if final:
                b = min(b, n_total)
            if a >= b or (b - 1) * self.hop + self.n_fft > end:
                break
            s = a * self.hop - self.base
            out.append(self.mel._logmel_padded(self.buf[s:s + (b - a - 1) * self.hop + self.n_fft]))
            self.frames = b
        keep = min(self.frames * self.hop, end - self.pad - 1) - self.base   # the end's reflection reads pad + 1
        if keep > 0:
            self.buf = self.buf[keep:]
            self.base += keep
        return out

    def finish(self) -> list[torch.Tensor]:
        if self.buf is None:   # no more than n_fft // 2 samples: the offline mel's constant padding
            head, self.head = self.head, np.zeros(0, np.float32)
            if len(head) == 0:
                return []
            with torch.no_grad():
                m = self.mel(torch.from_numpy(np.ascontiguousarray(head))[None])[0]
            self.frames = m.shape[-1]
            return [m]
        tail = self.buf[len(self.buf) - self.pad - 1:-1][::-1]   # raw samples N-2 .. N-1-pad
        self.buf = np.concatenate([self.buf, tail])
        return self._emit(final=True)


class MelStream:
    """:class:`MelSpectrogram`'s frames of one audio stream, computed as the audio arrives.

    ``process(audio)`` takes the next samples (float, ``(n,)``) and returns the frames that became
    complete (computed one by one, so that they are the same numbers however the audio is chunked): log-mel ``(n_mels, k)`` float32 and each frame's level ``(k,)`` (the RMS of its samples
    weighted by the analysis window, so a frame is as loud as what its mel saw). ``flush()`` returns
    the frames that read past the end, padded by reflection as the offline mel pads them. All frames
    together equal ``MelSpectrogram(config)(audio)`` of the whole stream, in any chunking.

    Lookahead: frame ``t`` is centred on sample ``t * hop`` and reads up to sample ``t * hop + n_fft//2 - 1``
    (frame 0 also sample ``n_fft // 2``, which the offline mel's reflection at the start reads). In the
    decoder's count (``N`` frames stand for ``N * hop`` samples) the front end lags its input by
    :attr:`delay` ``= n_fft // 2 - hop`` samples (512 at the shipped mel: 11.6 ms) once the stream has begun.
    """

    def __init__(self, mel: MelSpectrogram):
        c = mel.config
        self.mel, self.config = mel, c
        self.pad, self.hop, self.n_fft = c.n_fft // 2, c.hop_length, c.n_fft
        w = mel.window.detach().cpu().numpy().astype(np.float64)
        self._window = w.astype(np.float32)
        self._fb = np.ascontiguousarray(mel.filterbank.detach().cpu().numpy(), np.float32)
        self._w2 = (w * w).astype(np.float32)
        self._w2_sum = float((w * w).sum())
        self.reset()

    @property
    def delay(self) -> int:
        return self.pad - self.hop

    def reset(self) -> None:
        self.head = np.zeros(0, np.float32)   # raw samples before the first frame can be made
        self.buf = None                         # the padded stream from padded index ``base`` on
        self.base = 0
        self.next = 0                           # the next frame to emit
        self.total = 0                          # raw samples in

    def _empty(self):
        return np.zeros((self.config.n_mels, 0), np.float32), np.zeros(0, np.float32)

    def process(self, audio) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(audio, np.float32).reshape(-1)
        self.total += len(x)
        if self.buf is None:
            self.head = np.concatenate([self.head, x])
            if len(self.head) <= self.pad:
                return self._empty()
            x, self.head = self.head, None
            self.buf = np.concatenate([x[1:self.pad + 1][::-1], x])   # the offline reflection at the start
        else:
            self.buf = np.concatenate([self.buf, x])
        return self._emit()

    def _emit(self) -> tuple[np.ndarray, np.ndarray]:
        end = self.base + len(self.buf)
        last = (end - self.n_fft) // self.hop          # the last frame whose window is all in
        if last < self.next:
            return self._empty()
        s = self.next * self.hop - self.base
        seg = self.buf[s:s + (last - self.next) * self.hop + self.n_fft]
        frames = np.lib.stride_tricks.sliding_window_view(seg, self.n_fft)[::self.hop]
        # one frame at a time, in numpy (a torch call costs more than the transform here): the numbers do
        # not depend on how the audio was cut into chunks; they equal MelSpectrogram's up to float rounding
        logmel = np.empty((self.config.n_mels, len(frames)), np.float32)
        power = np.empty(len(frames), np.float64)
        for k, f in enumerate(frames):
            mag = np.abs(np.fft.rfft(f * self._window))
            if self.config.power != 1.0:
                mag = mag ** self.config.power
            logmel[:, k] = np.log(np.maximum(self._fb @ mag.astype(np.float32), np.float32(self.config.log_floor)))
            power[k] = (f * f) @ self._w2     # frame by frame too: the level feeds the output stage's reference
        level = np.sqrt(np.maximum(power, 0.0) / self._w2_sum).astype(np.float32)
        self.next = last + 1
        keep = min(self.next * self.hop, end - self.n_fft) - self.base   # and always the last n_fft samples
        if keep > 0:
            self.buf = self.buf[keep:]
            self.base += keep
        return logmel, level

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """The frames left at the end of the stream (the offline mel's last ``n_fft // (2 * hop)`` or so)."""
        n_total = self.total // self.hop + 1
        if self.buf is None:   # never began: as short as the offline mel's constant padding case
            head = self.head if self.head is not None else np.zeros(0, np.float32)
            if len(head) == 0 and self.total == 0:
                return self._empty()
            with torch.no_grad():
                logmel = self.mel(torch.from_numpy(np.ascontiguousarray(head))[None])[0].numpy()
            frames = np.stack([self._level_of(np.pad(head, self.pad)[t * self.hop:t * self.hop + self.n_fft])
                               for t in range(n_total)])
            self.reset()
            return logmel.astype(np.float32, copy=False), frames.astype(np.float32)
        tail = self.buf[len(self.buf) - self.pad - 1:-1][::-1]   # raw samples N-2 .. N-1-pad
        self.buf = np.concatenate([self.buf, tail])
        out = self._emit()
        assert self.next == n_total, (self.next, n_total)
        self.reset()
        return out

    def _level_of(self, seg: np.ndarray) -> float:
        return float(np.sqrt(max(float((seg * seg) @ self._w2), 0.0) / self._w2_sum))
