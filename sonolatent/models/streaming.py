"""Streaming building blocks.

Every layer on the live path (VAE decoder, vocoder) is causal: its output at
frame ``t`` depends on inputs ``<= t`` only. Offline, a layer left-pads with
zeros; streaming, it carries the last ``(kernel-1)*dilation`` input frames in a
:class:`StreamState` between calls. Zeros at the start of a stream equal the
zero padding offline, so chunked output equals offline output exactly (up to
float rounding).

A :class:`StreamState` belongs to one stream (one voice). Create a fresh one
per stream; never share one between threads.

Single frames: the live engine renders one mel frame per call, where tensor
dispatch, not arithmetic, would be the cost. The models run such a frame as one
compiled call (:mod:`.compiled`), which reads and edits each convolution's
history in the same :class:`StreamState` entry as ``forward(x, state)``
(:func:`history_array`), so the two can be mixed call by call and give the same
output (up to float rounding).
"""

from __future__ import annotations

import abc

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from .compiled import ola_frames, overlap_add


GELU_KINDS = {"exact": "none", "tanh": "tanh"}


def check_gelu(config, what: str) -> None:
    if not isinstance(config.gelu, str) or config.gelu not in GELU_KINDS:
        raise ConfigError(f"{what}: gelu must be one of {', '.join(GELU_KINDS)}, got {config.gelu!r}")


def make_gelu(kind: str) -> nn.GELU:
    """GELU, exact (erf) or its tanh approximation. They differ by < 3e-4 per activation; on a
    single frame the tanh form costs about 1 us against 5 us (measured), and a frame has ~25 of them."""
    return nn.GELU(approximate=GELU_KINDS[kind])


class StreamState:
    """Caches of every streaming layer for one stream, keyed by the layer."""

    __slots__ = ("caches",)

    def __init__(self):
        self.caches: dict = {}   # id(layer) -> that layer's history (and what a model's plan keeps beside)

    def get(self, layer: nn.Module):
        return self.caches.get(id(layer))

    def set(self, layer: nn.Module, value) -> None:
        self.caches[id(layer)] = value

    def clear(self) -> None:
        self.caches.clear()


class FramePlanned(nn.Module, metaclass=abc.ABCMeta):
    """A model with a compiled single-frame path whose weights are bound once (``self._frame_plan``).

    The plan reads the weight matrices (:meth:`frame_matrices`) as bfloat16 bit patterns when every one
    of them is exactly a bfloat16 number (checkpoints are saved so, :func:`bfloat16_numbers`): half the
    bytes to read per frame, and the same numbers the chunked path multiplies by. Otherwise it reads
    float32 views of them. ``load_state_dict``, ``.to()``, ``.float()`` and a switch between training and
    evaluation drop the plan and the next single frame builds it again; other in-place edits of the
    weights need :meth:`drop_frame_plan`.
    """

    _frame_plan = None

    def _planned(self):
        """The bound single-frame function, built on first use (rebuilt every call while training,
        where weights are not views one can trust to stay put across optimizer steps)."""
        if self._frame_plan is None or self.training:
            self._frame_plan = self._build_frame_plan()
        return self._frame_plan

    @abc.abstractmethod
    def _build_frame_plan(self):
        """``f(x, state)``: one frame of one stream, with this model's weights bound."""

    @abc.abstractmethod
    def frame_matrices(self) -> list[torch.Tensor]:
        """The weight matrices the single-frame path reads (saved rounded to bfloat16 numbers)."""

    def _frame_weights(self) -> list[np.ndarray]:
        """:meth:`frame_matrices` as the plan reads them, each ``(rows, columns)``: ``uint16`` bfloat16
        bit patterns when all are exactly bfloat16 numbers, else float32 views (in-place updates show)."""
        ts = [t.detach() for t in self.frame_matrices()]
        if all(torch.equal(t, bfloat16_numbers(t)) for t in ts):
            return [t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).reshape(t.shape[0], -1)
                    for t in ts]
        return [t.numpy().reshape(t.shape[0], -1) for t in ts]

    def drop_frame_plan(self) -> None:
        self._frame_plan = None

    def load_state_dict(self, *args, **kwargs):
        self._frame_plan = None
        return super().load_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._frame_plan = None
        return super()._apply(fn, *args, **kwargs)

    def train(self, mode: bool = True):
        self._frame_plan = None
        return super().train(mode)


def bfloat16_numbers(t: torch.Tensor) -> torch.Tensor:
    """``t`` rounded to the nearest bfloat16 numbers, as float32: what ``save_checkpoint`` stores for the
    single-frame matrices (measured on the shipped vocoder: held-out log-mel L1 0.2306 -> 0.2305)."""
    return t.to(torch.bfloat16).float()


