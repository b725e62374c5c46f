"""The live encoder: audio arriving block by block -> the VAE's latents, frame by frame, with no look-ahead.

The VAE's own encoder (:meth:`MelVAE.posterior`) is offline: its convolutions are centred, so a
latent frame reads 7 mel frames ahead at the shipped layout (81 ms on top of the mel's own window),
too much for an instrument played live. Its per-frame linear path alone needs no future, but without
the conv path it misses most of the code (held-out log-mel L1 of the decoded result 1.09 against
0.19). :class:`CausalEncoder` is a small causal network (the decoder's kind of residual layers) beside
a per-frame linear path, distilled from a VAE's posterior mean (``scripts/distill_encoder.py``): its
frame ``t`` reads mel frames ``<= t`` only, so it streams exactly like the decoder, with the history
of every convolution in a :class:`StreamState`.

:class:`LiveEncoder` is the whole live front end: :class:`~sonolatent.audio.mel.MelStream` (the one
mel, its frames equal to the offline mel's) and the causal encoder. ``process(audio)`` returns the
latent frames that became complete and each frame's level; ``flush()`` the rest; in any chunking
they equal :func:`encode_live` of the whole audio (the offline reference). Its :attr:`~LiveEncoder.delay`
(samples, in the decoder's count: ``N`` frames stand for ``N * hop`` samples) is the mel's
``n_fft // 2 - hop``: input-to-output delay of the whole live path = ``encoder.delay + synth.delay``.

An encoder is distilled from one VAE and speaks its latent space only: its checkpoint records that
VAE's weights' sha256 (``provenance.teacher_sha256``) and :func:`~.checkpoint.load_bundle` refuses
to pair it with another VAE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from ..audio.mel import MelConfig, MelSpectrogram, MelStream, check_positive, config_from_dict
from ..errors import ConfigError
from .compiled import encode_frame
from .streaming import CausalConv1d, ChannelLayerNorm, StreamState, check_gelu, histories, make_gelu
from .vae import MAX_LATENT_DIM, CausalResLayer


@dataclass(frozen=True)
class EncoderConfig:
    latent_dim: int = 48
    channels: int = 128
    layers: int = 4             # causal residual layers, dilations 1, 2, 4, 8, 1, ...
    kernel: int = 3
    mel_offset: float = -5.0    # as the VAE normalises its log-mel
    mel_scale: float = 2.5
    gelu: str = "tanh"

    def __post_init__(self):
        check_positive(self, "encoder", ("channels", "layers", "kernel", "mel_scale"))
        if not 1 <= self.latent_dim <= MAX_LATENT_DIM:
            raise ConfigError(f"encoder: latent_dim must be 1..{MAX_LATENT_DIM}, got {self.latent_dim}")
        check_gelu(self, "encoder")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        return config_from_dict(cls, d, "encoder")


class CausalEncoder(nn.Module):
    """log-mel ``(B, n_mels, T)`` -> latents ``(B, latent_dim, T)``, one per mel frame, causal;
    streamable with a ``state`` (chunked output equals offline output)."""

    kind = "encoder"

    def __init__(self, mel_config: MelConfig, config: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.mel_config, self.config = mel_config, config
        c, n_mels, D, g = config.channels, mel_config.n_mels, config.latent_dim, config.gelu
        self.inp = CausalConv1d(n_mels, c, config.kernel)
        self.layers = nn.ModuleList(CausalResLayer(c, config.kernel, 2 ** (i % 4), True, g)
                                    for i in range(config.layers))
        self.norm = ChannelLayerNorm(c)
        self.act = make_gelu(g)
        self.out = CausalConv1d(c, D, 1)
        self.lin = CausalConv1d(n_mels, D, 1)   # per frame: started from the VAE's linear path

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def receptive_field(self) -> int:
        """Mel frames each latent frame reads (all in the past or the present)."""
        return 1 + self.inp.history + sum(layer.conv.history for layer in self.layers)

    def frame_matrices(self) -> list[torch.Tensor]:
        """None: the encoder runs chunked in torch; its weights are saved as trained (float32)."""
        return []

    def forward(self, mel: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        x = (mel - self.config.mel_offset) / self.config.mel_scale
        h = self.inp(x, state)
        for layer in self.layers:
            h = layer(h, state)
        return self.out(self.act(self.norm(h)), state) + self.lin(x, state)

    def step_array(self, mel: np.ndarray, state: StreamState) -> np.ndarray:
        """One log-mel frame ``(n_mels,)`` float32 -> its latent ``(D,)`` float32, as :meth:`forward` with a state
        (the same histories), in one compiled call (the live path: torch would cost ~50 calls a frame)."""
        if self._plan is None or self.training:
            self._plan = self._build_plan()
        return self._plan(mel, state)

    _plan = None

    def load_state_dict(self, *args, **kwargs):
        self._plan = None
        return super().load_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._plan = None
        return super()._apply(fn, *args, **kwargs)

    def _build_plan(self):
        c, layers = self.config, list(self.layers)
        arr = lambda t: np.ascontiguousarray(t.detach().cpu().numpy(), np.float32)
        mat = lambda conv: arr(conv.weight).reshape(conv.weight.shape[0], -1)
        convs = [self.inp] + [layer.conv for layer in layers]
        body = (tuple(arr(layer.norm.weight) for layer in layers), tuple(arr(layer.norm.bias) for layer in layers),
                tuple(mat(layer.conv) for layer in layers), tuple(arr(layer.conv.bias) for layer in layers))
        after = (tuple(layer.conv.dilation[0] for layer in layers), tuple(mat(layer.proj) for layer in layers),
                 tuple(arr(layer.proj.bias) for layer in layers), arr(self.norm.weight), arr(self.norm.bias),
                 mat(self.out), arr(self.out.bias), mat(self.lin), arr(self.lin.bias), c.kernel, c.gelu == "exact",
                 np.float32(self.norm.eps))
        first = (mat(self.inp), arr(self.inp.bias))
        off, scale = np.float32(c.mel_offset), np.float32(c.mel_scale)
        key = (id(self), "histories")

        def run(mel, state):
            hs = histories(state.caches, convs, key)
            x = ((mel - off) / scale).astype(np.float32)
            return encode_frame(x, *first, hs[0], *body, hs[1:], *after)
        return run

    @torch.no_grad()
    def start_from(self, vae) -> None:
        """Copy ``vae``'s per-frame linear encoder path (when it has one) and zero the conv path's output,
        so that distillation starts as that linear path."""
        if getattr(vae.config, "linear_path", False):
            self.lin.weight.copy_(vae.enc_lin.weight)
            self.lin.bias.copy_(vae.enc_lin.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)


class LiveEncoder:
    """Streaming mel + causal encoder for one input stream (see the module docstring).

    ``process(audio)`` -> ``(z (D, k) float32, level (k,) float32)``: the latent frames that became
    complete and each frame's window-weighted RMS level (linear amplitude).
    """

    def __init__(self, bundle):
        if getattr(bundle, "encoder", None) is None:
            raise ConfigError("this model bundle has no live encoder (an encoder/ folder distilled from its VAE)")
        self.encoder: CausalEncoder = bundle.encoder
        self.mel = MelStream(MelSpectrogram(bundle.mel_config))
        self.hop = bundle.mel_config.hop_length
        self.latent_dim = self.encoder.latent_dim
        self.reset()

    @property
    def delay(self) -> int:
        """Samples (decoder's count) from the input to the latent frames: the mel window's look-ahead
        (the encoder itself looks ahead by nothing)."""
        return self.mel.delay

    def reset(self) -> None:
        self.mel.reset()
        self.state = StreamState()

    def _encode(self, logmel: np.ndarray) -> np.ndarray:
        out = np.empty((self.latent_dim, logmel.shape[1]), np.float32)
        for k in range(logmel.shape[1]):   # frame by frame: the same numbers whatever the chunking
            out[:, k] = self.encoder.step_array(np.ascontiguousarray(logmel[:, k]), self.state)
        return out

    def process(self, audio) -> tuple[np.ndarray, np.ndarray]:
        logmel, level = self.mel.process(audio)
        return self._encode(logmel), level

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        logmel, level = self.mel.flush()
        return self._encode(logmel), level

    def silence(self, seconds: float = 1.0) -> np.ndarray:
        """The latent column of silence (what the encoder settles to on zeros), ``(D,)`` float64."""
        enc = LiveEncoder.__new__(LiveEncoder)
        enc.encoder, enc.mel, enc.hop, enc.latent_dim = self.encoder, MelStream(self.mel.mel), self.hop, self.latent_dim
        enc.reset()
        n = max(int(seconds * self.mel.config.sample_rate), self.hop * (self.encoder.receptive_field + 4))
        z, _ = enc.process(np.zeros(n, np.float32))
        return z[:, -1].astype(np.float64)


@torch.no_grad()
def encode_live(bundle, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The offline reference of :class:`LiveEncoder`: mono audio at the model rate -> ``(z (D, T), level (T,))``
    for all ``T = n // hop + 1`` mel frames, computed at once."""
    mel = MelSpectrogram(bundle.mel_config)
    x = torch.as_tensor(np.asarray(audio, np.float32))[None]
    z = bundle.encoder(mel(x))[0].numpy()
    c = bundle.mel_config
    pad = c.n_fft // 2
    padded = torch.nn.functional.pad(x[:, None], (pad, pad), mode="reflect" if x.shape[-1] > pad else "constant")[0, 0]
    frames = padded.double().unfold(0, c.n_fft, c.hop_length)
    w2 = mel.window.double() ** 2
    level = torch.sqrt((frames ** 2 @ w2) / w2.sum()).float().numpy()
    return z, level
