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

import os
import tempfile
from functools import lru_cache

import numpy as np
import torch

from ..audio.mel import MelChunker, MelConfig, MelSpectrogram
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
def encode_audio(bundle: ModelBundle, audio: np.ndarray, chunk_frames: int = 4096) -> torch.Tensor:
    """Mono audio at the model rate ``(n,)`` -> posterior-mean latents ``(D, L)``, the same as
    :func:`model_stream` encodes the file (whole up to ``chunk_frames`` mel frames, in exact passes beyond)."""
    mel = MelSpectrogram(bundle.mel_config)(torch.as_tensor(audio, dtype=torch.float32)[None])[0]
    return torch.cat(list(bundle.vae.encode_chunks(lambda a, b: mel[:, a:b], mel.shape[-1], chunk_frames)), -1)


@torch.no_grad()
def render_frames(bundle: ModelBundle, zf, chunk: int = 64, semitones: float = 0.0) -> np.ndarray:
    """Offline render of mel-rate latents ``(D, n)`` through the streaming path; ``n * hop`` samples."""
    return np.concatenate(list(render_stream(bundle, [zf], chunk, semitones))).astype(np.float32)


@torch.no_grad()
def render_stream(bundle: ModelBundle, blocks, chunk: int = 64, semitones: float = 0.0):
    """:func:`render_frames` of mel-rate latents that arrive as blocks ``(D, k)`` (any sizes), yielding the
    audio as it becomes final: the frames go through one :class:`StreamingSynth` ``chunk`` at a time
    counted from the first frame, however the blocks are cut, so the samples are render_frames' own."""
    synth = StreamingSynth(bundle)
    held = np.zeros((synth.latent_dim, 0), np.float32)
    for zf in blocks:
        held = np.concatenate([held, np.asarray(zf, np.float32)], axis=1)
        n = held.shape[1] // chunk * chunk
        for i in range(0, n, chunk):
            yield synth.process(held[:, i:i + chunk], semitones)
        held = held[:, n:]
    if held.shape[1]:
        yield synth.process(held, semitones)
    yield synth.flush()


class FrameSpool:
    """Frames ``(rows, k)`` appended to an unnamed temporary file (gone when closed, or when the process
    dies) and read back by range: a long log-mel that several passes read, without holding it."""

    def __init__(self, rows: int):
        self.rows, self.frames = rows, 0
        self.file = tempfile.TemporaryFile()

    def append(self, frames: torch.Tensor) -> None:
        a = np.ascontiguousarray(frames.detach().cpu().numpy().T, np.float32)
        self.file.seek(0, os.SEEK_END)
        self.file.write(a.tobytes())
        self.frames += a.shape[0]

    def read(self, a: int, b: int) -> torch.Tensor:
        """Frames ``a .. b-1``, ``(rows, b - a)`` float32."""
        self.file.seek(a * self.rows * 4)
        buf = bytearray(self.file.read((b - a) * self.rows * 4))
        return torch.from_numpy(np.frombuffer(buf, np.float32).reshape(b - a, self.rows).T.copy())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
        return False


def latent_frame_blocks(blocks, n_frames: int, downsample: int):
    """:func:`~.vae.latents_to_frames` of latents that arrive as blocks ``(D, k)`` in order (``ceil(n_frames /
    downsample)`` in all): yields the mel-rate latents ``(D, m)`` as the latents they read have come."""
    from .vae import latent_frames_between, latent_span
    L = -(-n_frames // downsample)
    held, first, j = None, 0, 0
    for z in blocks:
        held = z if held is None else torch.cat([held, z], dim=-1)
        have = first + held.shape[-1]
        stop = min(n_frames, have * downsample)
        while stop > j and latent_span(stop - 1, L, downsample)[1] >= have:
            stop -= 1
        if stop > j:
            yield latent_frames_between(held, first, L, j, stop, downsample)
            j = stop
        if j < n_frames:
            keep = latent_span(j, L, downsample)[0]
            held, first = held[:, keep - first:], keep


@torch.no_grad()
def model_stream(bundle: ModelBundle, blocks, chunk_frames: int = 4096):
    """encode -> decode -> vocoder of mono model-rate audio that arrives as blocks, in memory bounded by
    ``chunk_frames`` whatever the length: the log-mel is made a chunk at a time (:class:`MelChunker`) into a
    :class:`FrameSpool`, encoded in passes over it (:meth:`~.vae.MelVAE.encode_chunks`, equal to the whole-file
    encode) and decoded by :func:`render_stream`. Yields the audio blocks, ``frames * hop`` samples in all
    (the input's length rounded up to a hop, and one hop more)."""
    c = bundle.mel_config
    chunker = MelChunker(MelSpectrogram(c), chunk_frames)
    with FrameSpool(c.n_mels) as spool:
        for block in blocks:
            for m in chunker.push(block):
                spool.append(m)
        for m in chunker.finish():
            spool.append(m)
        T, ds = spool.frames, bundle.vae.config.downsample
        latents = bundle.vae.encode_chunks(spool.read, T, chunk_frames)
        yield from render_stream(bundle, (z.numpy() for z in latent_frame_blocks(latents, T, ds)))


@torch.no_grad()
def vocoder_stream(bundle: ModelBundle, blocks, chunk_frames: int = 4096):
    """mel -> vocoder of mono model-rate audio arriving as blocks, a mel chunk at a time through the
    vocoder's streaming path; yields the audio blocks (what ``vocoder(mel)`` of the whole gives)."""
    chunker, state = MelChunker(MelSpectrogram(bundle.mel_config), chunk_frames), StreamState()
    for block in blocks:
        for m in chunker.push(block):
            yield bundle.vocoder.stream(m[None], state)[0].numpy()
    for m in chunker.finish():
        yield bundle.vocoder.stream(m[None], state)[0].numpy()
    yield bundle.vocoder.flush(state)[0].numpy()