class CausalConv1d(nn.Conv1d):
    """1-D convolution over time that never looks ahead (stride 1).

    ``forward(x)`` pads on the left with zeros; ``forward(x, state)`` uses
    and updates the cached history instead. ``x``: ``(B, C_in, T)`` ->
    ``(B, C_out, T)``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=0,
                         dilation=dilation, groups=groups, bias=bias)
        self.history = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        h = self.history
        if state is None:
            if h == 0 and self.groups == 1 and self.kernel_size[0] == 1:
                return self._taps(x)  # 1x1: conv1d would take a slow path on CPU
            return super().forward(F.pad(x, (h, 0)) if h else x)
        if h:
            prev = state.get(self)
            if prev is None:
                prev = x.new_zeros(x.shape[0], x.shape[1], h)
            x = torch.cat([prev, x], dim=-1)
            state.set(self, x[..., -h:])
        return self._taps(x)

    def _taps(self, x: torch.Tensor) -> torch.Tensor:
        """The same convolution as gathered taps and one matmul.

        On CPU, ``conv1d`` with dilation or groups on a few frames is 10-50x slower than
        this (it takes a generic slow path); streaming runs a few frames per call.
        """
        k, d = self.kernel_size[0], self.dilation[0]
        u = x.unfold(2, (k - 1) * d + 1, 1)
        if d > 1:
            u = u[..., ::d]  # (B, C_in, T, k): the k taps of every output frame
        if self.groups == 1:
            B, C, T, _ = u.shape
            out = torch.matmul(self._flat_weight(), u.permute(0, 1, 3, 2).reshape(B, C * k, T))
        elif self.groups == self.in_channels == self.out_channels:
            out = (u * self.weight[:, 0][None, :, None, :]).sum(-1)
        else:
            return F.conv1d(x, self.weight, self.bias, dilation=d, groups=self.groups)
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out

    def _flat_weight(self) -> torch.Tensor:
        """Weight as ``(C_out, C_in * k)``; cached until the weight changes."""
        key = (self.weight._version, self.weight.data_ptr())
        cached = getattr(self, "_flat_cache", None)
        if cached is None or cached[0] != key or self.training:
            w = self.weight.reshape(self.out_channels, -1)
            if self.training:
                return w
            cached = (key, w.detach().contiguous())
            object.__setattr__(self, "_flat_cache", cached)
        return cached[1]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a ``(B, C, T)`` tensor, frame by frame (stateless)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def history_array(caches: dict, conv: CausalConv1d) -> np.ndarray:
    """One stream's history of ``conv``, ``(C_in, h)`` float32, oldest frame first, as a writable array
    that is the very memory kept in the state (``caches``: :attr:`StreamState.caches`). A history the
    chunked path left (a view into its last input) is copied once into a tensor of its own."""
    t = caches.get(id(conv))
    if (t is None or t.dtype != torch.float32 or t.shape[0] != 1 or not t.is_contiguous()
            or t.storage_offset() or t.untyped_storage().nbytes() != 4 * t.numel()):
        t = (torch.zeros(1, conv.in_channels, conv.history) if t is None
             else t[:1].to(torch.float32).clone(memory_format=torch.contiguous_format))
        caches[id(conv)] = t
    return t.numpy()[0]


def histories(caches: dict, convs: list, key) -> tuple:
    """:func:`history_array` of every conv in ``convs``, remembered under ``key`` (the caller's) and
    looked up again only when the chunked path has replaced one of them since."""
    held = caches.get(key)
    if held is None or any(caches.get(id(c)) is not t for c, t in zip(convs, held[0])):
        arrays = tuple(history_array(caches, c) for c in convs)
        held = caches[key] = ([caches[id(c)] for c in convs], arrays)
    return held[1]


def owned_view(caches: dict, key, held, make) -> tuple[torch.Tensor, np.ndarray]:
    """One stream's state tensor ``held`` (``(1, ...)``) as a tensor this stream owns and a writable
    numpy view of it, both kept under ``key``. ``held`` is what the layer's state holds now; when it is
    not the tensor viewed last time (the chunked path replaced it, or there was none), ``make(held)``
    makes one this stream owns (contiguous, its own memory) and that is viewed from then on. The caller
    puts the tensor back in the state where it needs the layer's own entry to hold it."""
    seen = caches.get(key)
    if seen is None or seen[0] is not held:
        t = make(held)
        seen = caches[key] = (t, t.numpy()[0])
    return seen


class OverlapAdd(nn.Module):
    """Windowed inverse real FFT with overlap-add, offline or streaming.

    Input: complex spectra ``(B, n_fft//2+1, T)``; frame ``t`` is centred on
    sample ``t * hop``. Offline (``state is None``) the output is
    ``(B, T * hop)``: samples ``0 .. T*hop``. Streaming, each call returns the
    samples that no later frame can change; after ``T`` frames in total,
    ``T*hop - n_fft//2`` samples have come out, so the layer's delay is
    ``n_fft // 2`` samples. :meth:`flush` returns the held tail so that the
    concatenation equals the offline output.

    The synthesis window is a periodic Hann window, normalised by the constant
    sum of squared windows (hop must divide n_fft by at least 4).
    """

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        if n_fft % hop or n_fft // hop < 4:
            raise ValueError("OverlapAdd needs n_fft = k * hop with k >= 4")
        self.n_fft, self.hop = n_fft, hop
        w = torch.hann_window(n_fft)
        self.register_buffer("window", w / ((w ** 2).sum() / hop), persistent=False)
        self._window_np = None   # (the window tensor, its numpy view) for the live step

    @property
    def delay(self) -> int:
        return self.n_fft // 2

    def _frames(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex spectra ``(B, bins, T)`` -> unwindowed frames ``(B, T, n_fft)``."""
        return torch.fft.irfft(spec.transpose(1, 2), n=self.n_fft, dim=-1)

    def _ola(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, T, n_fft)``, windowed and overlap-added: ``(B, (T - 1) * hop + n_fft)``; compiled
        where no gradient is wanted, else ``F.fold``."""
        B, T, N = frames.shape
        if (torch.is_grad_enabled() and frames.requires_grad) or frames.device.type != "cpu":
            length = (T - 1) * self.hop + N
            return F.fold((frames * self.window).transpose(1, 2), output_size=(1, length), kernel_size=(1, N),
                          stride=(1, self.hop))[:, 0, 0]
        return torch.from_numpy(overlap_add(frames.numpy(), self.window.numpy(), self.hop))

    def forward(self, spec: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        frames = self._frames(spec)
        B, T, _ = frames.shape
        half = self.n_fft // 2
        if state is None:
            y = self._ola(frames)  # covers samples [-half, (T-1)*hop + half)
            return y[:, half: half + T * self.hop]
        if T == 0:
            return frames.new_zeros(B, 0)
        # cache: (pending tail of n_fft - hop samples, samples still to skip at the start)
        tail, skip = state.get(self) or (None, half)
        y = self._ola(frames)
        if tail is not None:
            y[:, : tail.shape[-1]] += tail
        ready = T * self.hop
        state.set(self, (y[:, ready:].clone(), max(0, skip - ready)))
        return y[:, min(skip, ready): ready]

    def step(self, spec: np.ndarray, state: StreamState) -> np.ndarray:
        """:meth:`forward` with a state for the frames of one mel frame of one stream, in numpy (a torch
        call costs more than the transform here): ``spec`` ``(k, n_fft//2+1)`` complex -> the samples that
        became final ``(m,)`` float32. Each frame is added onto the held tail in place."""
        frames = np.fft.irfft(spec, n=self.n_fft, axis=1).astype(np.float32, copy=False)   # (k, n_fft)
        held = state.get(self)
        held_tail, skip = held if held is not None else (None, self.n_fft // 2)
        owned, tail = owned_view(state.caches, (id(self), "tail"), held_tail, lambda t: torch.zeros(
            1, self.n_fft - self.hop) if t is None else t[:1].contiguous().clone())
        out = ola_frames(frames, self._window_array(), tail, self.hop)
        if skip or held_tail is not owned:     # the state's entry changes only while the start is skipped
            ready = len(frames) * self.hop
            state.set(self, (owned, max(0, skip - ready)))
            return out[min(skip, ready):]
        return out

    def _window_array(self) -> np.ndarray:
        if self._window_np is None or self._window_np[0] is not self.window:
            self._window_np = (self.window, np.ascontiguousarray(self.window.detach().cpu().numpy(), np.float32))
        return self._window_np[1]

    def flush(self, state: StreamState) -> torch.Tensor:
        """The samples still held after the last frame, so that the streamed
        output's total length and content equal the offline output's."""
        cached = state.get(self)
        if cached is None:
            return torch.zeros(1, 0)
        tail, skip = cached
        state.set(self, None)
        return tail[:, skip: self.n_fft // 2]
