"""Convolutional VAE over log-mel spectrograms.

Encoder (offline, non-causal): log-mel ``(B, n_mels, T)`` -> posterior mean
and log-variance ``(B, latent_dim, L)`` with ``L = ceil(T / 4)`` latent frames
(``frame_rate / 4`` ~ 21.5 latent frames per second at the default mel).

Decoder (causal, streamable): a latent trajectory at the *mel frame rate*
``(B, latent_dim, T)`` -> log-mel ``(B, n_mels, T)``. Latent frames are
brought to the mel rate by :func:`latents_to_frames` (linear interpolation),
so that the live engine can move latents smoothly, frame by frame.

PCA: after training, the posterior means of the training set are summarised
by ``pca_mean (D)``, ``pca_components (D, D)`` (rows: directions, most variance
first) and ``pca_std (D)``; :meth:`to_pca` / :meth:`from_pca` convert between
raw latents and PCA coordinates (coordinate 0 is the direction of most
variance).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..audio.mel import MelConfig, check_positive, config_from_dict
from ..errors import ConfigError
from .compiled import decode_frame
from .streaming import (CausalConv1d, ChannelLayerNorm, FramePlanned, StreamState, check_gelu, histories,
                        make_gelu)


MAX_LATENT_DIM = 64


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = 16
    channels: int = 192
    downsample: int = 4         # mel frames per latent frame (2 stride-2 stages)
    enc_blocks: int = 2         # residual blocks per encoder stage
    dec_layers: int = 8         # causal residual layers in the decoder
    dec_kernel: int = 3
    mel_offset: float = -5.0    # log-mel is normalised as (x - offset) / scale
    mel_scale: float = 2.5
    mel_max: float = 4.0        # decoded log-mel is clamped to [log(log_floor), mel_max]
    dec_norm: bool = True       # per-frame LayerNorm in the decoder (keeps unfamiliar latent paths bounded)
    gelu: str = "tanh"          # "tanh" (its approximation: 5x cheaper per frame live) or "exact" (erf)
    linear_path: bool = False   # per-frame linear encoder and decoder paths beside the conv ones (downsample 1)

    def __post_init__(self):
        check_positive(self, "vae", ("channels", "dec_layers", "dec_kernel", "mel_scale"))
        if not 0 <= self.enc_blocks <= 2:
            raise ConfigError(f"vae: enc_blocks must be 0..2, got {self.enc_blocks}")
        if not 1 <= self.latent_dim <= MAX_LATENT_DIM:
            raise ConfigError(f"vae: latent_dim must be 1..{MAX_LATENT_DIM}, got {self.latent_dim}")
        check_gelu(self, "vae")
        if self.downsample not in (1, 2, 4, 8):
            raise ConfigError(f"vae: downsample must be 1, 2, 4 or 8, got {self.downsample}")
        if self.linear_path and self.downsample != 1:
            raise ConfigError(f"vae: linear_path needs downsample 1 (one latent frame per mel frame), "
                              f"got downsample {self.downsample}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        return config_from_dict(cls, d, "vae")


class ResBlock(nn.Module):
    def __init__(self, c: int, dilation: int = 1, gelu: str = "tanh"):
        super().__init__()
        self.net = nn.Sequential(
            nn.GroupNorm(1, c), make_gelu(gelu), nn.Conv1d(c, c, 3, padding=dilation, dilation=dilation),
            nn.GroupNorm(1, c), make_gelu(gelu), nn.Conv1d(c, c, 1),
        )

    def forward(self, x):
        return x + self.net(x)


class CausalResLayer(nn.Module):
    """Pre-norm causal residual layer. The norm (when on) is per frame, so it streams statelessly
    and bounds what each layer adds to the residual stream, whatever the latent path."""

    def __init__(self, c: int, kernel: int, dilation: int, norm: bool = True, gelu: str = "tanh"):
        super().__init__()
        self.norm = ChannelLayerNorm(c) if norm else nn.Identity()
        self.conv = CausalConv1d(c, c, kernel, dilation=dilation)
        self.act = make_gelu(gelu)
        self.proj = CausalConv1d(c, c, 1)  # a 1x1 conv; this class streams it as one matmul

    def forward(self, x, state: StreamState | None = None):
        return x + self.proj(self.act(self.conv(self.act(self.norm(x)), state)), state)


def _encoder_reach(module: nn.Module) -> int:
    """How many input frames on either side of a frame can reach its encoder output (an upper bound):
    each convolution's span, in input frames at the rate it runs at."""
    reach, rate = 0, 1
    for m in module.modules():
        if isinstance(m, nn.Conv1d):
            reach += (m.kernel_size[0] - 1) * m.dilation[0] * rate
            rate *= m.stride[0]
    return reach


