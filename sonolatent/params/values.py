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


def linked_values(address: str, values: tuple, current: Callable[[str], tuple | None]) -> dict[str, tuple]:
    """The stored values a change sets, including the addresses that mirror it.

    ``/sono/latent`` and ``/sono/latent/K`` are two views of the same offsets,
    as are ``/sono/xy`` and ``/sono/xy/x``, ``/sono/xy/y``. Given a change and a
    way to read current values, return every address whose stored value
    changes (the engine can use this to keep its snapshot coherent).
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
    return out
