"""Morph curves: time ``t`` in 0..1 (fraction of the morph) -> blend in 0..1.

A curve is any callable taking a numpy array of positions and returning an
array of blends of the same shape (0 = all the first sound, 1 = all the
second). Built in: ``linear``, ``ease`` (smoothstep, 3t^2 - 2t^3), ``hold``
(0 before the middle, 1 from the middle on) and :class:`Keyframes`
(piecewise-linear through ``time:value`` points, held flat outside them).

Pure numpy, no torch: the live engine can use these as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import SonolatentError

Curve = Callable[[np.ndarray], np.ndarray]


def linear(t) -> np.ndarray:
    return np.clip(np.asarray(t, np.float64), 0.0, 1.0)


def ease(t) -> np.ndarray:
    """Smoothstep: flat at both ends, 0.5 in the middle."""
    x = linear(t)
    return x * x * (3.0 - 2.0 * x)


def hold(t) -> np.ndarray:
    """A step at the middle: the first sound until t = 0.5, the second from there on."""
    return (np.asarray(t, np.float64) >= 0.5).astype(np.float64)


CURVES: dict[str, Curve] = {"linear": linear, "ease": ease, "hold": hold}


def get_curve(name: str, option: str = "--curve") -> Curve:
    """Look a built-in curve up by name; an unknown name is a one-line :class:`SonolatentError`."""
    try:
        return CURVES[name]
    except KeyError:
        raise SonolatentError(f"{option}: unknown curve {name!r} (choose from {', '.join(CURVES)})") from None


@dataclass(frozen=True)
class Keyframes:
    """Piecewise-linear curve through ``(time, value)`` points; times increase, all in 0..1."""

    times: tuple[float, ...]
    values: tuple[float, ...]

    def __call__(self, t) -> np.ndarray:
        return np.interp(np.asarray(t, np.float64), self.times, self.values)

    def __str__(self) -> str:
        return ",".join(f"{t:g}:{v:g}" for t, v in zip(self.times, self.values))


def parse_keyframes(text: str, option: str = "--keyframes", *, value_range=(0.0, 1.0)) -> Keyframes:
    """Parse ``"0:0,0.5:0.8,1:1"`` into :class:`Keyframes`.

    Every problem (an item that is not ``time:value``, a number that does not
    parse, a time outside 0..1, times that do not increase, a value outside
    ``value_range``) raises one :class:`SonolatentError` line naming ``option``.
    """
    example = "e.g. 0:0,0.5:0.8,1:1"
    items = [s.strip() for s in str(text).split(",")]
    if not any(items):
        raise SonolatentError(f"{option}: no keyframes given ({example})")
    times, values = [], []
    lo, hi = value_range
    for item in items:
        if not item:
            raise SonolatentError(f"{option}: empty item in {text!r} ({example})")
        parts = item.split(":")
        if len(parts) != 2:
            raise SonolatentError(f"{option}: {item!r} is not time:value ({example})")
        try:
            t, v = float(parts[0]), float(parts[1])
        except ValueError:
            raise SonolatentError(f"{option}: {item!r} is not time:value with two numbers ({example})") from None
        if not (np.isfinite(t) and np.isfinite(v)):
            raise SonolatentError(f"{option}: {item!r} is not a finite number pair")
        if not 0.0 <= t <= 1.0:
            raise SonolatentError(f"{option}: time {t:g} in {item!r} is outside 0..1 (times are fractions of the duration)")
        if not lo <= v <= hi:
            raise SonolatentError(f"{option}: value {v:g} in {item!r} is outside {lo:g}..{hi:g}")
        if times and t <= times[-1]:
            raise SonolatentError(f"{option}: times must increase ({t:g} comes after {times[-1]:g})")
        times.append(t)
        values.append(v)
    return Keyframes(tuple(times), tuple(values))


def constant(value: float) -> Curve:
    """A curve that stays at ``value`` (the ``--at`` blend)."""
    v = float(value)
    return lambda t: np.full(np.shape(t), v, np.float64)


def curve_positions(n: int) -> np.ndarray:
    """``n`` evenly spaced morph positions from 0 to 1 inclusive (one per output frame)."""
    if n <= 1:
        return np.zeros(max(n, 0), np.float64)
    return np.linspace(0.0, 1.0, n)
