"""Neural vocoder: log-mel -> waveform (Vocos-style, causal, streamable).

A causal ConvNeXt backbone runs at the mel frame rate; an inverse-STFT head
predicts ``upsample`` short-time spectra (magnitude and phase) per mel frame
and overlap-adds them. With ``mel_prior`` the predicted log-magnitude is a
correction to the mel's own envelope mapped back onto the STFT bins (a fixed
matrix), so the network spends its width on harmonic detail and phase rather
than on re-deriving the envelope. Nothing looks ahead, so the only delay is the
overlap-add's ``istft_n_fft // 2`` samples.

A network that sees only the local mel is the same function at every frame, so
on a steady input it makes the same spectrum, phase included, at every frame:
its output repeats every mel hop, and every steady partial is pulled onto the
grid of multiples of ``sample_rate / hop_length`` (86 Hz here: a 440 Hz tone
comes out at 431 Hz). With ``phase_carry`` the phase runs on from frame to
frame like a phase vocoder's: each bin belongs to its nearest spectral peak of
the magnitude about to be synthesised (placed between bins by a parabola
through the log-magnitudes); the peak's phase is the last frame's phase at that
bin advanced at the peak's frequency, and the bins around it keep a Hann
window's phase pattern about it (identity phase locking). A learned gate per
bin and mel frame, starting half open, mixes that carried phase with the
network's own (for attacks and noise). It is a recurrence over frames, carried
in the stream state.

Shapes: ``forward(mel)``: ``(B, n_mels, T)`` -> ``(B, T * hop_length)``.
Streaming: ``stream(mel_chunk, state)`` returns the samples that are final;
``flush(state)`` the rest. Concatenated they equal ``forward(mel)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from ..audio.mel import MelConfig, check_positive, config_from_dict, mel_envelope_matrix, mel_filterbank
from ..errors import ConfigError
from .compiled import EMPTY_BAND, SparsePrior, carry_frames, vocoder_features, vocoder_spectra
from .streaming import (CausalConv1d, ChannelLayerNorm, FramePlanned, OverlapAdd, StreamState, check_gelu,
                        histories, make_gelu, owned_view)


@dataclass(frozen=True)
class VocoderConfig:
    dim: int = 192
    mlp_ratio: float = 3.0
    n_layers: int = 8
    kernel_size: int = 7
    upsample: int = 2          # inverse-STFT frames per mel frame
    istft_n_fft: int = 1024    # must be >= 4 * (hop_length / upsample)
    input_offset: float = -5.0  # log-mel is shifted and scaled before the first layer
    input_scale: float = 2.5
    mel_prior: bool = True      # log-magnitude = mel envelope (fixed map) + the network's correction
    gelu: str = "tanh"          # "tanh" (its approximation: 5x cheaper per frame live) or "exact" (erf)
    prior_iters: int = 0        # refine the mel prior so that its own mel (the same bands on the synthesis STFT's
    #                             bins) matches the input: multiplicative non-negative least-squares steps
    phase_carry: bool = False   # each bin may carry its phase on from the last frame at its peak's frequency

    def __post_init__(self):
        check_positive(self, "vocoder", ("dim", "mlp_ratio", "n_layers", "kernel_size", "upsample", "istft_n_fft",
                                         "input_scale"))
        check_gelu(self, "vocoder")
        if self.prior_iters < 0:
            raise ConfigError(f"vocoder: prior_iters must be 0 or more, got {self.prior_iters}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "VocoderConfig":
        return config_from_dict(cls, d, "vocoder")


def _batch(items: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` along a new first axis, without copying a lone item (offline renders are one clip)."""
    return items[0][None] if len(items) == 1 else torch.stack(items)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel_size: int, layer_scale: float, gelu: str = "tanh"):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, hidden)
        self.act = make_gelu(gelu)
        self.pw2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        h = self.dwconv(x, state).transpose(1, 2)
        h = self.pw2(self.act(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class Vocoder(FramePlanned):
    kind = "vocoder"

    def __init__(self, mel_config: MelConfig, config: VocoderConfig = VocoderConfig()):
        super().__init__()
        self.mel_config, self.config = mel_config, config
        hop = mel_config.hop_length
        if hop % config.upsample:
            raise ConfigError(f"vocoder: upsample {config.upsample} must divide the mel hop {hop}")
        self.istft_hop = hop // config.upsample
        if config.istft_n_fft % self.istft_hop or config.istft_n_fft < 4 * self.istft_hop:
            raise ConfigError("vocoder: istft_n_fft must be a multiple of hop/upsample and at least 4 times it")
        d = config.dim
        self.embed = CausalConv1d(mel_config.n_mels, d, config.kernel_size)
        self.norm_in = ChannelLayerNorm(d)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(d, int(d * config.mlp_ratio), config.kernel_size, 1.0 / config.n_layers, config.gelu)
            for _ in range(config.n_layers)
        )
        self.norm_out = nn.LayerNorm(d)
        self.n_bins = config.istft_n_fft // 2 + 1
        self.head = nn.Linear(d, 2 * self.n_bins * config.upsample)
        self.ola = OverlapAdd(config.istft_n_fft, self.istft_hop)
        if config.mel_prior:   # fixed (derived from the mel definition), so not part of the weights
            env = torch.from_numpy(mel_envelope_matrix(mel_config, config.istft_n_fft))
            self.register_buffer("envelope", env, persistent=False)
        if config.prior_iters:
            if not config.mel_prior:
                raise ConfigError("vocoder: prior_iters needs mel_prior")
            fb = torch.from_numpy(mel_filterbank(mel_config, config.istft_n_fft))
            self.register_buffer("filterbank", fb, persistent=False)            # (n_mels, bins)
            self.register_buffer("filterbank_t", fb.T.contiguous(), persistent=False)
            # The mel was taken with the mel's own n_fft; the same bands over an r times shorter STFT's bins see
            # r times the magnitude of a steady tone but r**1.5 that of noise. The target sits between the two
            # (r**1.25); what a given sound needs beyond that is the network's correction.
            self.prior_target_scale = (config.istft_n_fft / mel_config.n_fft) ** 1.25
        if config.mel_prior:   # the same prior, sparse and compiled: every path that needs no gradient
            self.sparse_prior = SparsePrior(
                self.envelope.numpy(), self.filterbank.numpy() if config.prior_iters else None,
                getattr(self, "prior_target_scale", 1.0), config.prior_iters, mel_config.log_floor)
        if config.phase_carry:   # the gate's logit per mel frame and bin; it starts half open everywhere
            self.carry = nn.Linear(d, self.n_bins)
            with torch.no_grad():
                self.carry.weight.zero_()
                self.carry.bias.fill_(self.GATE_START)
            self.register_buffer("bins", torch.arange(self.n_bins), persistent=False)
            self.radians_per_bin = 2 * torch.pi * self.istft_hop / config.istft_n_fft   # phase advance per hop
            self.hops_per_frame = config.istft_n_fft // self.istft_hop   # a bin advances k * 2 pi / this per hop

    GATE_START = 0.0   # sigmoid(0) = 0.5: where the gate moves fastest

    @property
    def delay(self) -> int:
        """Samples by which the streamed output lags its input frames."""
        return self.ola.delay

    def spectra(self, mel: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        """``(B, n_mels, T)`` -> complex spectra ``(B, n_bins, T * upsample)``."""
        c = self.config
        x = (mel - c.input_offset) / c.input_scale
        x = self.norm_in(self.embed(x, state))
        for blk in self.blocks:
            x = blk(x, state)
        feats = self.norm_out(x.transpose(1, 2))
        h = self.head(feats)  # (B, T, 2*bins*up)
        B, T, _ = h.shape
        h = h.reshape(B, T * c.upsample, 2, self.n_bins)
        logmag, phase = h[:, :, 0], h[:, :, 1]
        if c.mel_prior:   # the network only corrects the mel's own spectral envelope
            prior = self._log_prior(mel)
            logmag = logmag + torch.repeat_interleave(prior, c.upsample, dim=1)
        logmag = torch.clamp(logmag, max=6.0)
        mag = torch.exp(logmag)
        if c.phase_carry:
            return self._carry_phase(logmag, mag, phase, torch.sigmoid(self.carry(feats)), state).transpose(1, 2)
        spec = torch.polar(mag, phase)  # (B, T*up, bins)
        return spec.transpose(1, 2)

    def _peak_advance(self, logmag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For every bin ``(..., bins)``: the bin of its nearest local maximum of ``logmag`` along the bins,
        and that peak's phase advance per synthesis hop, at its frequency between bins by a parabola
        through the peak and its two neighbours (on a Hann window's log-magnitude, within 0.02 bin of a
        lone tone)."""
        k = self.bins
        a = torch.cat([logmag[..., :1], logmag[..., :-1]], -1)
        c = torch.cat([logmag[..., 1:], logmag[..., -1:]], -1)
        curve = (a - 2 * logmag + c).clamp(max=-1e-6)
        shift = (0.5 * (a - c) / curve).clamp(-0.5, 0.5)
        peak = (logmag >= a) & (logmag > c)
        far = self.n_bins * 4
        last = torch.cummax(torch.where(peak, k, -far), -1).values
        nxt = -torch.cummax(torch.where(peak, -k, -far).flip(-1), -1).values.flip(-1)
        own = torch.where(k - last <= nxt - k, last, nxt).clamp(0, self.n_bins - 1)
        # whole turns dropped before scaling, so the angle stays small and exact in float32
        return own, (torch.remainder(own, self.hops_per_frame) + torch.gather(shift, -1, own)) * self.radians_per_bin

    def _locked(self, prev: torch.Tensor, peak: torch.Tensor, turn: torch.Tensor) -> torch.Tensor:
        """Unit phasors of one synthesis frame: each bin's peak carries on from ``prev`` (the last frame's
        phasors) by ``turn``; a Hann window alternates the phase from bin to bin about its peak."""
        sign = 1.0 - 2.0 * torch.remainder(self.bins - peak, 2).to(turn.real.dtype)
        return torch.gather(prev, -1, peak) * turn * sign

    def _carry_phase(self, logmag: torch.Tensor, mag: torch.Tensor, phase: torch.Tensor, gate: torch.Tensor,
                     state: StreamState | None) -> torch.Tensor:
        """Spectra ``(B, T*up, bins)``: ``mag`` on unit phasors; per synthesis frame, ``gate`` (``(B, T, bins)``,
        per mel frame) mixes the network's own phase with the phase carried on from the last frame
        (:meth:`_locked`)."""
        up = self.config.upsample
        prev = state.get(self.carry) if state is not None else None
        traced = torch.is_grad_enabled() and (logmag.requires_grad or phase.requires_grad or gate.requires_grad)
        if not traced and logmag.device.type == "cpu":
            return self._carry_compiled(logmag, mag, phase, gate, prev, state)    # the same arithmetic, compiled
        own = torch.polar(torch.ones_like(phase), phase)                              # (B, T*up, bins)
        peak, advance = self._peak_advance(logmag.detach())
        turn = torch.polar(torch.ones_like(advance), advance)
        if prev is None:
            prev = own.new_ones(own.shape[0], self.n_bins)
        out = []
        for t in range(own.shape[1]):
            o, g = own[:, t], gate[:, t // up]
            mix = o + g * (self._locked(prev, peak[:, t], turn[:, t]) - o)
            prev = mix / mix.abs().clamp(min=1e-6)
            out.append(prev)
        if state is not None and out:
            state.set(self.carry, prev)
        return mag * torch.stack(out, 1) if out else mag * own

    def _carry_compiled(self, logmag: torch.Tensor, mag: torch.Tensor, phase: torch.Tensor, gate: torch.Tensor,
                        prev: torch.Tensor | None, state: StreamState | None) -> torch.Tensor:
        specs, lasts = [], []
        for b in range(logmag.shape[0]):
            spec, last = carry_frames(logmag[b].numpy(), phase[b].numpy(), gate[b].numpy(),
                                      None if prev is None else prev[b].numpy(), self.config.upsample,
                                      self.hops_per_frame, self.radians_per_bin, mag[b].numpy())
            specs.append(torch.from_numpy(spec))
            lasts.append(torch.from_numpy(last))
        if state is not None and logmag.shape[1]:
            state.set(self.carry, _batch(lasts))
        return _batch(specs)

    def _log_prior(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, n_mels, T)`` -> the log prior ``(B, T, bins)``: compiled and sparse where no gradient
        is wanted (the numbers of the live path, :meth:`_build_frame_plan`), dense torch otherwise."""
        if (torch.is_grad_enabled() and mel.requires_grad) or mel.device.type != "cpu":
            return torch.log(self._prior(torch.exp(mel)).clamp(min=self.mel_config.log_floor)).transpose(1, 2)
        e = torch.exp(mel).transpose(1, 2).numpy()
        return _batch([torch.from_numpy(self.sparse_prior.frames(e[b])) for b in range(e.shape[0])])

    def _prior(self, e: torch.Tensor) -> torch.Tensor:
        """Linear mel ``(..., n_mels[, T])`` -> magnitude prior on the STFT bins ``(..., bins[, T])``.

        The envelope map spreads each band over its bins; ``prior_iters`` multiplicative
        updates (NNLS for ``filterbank @ s = e``, s >= 0, with the bands laid on the synthesis
        STFT's bins) then move it towards a spectrum whose own mel is the input, sharpening
        what the map blurs across neighbouring bands.
        """
        s = torch.matmul(self.envelope, e)
        if self.config.prior_iters:
            target = torch.matmul(self.filterbank_t, e * self.prior_target_scale)
            for _ in range(self.config.prior_iters):
                s = s * target / torch.matmul(self.filterbank_t, torch.matmul(self.filterbank, s)).clamp(min=1e-9)
        return s

    def step_spectra(self, mel: torch.Tensor, state: StreamState) -> torch.Tensor:
        """:meth:`spectra` for one frame ``(n_mels,)`` of one stream -> ``(n_bins, upsample)``."""
        return torch.from_numpy(self._planned()(np.ascontiguousarray(mel.detach().cpu().numpy(), np.float32), state)).T

    def _build_frame_plan(self):
        c = self.config
        if self.head.weight.device.type != "cpu":
            dev = self.head.weight.device

            def on_device(m, state):
                with torch.no_grad():
                    return self.spectra(torch.from_numpy(m).to(dev)[None, :, None], state)[0].T.cpu().numpy()
            return on_device
        embed, after_embed, rest, head, prior, carry, per, rad, convs = self.frame_args()
        key_hist = (id(self), "histories")
        key, start = id(self.carry) if c.phase_carry else None, np.ones(self.n_bins, np.complex64)
        key_view = (key, "view")

        def run(m, state):   # m: (n_mels,) float32, contiguous -> (upsample, bins) complex64
            hs = histories(state.caches, convs, key_hist)
            f = vocoder_features(m, *embed, hs[0], *after_embed, hs[1:], *rest)
            if key is None:
                return vocoder_spectra(f, m, *head, *prior, *carry, start, per, rad)[0]
            held = state.caches.get(key)
            owned, prev = owned_view(state.caches, key_view, held, lambda t: torch.from_numpy(start.copy())[None]
                                     if t is None else t[:1].contiguous().clone())
            spec, last = vocoder_spectra(f, m, *head, *prior, *carry, prev, per, rad)
            prev[:] = last
            if held is not owned:
                state.caches[key] = owned
            return spec
        return run

    def frame_args(self) -> tuple:
        """The constant arguments of the compiled vocoder frame, grouped as the kernels take them:
        ``(embed, after_embed, rest, head, prior, carry, per, rad, convs)`` (``convs``: the convolutions whose
        histories a stream keeps). The single-frame plan and the batched voices (:mod:`.batched`) share them."""
        c = self.config
        arr = lambda t: t.detach().numpy()                   # float32 views of the vectors (biases, norms)
        blocks, d = list(self.blocks), c.dim
        eps = {m.eps for m in [self.norm_in, self.norm_out] + [b.norm for b in blocks]}
        if len(eps) != 1:
            raise ConfigError("vocoder: the single-frame path needs one LayerNorm eps throughout")
        exact, eps = c.gelu == "exact", np.float32(eps.pop())
        ws, n = self._frame_weights(), len(blocks)
        embed = (np.float32(c.input_offset), np.float32(c.input_scale), ws[0], arr(self.embed.bias))
        each = lambda get: tuple(get(b) for b in blocks)
        after_embed = (c.kernel_size, arr(self.norm_in.weight), arr(self.norm_in.bias),
                       each(lambda b: arr(b.dwconv.weight).reshape(d, -1)), each(lambda b: arr(b.dwconv.bias)))
        rest = (each(lambda b: arr(b.norm.weight)), each(lambda b: arr(b.norm.bias)), tuple(ws[1:1 + n]),
                each(lambda b: arr(b.pw1.bias)), tuple(ws[1 + n:1 + 2 * n]), each(lambda b: arr(b.pw2.bias)),
                each(lambda b: arr(b.gamma)), arr(self.norm_out.weight), arr(self.norm_out.bias), exact, eps)
        if c.mel_prior:
            p = self.sparse_prior
            prior = (True, p.env, p.fb, p.scale, p.iters, p.floor)
        else:
            prior = (False, EMPTY_BAND, EMPTY_BAND, np.float32(1.0), 0, np.float32(1.0))
        if c.phase_carry:
            carry = (True, ws[-1], arr(self.carry.bias))
            per, rad = self.hops_per_frame, self.radians_per_bin
        else:
            carry, per, rad = (False, np.zeros((1, d), ws[0].dtype), np.zeros(1, np.float32)), 1, 0.0
        head = (ws[1 + 2 * n], arr(self.head.bias), c.upsample)
        convs = [self.embed] + [b.dwconv for b in blocks]
        return embed, after_embed, rest, head, prior, carry, per, rad, convs

    def frame_matrices(self) -> list[torch.Tensor]:
        """The weight matrices the single-frame path reads (see :class:`FramePlanned`)."""
        blocks = list(self.blocks)
        return [self.embed.weight] + [b.pw1.weight for b in blocks] + [b.pw2.weight for b in blocks] + \
            [self.head.weight] + ([self.carry.weight] if self.config.phase_carry else [])

    def step(self, mel: torch.Tensor, state: StreamState) -> torch.Tensor:
        """:meth:`stream` for one frame ``(n_mels,)`` of one stream -> ``(m,)`` samples."""
        return torch.from_numpy(self.step_array(np.ascontiguousarray(mel.detach().cpu().numpy(), np.float32), state))

    def step_array(self, mel: np.ndarray, state: StreamState) -> np.ndarray:
        """:meth:`step` in numpy, the live engine's call: ``mel`` ``(n_mels,)`` float32, contiguous."""
        return self.ola.step(self._planned()(mel, state), state)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.ola(self.spectra(mel))

    def stream(self, mel: torch.Tensor, state: StreamState) -> torch.Tensor:
        return self.ola(self.spectra(mel, state), state)

    def flush(self, state: StreamState) -> torch.Tensor:
        return self.ola.flush(state)