class _Moments:
    """Mean and variance of all the numbers of the tensors added, in float64 (chunk means and squared
    deviations combined, so a large mean costs no precision)."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, t: torch.Tensor) -> None:
        x = t.double()
        n = x.numel()
        if n == 0:
            return
        mean = float(x.mean())
        m2 = float(((x - mean) ** 2).sum())
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    def result(self) -> tuple[float, float]:
        return self.mean, self.m2 / self.n


def _encoder_apply(seq: nn.Sequential, x: torch.Tensor, stats: dict, stop: nn.Module | None):
    """Run the encoder's layers on ``x``, each GroupNorm (one group) with the whole signal's mean and
    variance from ``stats`` (``id(norm) -> (mean, var)``) instead of its input's. Stops at ``stop`` (a
    norm) and returns its input. Returns ``(h, rate)``: ``rate`` input frames per frame of ``h``."""
    rate = 1

    def walk(mods, h):
        nonlocal rate
        for m in mods:
            if m is stop:
                raise _Stopped(h)
            if isinstance(m, ResBlock):
                h = h + walk(m.net, h)
            elif isinstance(m, nn.GroupNorm):
                mean, var = stats[id(m)]
                h = (h - mean) * (1.0 / math.sqrt(var + m.eps))
                h = h * m.weight[:, None] + m.bias[:, None]
            else:
                h = m(h)
                if isinstance(m, nn.Conv1d):
                    rate *= m.stride[0]
        return h

    try:
        return walk(seq, x), rate
    except _Stopped as s:
        return s.value, rate


class _Stopped(Exception):
    def __init__(self, value):
        self.value = value


def principal_axes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows ``(N, d)`` -> their mean ``(d,)``, covariance eigenvalues ``(d,)`` and eigenvectors ``(d, d)``
    (columns), most variance first, in float64."""
    x = x.double()
    mean = x.mean(0)
    d = x.shape[1]
    evals, evecs = torch.linalg.eigh(torch.cov((x - mean).T).reshape(d, d))   # (1, 1) for one column, not ()
    order = torch.argsort(evals, descending=True)
    return mean, evals[order], evecs[:, order]


def latents_to_frames(z: torch.Tensor, n_frames: int, downsample: int) -> torch.Tensor:
    """Linear interpolation of ``(B, D, L)`` latents to ``(B, D, n_frames)`` mel-rate latents.

    Latent frame ``k`` summarises mel frames ``k*ds .. k*ds + ds - 1``; mel frame
    ``j`` reads latent position ``(j + 0.5) / ds - 0.5`` (clamped to the ends).
    """
    return latent_frames_between(z, 0, z.shape[-1], 0, n_frames, downsample)


def latent_frames_between(z: torch.Tensor, first: int, L: int, start: int, stop: int,
                          downsample: int) -> torch.Tensor:
    """Mel frames ``start .. stop-1`` of :func:`latents_to_frames` of ``L`` latents of which ``z`` holds
    latents ``first ..`` (all that those frames read: see :func:`latent_span`)."""
    pos = (torch.arange(start, stop, dtype=z.dtype, device=z.device) + 0.5) / downsample - 0.5
    pos = pos.clamp(0, L - 1)
    i0 = pos.floor().long()
    i1 = (i0 + 1).clamp(max=L - 1)
    w = (pos - i0.to(z.dtype))
    return z[..., i0 - first] * (1 - w) + z[..., i1 - first] * w


def latent_span(frame: int, L: int, downsample: int) -> tuple[int, int]:
    """The latents mel frame ``frame`` reads in :func:`latents_to_frames` of ``L`` latents: ``(i0, i1)``."""
    pos = min(max((frame + 0.5) / downsample - 0.5, 0.0), L - 1)
    i0 = int(math.floor(pos))
    return i0, min(i0 + 1, L - 1)


