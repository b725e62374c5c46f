"""The one smoother of the engine's controls: a one-pole step per frame towards a target."""

from __future__ import annotations

import numpy as np

#: Smoothed values closer than this to their target snap to it.
SNAP = 1e-7


class Smoothed:
    """A one-pole smoothed vector; ``step(a)`` moves ``value`` towards ``target`` by ``1 - a``."""

    def __init__(self, value):
        self.value = np.array(value, np.float64, ndmin=1)
        self.target = self.value.copy()

    def set(self, target) -> None:
        self.target[:] = target

    def step(self, a: float) -> None:
        self.value += (1.0 - a) * (self.target - self.value)
        close = np.abs(self.target - self.value) < SNAP
        self.value[close] = self.target[close]
