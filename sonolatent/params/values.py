"""Values of the namespace's parameters: checking them, their defaults, and what one change derives.

A value is checked once, where it enters: OSC arguments by the control surface
(:func:`sonolatent.control.convert.convert`, which parses the wire forms and
clamps with :func:`clamp`), a patch file's ``[params]`` and a performance log's
changes by :func:`coerce`. The engine applies checked values as given.
"""

from __future__ import annotations

import math
from typing import Callable

from ..errors import SonolatentError
from .namespace import Param


def clamp(param: Param, k: int, x: float) -> int | float:
    """Finite number ``x`` for value ``k`` of ``param``: clamped to its range; ``i`` values round half up."""
    if param.min:
        x = min(max(x, param.min[k]), param.max[k])
    if param.types[k] == "i":
        return int(math.floor(x + 0.5))
    return float(x)


def coerce(param: Param, values) -> tuple:
    """Check and clamp ``values`` (a value or a list/tuple of them) for ``param``; one-line error otherwise."""
    if not isinstance(values, (list, tuple)):
        values = (values,)
    values = tuple(values)
    if param.action and not param.types:
        return ()
    if param.action and not values and param.default:
        return tuple(param.default)
    if len(values) != len(param.types):
        raise SonolatentError(f"{param.address}: expects {len(param.types)} value(s), got {len(values)}")
    out = []
    for i, (t, v) in enumerate(zip(param.types, values)):
        if t == "s":
            if not isinstance(v, str):
                raise SonolatentError(f"{param.address}: value {i + 1} must be a string")
            out.append(v)
            continue
        if isinstance(v, bool):
            v = float(v)
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise SonolatentError(f"{param.address}: value {i + 1} must be a finite number, got {v!r}")
        out.append(clamp(param, i, v))
    return tuple(out)


def initial_values(namespace: dict[str, Param]) -> dict[str, tuple]:
    """Default value of every parameter that stores one (actions excluded; strings start as "")."""
    out = {}
    for a, p in namespace.items():
        if p.action:
            continue
        if p.types and all(t == "s" for t in p.types):
            out[a] = p.default or ("",) * len(p.types)
        else:
            out[a] = tuple(p.default)
    return out


#: The addresses that set the blend of the slots, and which of the three ways they belong to.
BLEND_SOURCES = {"/sono/morph": "morph", "/sono/morph/pair": "morph", "/sono/xy": "xy", "/sono/xy/x": "xy",
                 "/sono/xy/y": "xy", "/sono/weights": "weights"}
_BLEND_READS = {"morph": ("/sono/morph/pair", "/sono/morph"), "xy": ("/sono/xy",), "weights": ("/sono/weights",)}


def blend_weights(kind: str, get: Callable[[str], tuple | None], n_slots: int) -> tuple:
    """The weights in effect (summing to 1, or all 0) when the blend is set by ``kind``
    (``"morph"``, ``"xy"`` or ``"weights"``) with the values ``get`` reads."""
    w = [0.0] * n_slots
    if kind == "morph":
        a, b = get("/sono/morph/pair")
        m = get("/sono/morph")[0]
        w[a] += 1.0 - m
        w[b] += m
    elif kind == "xy":
        x, y = get("/sono/xy")
        w[:4] = ((1 - x) * (1 - y), x * (1 - y), (1 - x) * y, x * y)
        w = w[:n_slots]
    else:
        w = [float(v) for v in get("/sono/weights")]
        s = sum(w)
        w = [v / s for v in w] if s > 0 else w
    return tuple(float(v) for v in w)


def linked_values(address: str, values: tuple, current: Callable[[str], tuple | None]) -> dict[str, tuple]:
    """The stored values a change sets, including the addresses that mirror it or derive from it.

    ``/sono/latent`` and ``/sono/latent/K`` are two views of the same offsets,
    as are ``/sono/xy`` and ``/sono/xy/x``, ``/sono/xy/y``. ``/sono/weights``
    holds the blend in effect: after ``/sono/morph``, ``/sono/morph/pair`` or
    ``/sono/xy`` it is the weights they make, after ``/sono/weights`` the sent
    weights normalised to sum 1 (``/sono/morph`` and ``/sono/xy`` keep the
    values last sent to them). Given a change and a way to read current
    values, return every address whose stored value changes (the engine and
    the control surface's ``RecordingTarget`` apply this to keep their snapshot coherent).
    """
    out = {address: values}
    if address == "/sono/latent":
        for k, v in enumerate(values):
            out[f"/sono/latent/{k}"] = (v,)
    elif address.startswith("/sono/latent/") and address.count("/") == 3:
        vec = current("/sono/latent")
        k = int(address.rsplit("/", 1)[1])
        if vec is not None and k < len(vec):
            vec = list(vec)
            vec[k] = values[0]
            out["/sono/latent"] = tuple(vec)
    elif address == "/sono/xy":
        out["/sono/xy/x"] = (values[0],)
        out["/sono/xy/y"] = (values[1],)
    elif address in ("/sono/xy/x", "/sono/xy/y"):
        xy = current("/sono/xy") or (0.0, 0.0)
        out["/sono/xy"] = (values[0], xy[1]) if address.endswith("x") else (xy[0], values[0])
    kind = BLEND_SOURCES.get(address)
    have = current("/sono/weights")
    if kind is not None and have is not None:
        def get(a):
            v = out.get(a)
            return v if v is not None else current(a)
        if all(get(a) is not None for a in _BLEND_READS[kind]):
            out["/sono/weights"] = blend_weights(kind, get, len(have))
    return out