class MelVAE(FramePlanned):
    kind = "vae"

    def __init__(self, mel_config: MelConfig, config: VAEConfig = VAEConfig()):
        super().__init__()
        self.mel_config, self.config = mel_config, config
        c, n_mels, D = config.channels, mel_config.n_mels, config.latent_dim
        n_down = int(math.log2(config.downsample))
        enc = [nn.Conv1d(n_mels, c, 5, padding=2)]
        g = config.gelu
        for _ in range(n_down):
            enc += [ResBlock(c, d, g) for d in (1, 3)[: config.enc_blocks]]
            enc += [nn.GroupNorm(1, c), make_gelu(g), nn.Conv1d(c, c, 4, stride=2, padding=1)]
        enc += [ResBlock(c, d, g) for d in (1, 3)[: config.enc_blocks]]
        enc += [nn.GroupNorm(1, c), make_gelu(g), nn.Conv1d(c, 2 * D, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        self.dec_in = CausalConv1d(D, c, config.dec_kernel)
        self.dec_layers = nn.ModuleList(
            CausalResLayer(c, config.dec_kernel, 2 ** (i % 4), config.dec_norm, g) for i in range(config.dec_layers)
        )
        self.dec_norm = ChannelLayerNorm(c) if config.dec_norm else nn.Identity()
        self.dec_act = make_gelu(g)
        self.dec_out = CausalConv1d(c, n_mels, config.dec_kernel)
        if config.linear_path:
            # Each mel frame's own projection onto the latent and back: the conv paths learn what a
            # per-frame linear code (a PCA, at the start) misses. Kept float32 (not rounded to bfloat16).
            self.enc_lin = nn.Conv1d(n_mels, D, 1)
            self.dec_lin = nn.Conv1d(D, n_mels, 1)
            for t in (*self.enc_lin.parameters(), *self.dec_lin.parameters()):
                nn.init.zeros_(t)   # zero until fitted (:meth:`set_linear_path`, at a run's first step)
        self.register_buffer("pca_mean", torch.zeros(D))
        self.register_buffer("pca_components", torch.eye(D))
        self.register_buffer("pca_std", torch.ones(D))

    # -- shapes -------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.mel_config.frame_rate / self.config.downsample

    @property
    def delay(self) -> int:
        """The decoder is causal at the mel frame rate: no look-ahead, 0 samples."""
        return 0

    # -- encoder ------------------------------------------------------------------------
    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.config.mel_offset) / self.config.mel_scale

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.config.mel_scale + self.config.mel_offset

    def posterior(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log-mel ``(B, n_mels, T)`` -> (mean, logvar), each ``(B, D, ceil(T/ds))``."""
        ds = self.config.downsample
        T = mel.shape[-1]
        pad = (-T) % ds
        x = self.normalize(mel)
        if pad:
            x = F.pad(x, (0, pad), mode="replicate")
        h = self.encoder(x)
        mu, logvar = h.chunk(2, dim=1)
        if self.config.linear_path:
            mu = mu + self.enc_lin(x)
        return mu, logvar.clamp(-12.0, 6.0)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Posterior mean ``(B, D, L)`` (deterministic encoding)."""
        return self.posterior(mel)[0]

    @torch.no_grad()
    def encode_chunks(self, read, n_frames: int, chunk: int = 4096):
        """:meth:`encode` of a long log-mel held elsewhere, in bounded memory: yields the posterior mean
        ``(D, k)`` ``chunk // ds`` latent frames (``chunk`` mel frames) at a time, ``ceil(n_frames / ds)``
        in all, equal to ``encode`` of the whole (up to float rounding). ``read(a, b)``: mel frames ``a .. b-1``, a
        ``(n_mels, b - a)`` tensor (``0 <= a < b <= n_frames``), called again for every pass.

        The encoder's GroupNorms normalise over the whole length, so no chunk can be encoded alone. Each
        norm's mean and variance over time is exact from sums gathered chunk by chunk, once the norms
        before it are known: one pass over the mel per norm computes the encoder up to that norm, a last
        pass the output. Every pass reads each chunk with a margin of the encoder's reach on both sides
        (zero padding at the mel's real ends, as the whole-mel convolutions pad), so the chunk's own frames
        are exact at every layer. Cost: about ``norms / 2 + 1`` whole encodes; memory: one chunk. A mel that
        fits in one chunk is encoded whole in one go (so a short file's latents are :meth:`encode`'s own)."""
        ds = self.config.downsample
        L = -(-n_frames // ds)
        chunk = max(1, int(chunk) // ds)                                 # latent frames per chunk
        margin = -(-_encoder_reach(self.encoder) // ds) * ds             # mel frames, a multiple of ds
        if L <= chunk:   # one chunk holds it all: the whole-mel encode itself (a file encodes the same everywhere)
            yield self.encode(read(0, n_frames)[None])[0]
            return
        norms = [m for m in self.encoder.modules() if isinstance(m, nn.GroupNorm)]
        stats: dict[int, tuple[float, float]] = {}

        def run(la, lb, stop):
            a0, b0 = la * ds, lb * ds
            s0, s1 = max(0, a0 - margin), min(L * ds, b0 + margin)
            x = read(s0, min(s1, n_frames))[None]
            if s1 > n_frames:   # the replicate padding of :meth:`posterior` to a multiple of ds
                x = F.pad(x, (0, s1 - n_frames), mode="replicate")
            x = self.normalize(x)
            h, rate = _encoder_apply(self.encoder, x, stats, stop)
            return h[..., (a0 - s0) // rate:(b0 - s0) // rate], x[..., a0 - s0:b0 - s0]

        for k, norm in enumerate(norms):
            acc = _Moments()
            for la in range(0, L, chunk):
                acc.add(run(la, min(L, la + chunk), norm)[0])
            stats[id(norm)] = acc.result()
        for la in range(0, L, chunk):
            h, x = run(la, min(L, la + chunk), None)
            mu = h[:, : self.latent_dim]
            if self.config.linear_path:
                mu = mu + self.enc_lin(x)
            yield mu[0]

    # -- decoder ------------------------------------------------------------------------
    def decode_frames(self, zf: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """Mel-rate latents ``(B, D, T)`` -> log-mel ``(B, n_mels, T)``; streamable with ``state``."""
        h = self.dec_in(zf, state)
        for layer in self.dec_layers:
            h = layer(h, state)
        out = self.dec_out(self.dec_act(self.dec_norm(h)), state)
        if self.config.linear_path:
            out = out + self.dec_lin(zf)
        mel = self.denormalize(out)
        # Bound what reaches the vocoder to what audio can have: on latent paths far from
        # training (e.g. some time-stretched trajectories) the decoder can run away.
        return mel.clamp(math.log(self.mel_config.log_floor), self.config.mel_max)

    def decode_step(self, z: torch.Tensor, state: StreamState) -> torch.Tensor:
        """One mel-rate latent frame ``(D,)`` -> log-mel ``(n_mels,)``: :meth:`decode_frames` for a
        single frame of one stream, with the same state and output (the live engine's path)."""
        z = np.ascontiguousarray(z.detach().cpu().numpy(), np.float32)
        return torch.from_numpy(self.decode_step_array(z, state))

    def decode_step_array(self, z: np.ndarray, state: StreamState) -> np.ndarray:
        """:meth:`decode_step` in numpy, the live engine's call: ``z`` ``(D,)`` float32, contiguous."""
        return self._planned()(z, state)

    def _build_frame_plan(self):
        c = self.config
        if self.dec_in.weight.device.type != "cpu":
            dev = self.dec_in.weight.device

            def on_device(z, state):
                with torch.no_grad():
                    return self.decode_frames(torch.from_numpy(z).to(dev)[None, :, None], state)[0, :, 0].cpu().numpy()
            return on_device
        first, middle, after, lin, consts, convs = self.frame_args()
        key_hist = (id(self), "histories")

        def run(z, state):   # z: (D,) float32, contiguous -> (n_mels,) float32
            hs = histories(state.caches, convs, key_hist)
            return decode_frame(z, *first, hs[0], *middle, hs[1:-1], *after, hs[-1], *lin, *consts)
        return run

    def frame_args(self) -> tuple:
        """The constant arguments of the compiled decoder frame, grouped as the kernels take them:
        ``(first, middle, after, lin, consts, convs)`` (``convs``: the convolutions whose histories a stream
        keeps, in kernel order). The single-frame plan and the batched voices (:mod:`.batched`) share them."""
        c = self.config
        arr = lambda t: t.detach().numpy()                   # float32 views of the vectors (biases, norms)
        layers, C, n = list(self.dec_layers), c.channels, len(self.dec_layers)
        ws = self._frame_weights()
        ones, zeros = np.ones(C, np.float32), np.zeros(C, np.float32)
        norm_w = tuple(arr(l.norm.weight) if c.dec_norm else ones for l in layers)
        norm_b = tuple(arr(l.norm.bias) if c.dec_norm else zeros for l in layers)
        last_w, last_b = (arr(self.dec_norm.weight), arr(self.dec_norm.bias)) if c.dec_norm else (ones, zeros)
        eps = np.float32(self.dec_norm.eps if c.dec_norm else 1e-5)
        dilations = tuple(l.conv.dilation[0] for l in layers)
        convs = [self.dec_in] + [l.conv for l in layers] + [self.dec_out]
        consts = (c.dec_kernel, c.dec_norm, c.gelu == "exact", eps, np.float32(c.mel_scale), np.float32(c.mel_offset),
                  np.float32(math.log(self.mel_config.log_floor)), np.float32(c.mel_max))
        first = (ws[0], arr(self.dec_in.bias))
        if c.linear_path:
            lin = (np.ascontiguousarray(arr(self.dec_lin.weight)[:, :, 0]), arr(self.dec_lin.bias))
        else:   # no linear path: a zero matrix (100 x D multiply-adds per frame)
            lin = (np.zeros((self.mel_config.n_mels, c.latent_dim), np.float32),
                   np.zeros(self.mel_config.n_mels, np.float32))
        middle = (norm_w, norm_b, tuple(ws[1:1 + n]), tuple(arr(l.conv.bias) for l in layers))
        after = (dilations, tuple(ws[1 + n:1 + 2 * n]), tuple(arr(l.proj.bias) for l in layers), last_w, last_b,
                 ws[-1], arr(self.dec_out.bias))
        return first, middle, after, lin, consts, convs

    def frame_matrices(self) -> list[torch.Tensor]:
        """The decoder's weight matrices, as the single-frame path reads them (see :class:`FramePlanned`)."""
        layers = list(self.dec_layers)
        return [self.dec_in.weight] + [l.conv.weight for l in layers] + [l.proj.weight for l in layers] + \
            [self.dec_out.weight]

    def decode(self, z: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
        """Latent-rate latents ``(B, D, L)`` -> log-mel ``(B, n_mels, n_frames)`` (default ``L * ds``)."""
        n = n_frames if n_frames is not None else z.shape[-1] * self.config.downsample
        return self.decode_frames(latents_to_frames(z, n, self.config.downsample))

    def forward(self, mel: torch.Tensor):
        mu, logvar = self.posterior(mel)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z, mel.shape[-1]), mu, logvar

    @property
    def linear_path_fitted(self) -> bool:
        return self.config.linear_path and bool(self.enc_lin.weight.detach().abs().sum() > 0)

    @torch.no_grad()
    def set_linear_path(self, frames: torch.Tensor) -> None:
        """Fit the per-frame linear paths to a PCA of normalised log-mel frames ``(N, n_mels)``: the
        encoder's projects a frame onto the ``latent_dim`` directions of most variance, all scaled by
        one number so that the codes' mean variance is the prior's (1), and the decoder's maps those
        coordinates back. Codes keep their order of variance, so the latents' own PCA (the control
        coordinates) still puts the directions that move the sound most first. With the conv paths'
        outputs at zero the model is exactly that PCA; training teaches the conv paths the rest."""
        if not self.config.linear_path:
            raise ConfigError("vae: this model has no linear path")
        mean, evals, evecs = principal_axes(frames)
        v, var = evecs[:, : self.config.latent_dim], evals[: self.config.latent_dim]
        rms = var.clamp(min=0).mean().sqrt().clamp(min=1e-8)
        w_enc = v.T / rms                                   # (D, n_mels)
        self.enc_lin.weight.copy_(w_enc[:, :, None].float())
        self.enc_lin.bias.copy_((-(w_enc @ mean)).float())
        self.dec_lin.weight.copy_((v * rms)[:, :, None].float())
        self.dec_lin.bias.copy_(mean.float())

    # -- PCA coordinates ----------------------------------------------------------------
    def to_pca(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents ``(..., D, L)`` -> PCA coordinates ``(..., D, L)``."""
        return torch.einsum("kd,...dl->...kl", self.pca_components, z - self.pca_mean[:, None])

    def from_pca(self, c: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kd,...kl->...dl", self.pca_components, c) + self.pca_mean[:, None]

    @torch.no_grad()
    def set_pca(self, latents: torch.Tensor) -> None:
        """Fit the PCA from posterior means ``(N, D)`` (frames of the training set)."""
        mean, evals, evecs = principal_axes(latents)
        comps = evecs.T
        # sign convention: largest-magnitude entry of each direction is positive
        sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
        comps = comps * sign
        self.pca_mean.copy_(mean.float())
        self.pca_components.copy_(comps.float())
        self.pca_std.copy_(evals.clamp(min=0).sqrt().float())
