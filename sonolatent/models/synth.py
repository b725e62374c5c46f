"""The one decode path: mel-rate latents -> VAE decoder -> (transpose) -> vocoder -> audio.

:class:`StreamingSynth` is used by the offline renderer and by the live
engine alike, so a bounce sounds exactly like the performance. It is driven
frame by frame (one mel frame = ``hop_length`` samples at the model rate) and
keeps every layer's history in a :class:`StreamState`.

``process(zf)`` with ``zf`` of shape ``(D, n)`` (raw latents, one column per
mel frame) returns the audio samples that are final, ``float32 (m,)``; after
``N`` frames in all it has returned ``N * hop - delay`` samples, and
``flush()`` returns the last ``delay``. Feeding the same frames in any chunking
gives the same samples.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..audio.mel import MelConfig, MelSpectrogram
from .checkpoint import ModelBundle
from .streaming import StreamState


class MelTranspose:
    """Shift a log-mel spectrogram in pitch by ``semitones`` (frame-wise, stateless).

    Band ``i`` (centre frequency ``f_i``) reads the input at ``f_i / 2**(s/12)``,
    interpolated linearly between neighbouring bands; frequencies outside the
    range read the log floor.
    """

    def __init__(self, mel_config: MelConfig):
        self.config = mel_config
        self.freqs = MelSpectrogram(mel_config).mel_frequencies().astype(np.float64)
        self.floor = float(np.log(mel_config.log_floor))

    @lru_cache(maxsize=64)
    def _matrix(self, cents: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The band-to-band map for ``cents`` and which bands read inside the range."""
        ratio = 2.0 ** (cents / 1200.0)
        src = self.freqs / ratio
        idx = np.interp(src, self.freqs, np.arange(len(self.freqs)), left=-1.0, right=-1.0)
        n = len(self.freqs)
        M = np.zeros((n, n), np.float32)
        for i, x in enumerate(idx):
            if x < 0:
                continue
            i0 = int(np.floor(x))
            i1 = min(i0 + 1, n - 1)
            w = x - i0
            M[i, i0] += 1 - w
            M[i, i1] += w
        return torch.from_numpy(M), torch.from_numpy(M.sum(1) > 0)

    def __call__(self, logmel: torch.Tensor, semitones: float) -> torch.Tensor:
        cents = int(round(semitones * 100))
        if cents == 0:
            return logmel
        M, valid = self._matrix(cents)
        out = torch.einsum("ij,bjt->bit", M, logmel)
        return torch.where(valid[:, None], out, torch.full_like(out, self.floor))

    def frame(self, logmel: np.ndarray, semitones: float) -> np.ndarray:
        """The same for one frame ``(n_mels,)`` in numpy (the live path)."""
        cents = int(round(semitones * 100))
        if cents == 0:
            return logmel
        M, valid = self._matrix(cents)
        return np.where(valid.numpy(), M.numpy() @ logmel, np.float32(self.floor)).astype(np.float32)


class StreamingSynth:
    """Streaming decoder + vocoder for one voice."""

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.vae, self.vocoder = bundle.vae, bundle.vocoder
        self.hop = bundle.mel_config.hop_length
        self.latent_dim = bundle.vae.latent_dim
        self.transposer = MelTranspose(bundle.mel_config)
        self.reset()
        # one throwaway frame: builds the single-frame plans and loads (or compiles) the vocoder's compiled
        # kernels here, not on the first live frame of a performance
        self.process(np.zeros((self.latent_dim, 1), np.float32))
        self.reset()

    @property
    def delay(self) -> int:
        return self.vae.delay + self.vocoder.delay

    @property
    def sample_rate(self) -> int:
        return self.bundle.sample_rate

    @property
    def downsample(self) -> int:
        """Mel frames per latent frame of what :meth:`encode` returns."""
        return self.bundle.vae.config.downsample

    def encode(self, audio: np.ndarray) -> tuple[np.ndarray, int]:
        """Mono model-rate audio -> (posterior-mean latents ``(D, L)`` as float64, its length in mel frames).

        What the engine's slots hold; runs on the engine's loader thread (it touches no stream state).
        """
        z = encode_audio(self.bundle, audio).numpy().astype(np.float64)
        return z, MelSpectrogram(self.bundle.mel_config).n_frames(len(audio))

    def batch(self, streams: int):
        """A :class:`~.batched.BatchSynth` of this model for ``streams`` streams (the engine's voices)."""
        from .batched import BatchSynth
        return BatchSynth(self.bundle, streams)

    # Up to this many frames per call, the single-frame path is cheaper than the chunk path
    # (measured per frame, 1 thread, default bundle: 1 frame 0.50 ms; chunks of 2/4/8: 0.96/0.53/0.31 ms).
    STEP_FRAMES = 4

    def _step(self, z: np.ndarray, semitones: float) -> np.ndarray:
        mel = self.vae.decode_step_array(z, self.state)
        if semitones:
            mel = self.transposer.frame(mel, semitones)
        return self.vocoder.step_array(mel, self.state)

    def reset(self) -> None:
        self.state = StreamState()
        self.frames_in = 0

    def process(self, zf, semitones: float = 0.0) -> np.ndarray:
        z = np.asarray(zf, dtype=np.float32)
        if z.ndim != 2 or z.shape[0] != self.latent_dim:
            raise ValueError(f"expected latents of shape ({self.latent_dim}, n), got {tuple(z.shape)}")
        n = z.shape[1]
        if n == 0:
            return np.zeros(0, np.float32)
        self.frames_in += n
        if n <= self.STEP_FRAMES:   # live blocks: frame by frame in numpy, same state, same output
            out = [self._step(np.ascontiguousarray(z[:, i]), semitones) for i in range(n)]
            return out[0] if n == 1 else np.concatenate(out)
        return self._chunk(z, semitones)

    @torch.inference_mode()   # cheaper per op than no_grad; the state never meets autograd
    def _chunk(self, z: np.ndarray, semitones: float) -> np.ndarray:
        mel = self.vae.decode_frames(torch.from_numpy(np.ascontiguousarray(z))[None], self.state)
        mel = self.transposer(mel, semitones)
        y = self.vocoder.stream(mel, self.state)
        return y[0].numpy()

    @torch.inference_mode()
    def flush(self) -> np.ndarray:
        y = self.vocoder.flush(self.state)
        return y[0].numpy() if y.numel() else np.zeros(0, np.float32)


@torch.no_grad()
def encode_audio(bundle: ModelBundle, audio: np.ndarray) -> torch.Tensor:
    """Mono audio at the model rate ``(n,)`` -> posterior-mean latents ``(D, L)``."""
    mel = MelSpectrogram(bundle.mel_config)(torch.as_tensor(audio, dtype=torch.float32)[None])
    return bundle.vae.encode(mel)[0]


@torch.no_grad()
def render_frames(bundle: ModelBundle, zf, chunk: int = 64, semitones: float = 0.0) -> np.ndarray:
    """Offline render of mel-rate latents ``(D, n)`` through the streaming path; ``n * hop`` samples."""
    synth = StreamingSynth(bundle)
    zf = np.asarray(zf, np.float32)
    parts = [synth.process(zf[:, i:i + chunk], semitones) for i in range(0, zf.shape[1], chunk)]
    parts.append(synth.flush())
    return np.concatenate(parts).astype(np.float32)
