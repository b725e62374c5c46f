"""A lock-free single-producer / single-consumer ring buffer of float32 samples.

The producer thread writes rendered audio, the audio callback reads it. There
is no lock: each side owns one index. ``write`` and ``read`` count samples
since the start (they only grow), so ``write - read`` is the fill level. The
producer copies its samples in and only then advances ``write``; the consumer
copies out and only then advances ``read``. A Python attribute store is atomic
under the GIL and happens after the copy before it, so each side always sees a
consistent view of the other.

The storage is mirrored (every sample is stored at ``i`` and ``i + capacity``)
so that any run of up to ``capacity`` samples starting anywhere is one
contiguous slice: the callback copies out with a single ``outdata[:] = ...``.
"""

from __future__ import annotations

import numpy as np


class SPSCRing:
    """Float32 ring of ``channels``-sample frames; ``capacity`` (frames) is rounded up to a power of two."""

    def __init__(self, capacity: int, channels: int = 1):
        if capacity < 1:
            raise ValueError("ring capacity must be positive")
        cap = 1 << int(capacity - 1).bit_length()
        self.capacity = cap
        self.mask = cap - 1
        # (2*cap, channels): one channel is a column, so that a slice broadcasts over any channel count
        self.buf = np.zeros((2 * cap, channels), np.float32)
        self.write = 0   # advanced by the producer only
        self.read = 0    # advanced by the consumer only

    # -- both sides ---------------------------------------------------------------------
    def fill(self) -> int:
        return self.write - self.read

    # -- producer -----------------------------------------------------------------------
    def space(self) -> int:
        return self.capacity - (self.write - self.read)

    def push(self, x: np.ndarray) -> int:
        """Copy as much of ``x`` (``(n,)`` or ``(n, channels)``) as fits; returns the number of frames written."""
        n = min(len(x), self.space())
        if n <= 0:
            return 0
        s = self.write & self.mask
        col = self.buf[:, 0] if x.ndim == 1 else self.buf
        first = min(n, self.capacity - s)
        col[s:s + first] = x[:first]
        col[s + self.capacity:s + self.capacity + first] = x[:first]
        if n > first:
            rest = n - first
            col[:rest] = x[first:n]
            col[self.capacity:self.capacity + rest] = x[first:n]
        self.write += n
        return n

    # -- consumer (real-time safe: slices of preallocated storage only) ----------------------
    def pop_into(self, out: np.ndarray) -> int:
        """Fill ``out`` (``(frames, channels)``) from the ring; zero what is missing.

        Returns the number of samples that were missing (0 when the ring held
        enough). Allocates nothing but slice views.
        """
        frames = out.shape[0]
        avail = self.write - self.read
        s = self.read & self.mask
        if avail >= frames:
            out[:] = self.buf[s:s + frames]
            self.read += frames
            return 0
        if avail > 0:
            out[:avail] = self.buf[s:s + avail]
            self.read += avail
        else:
            avail = 0
        out[avail:] = 0.0
        return frames - avail
