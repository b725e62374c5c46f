"""Raw OSC arguments -> validated, converted, clamped values for a :class:`Param`.

Pure functions, no sockets, no torch. Every rejection raises
:class:`OscValueError` whose message is the one-line reason answered on
``/sono/error``.

- Numbers: any of the OSC types i h f d T F (python-osc gives ``int`` for i/h,
  ``float`` for f/d, ``True``/``False`` for T/F). NaN and infinities are
  refused; everything else is clamped to the parameter's range (``CLIPMODE``
  "both"); ``i`` parameters round to the nearest integer.
- ``ADDRESS/norm``: the same parameter, each value given as 0..1 over its range.
- Vectors (``/sono/weights``, ``/sono/latent``): exactly as many values as the
  type string has letters, as plain arguments or as one OSC array ``[...]``.
- Strings (names): ``[A-Za-z0-9_.-]{1,64}``, no ``..``: names are never paths.
- Address patterns (``*``, ``?``, ``[a-z]``, ``[!0-9]``, ``{a,b}``) are matched
  one path segment at a time (see :func:`match`).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from ..errors import SonolatentError
from ..params.namespace import NAME_RE, Param
from ..params.values import clamp

NORM_SUFFIX = "/norm"
MAX_PATTERN_LEN = 256
_PATTERN_CHARS = frozenset("*?[]{}")


class OscValueError(SonolatentError):
    """An OSC message whose arguments do not fit the parameter (the message is the reason)."""


# -- addresses ---------------------------------------------------------------

def resolve(namespace: dict[str, Param], address: str) -> tuple[Param, bool] | None:
    """``(param, norm)`` for an exact address or its ``/norm`` form, else ``None``."""
    p = namespace.get(address)
    if p is not None:
        return p, False
    if address.endswith(NORM_SUFFIX):
        p = namespace.get(address[: -len(NORM_SUFFIX)])
        if p is not None and has_norm(p):
            return p, True
    return None


def has_norm(p: Param) -> bool:
    """Whether ``p`` offers an ``ADDRESS/norm`` form (writable numeric parameters that are not actions)."""
    return p.numeric and not p.action and bool(p.access & 2)


def is_pattern(address: str) -> bool:
    return not _PATTERN_CHARS.isdisjoint(address)


def match(namespace: dict[str, Param], pattern: str) -> list[tuple[Param, bool]]:
    """Every ``(param, norm)`` an OSC address pattern names (exact addresses included).

    Matching is per ``/`` segment, so a pattern costs little however many
    wildcards it has. A malformed pattern raises :class:`OscValueError`.
    """
    if not is_pattern(pattern):
        r = resolve(namespace, pattern)
        return [r] if r else []
    if len(pattern) > MAX_PATTERN_LEN:
        raise OscValueError(f"address pattern longer than {MAX_PATTERN_LEN} characters")
    segs = pattern.split("/")
    regexes = [_segment_regex(s) for s in segs]
    out = []
    for p in namespace.values():
        for candidate, norm in ((p.address, False), (p.address + NORM_SUFFIX, True)):
            if norm and not has_norm(p):
                continue
            parts = candidate.split("/")
            if len(parts) == len(regexes) and all(rx.fullmatch(s) for rx, s in zip(regexes, parts)):
                out.append((p, norm))
    return out


class PatternIndex:
    """:func:`match` over a fixed namespace, walking a tree of path segments.

    ``match(pattern) -> (targets, cost)``: the same ``(param, norm)`` pairs as
    :func:`match`, in namespace order, and the work it took (tree nodes looked
    at plus targets found), which the server charges to the sender's budget.
    A literal segment is one dictionary lookup; a wildcard segment looks at
    the children of the nodes reached so far, never at the whole namespace.
    """

    def __init__(self, namespace: dict[str, Param]):
        self.namespace = namespace
        self.root: dict = {}           # segment -> [children, [(order, param, norm)...]]
        order = 0
        for p in namespace.values():
            for candidate, norm in ((p.address, False), (p.address + NORM_SUFFIX, True)):
                if norm and not has_norm(p):
                    continue
                parts = candidate.split("/")[1:]
                node = self.root
                for seg in parts[:-1]:
                    node = node.setdefault(seg, [{}, []])[0]
                node.setdefault(parts[-1], [{}, []])[1].append((order, p, norm))
                order += 1

    def match(self, pattern: str) -> tuple[list[tuple[Param, bool]], int]:
        if not is_pattern(pattern):
            r = resolve(self.namespace, pattern)
            return ([r] if r else []), 1
        if len(pattern) > MAX_PATTERN_LEN:
            raise OscValueError(f"address pattern longer than {MAX_PATTERN_LEN} characters")
        segs = pattern.split("/")
        if segs[0]:
            return [], 1
        segs = segs[1:]
        regexes = [_segment_regex(seg) if is_pattern(seg) else None for seg in segs]
        level = [self.root]
        cost = 0
        found: list = []
        for i, (seg, rx) in enumerate(zip(segs, regexes)):
            reached = []
            for children in level:
                if rx is None:
                    cost += 1
                    e = children.get(seg)
                    if e is not None:
                        reached.append(e)
                else:
                    cost += len(children)
                    reached += [e for key, e in children.items() if rx.fullmatch(key)]
            if i == len(segs) - 1:
                found = sorted(x for e in reached for x in e[1])
            else:
                level = [e[0] for e in reached]
                if not level:
                    break
        return [(p, norm) for _, p, norm in found], cost + len(found)


@lru_cache(maxsize=512)
def _segment_regex(seg: str) -> re.Pattern:
    out = []
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            while i + 1 < n and seg[i + 1] == "*":
                i += 1
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = seg.find("]", i + 1)
            if j < 0:
                raise OscValueError("address pattern has '[' without ']'")
            body = seg[i + 1 : j]
            neg = body.startswith("!")
            if neg:
                body = body[1:]
            if not body:
                raise OscValueError("address pattern has an empty [] set")
            chars = "".join("\\" + ch if ch in "\\^]" else ch for ch in body)
            out.append(("[^" if neg else "[") + chars + "]")
            i = j
        elif c == "{":
            j = seg.find("}", i + 1)
            if j < 0:
                raise OscValueError("address pattern has '{' without '}'")
            out.append("(?:" + "|".join(re.escape(a) for a in seg[i + 1 : j].split(",")) + ")")
            i = j
        elif c in "]}":
            raise OscValueError(f"address pattern has an unmatched '{c}'")
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out))
    except re.error as e:  # e.g. a reversed range [z-a]
        raise OscValueError(f"bad address pattern: {e}") from None


# -- values ------------------------------------------------------------------

def validate_name(s) -> str:
    """A sample/patch name: ``[A-Za-z0-9_.-]{1,64}``, no ``..`` (never a path)."""
    if not isinstance(s, str):
        raise OscValueError(f"expects a name (string), got {_kind(s)}")
    if not NAME_RE.fullmatch(s):
        raise OscValueError("a name is 1-64 characters of A-Z a-z 0-9 _ . - (no slashes, no spaces)")
    if ".." in s or s in (".",):
        raise OscValueError("a name may not contain '..'")
    return s


def _kind(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (bytes, bytearray)):
        return "a blob"
    if isinstance(v, list):
        return "an array"
    if v is None:
        return "nil"
    return "an unsupported type"


def number(v, what: str = "value") -> float:
    """An OSC numeric argument (i h f d T F) as a finite float."""
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int):
        return float(v)  # h can be up to 2**63: float() keeps its magnitude
    if isinstance(v, float):
        if math.isnan(v):
            raise OscValueError(f"{what} is NaN")
        if math.isinf(v):
            raise OscValueError(f"{what} is infinite")
        return v
    raise OscValueError(f"{what} must be a number (i h f d T F), got {_kind(v)}")


def _flatten(args) -> list:
    """Plain arguments, or a single OSC array standing for them."""
    args = list(args)
    if len(args) == 1 and isinstance(args[0], list):
        args = args[0]
    return args


def convert(p: Param, args, norm: bool = False) -> tuple:
    """Validated value tuple for ``p`` from raw OSC ``args`` (``norm``: args are 0..1 over the range).

    Empty ``args`` on an action give its default (``()`` for bare actions);
    empty args on a stored parameter are a query, handled by the caller.
    """
    args = _flatten(args)
    n = len(p.types)
    if not args:
        if p.action:
            if n and not p.default:
                raise OscValueError(f"expects {_describe(p)}")
            return tuple(p.default)
        raise OscValueError(f"expects {_describe(p)}")
    if n == 0:
        raise OscValueError(f"takes no arguments, got {len(args)}")
    if len(args) != n:
        raise OscValueError(f"expects {_describe(p)}, got {len(args)} value{'s' if len(args) != 1 else ''}")
    out = []
    for k, (t, v) in enumerate(zip(p.types, args)):
        what = "value" if n == 1 else f"value {k}"
        if t == "s":
            s = validate_name(v)
            if p.values and s not in p.values:
                raise OscValueError(f"{what} must be one of {', '.join(map(str, p.values))}")
            out.append(s)
            continue
        x = number(v, what)
        if norm:
            lo, hi = p.min[k], p.max[k]
            x = lo + min(max(x, 0.0), 1.0) * (hi - lo)
        x = clamp(p, k, x)
        if t == "i":
            if p.values and x not in p.values:
                raise OscValueError(f"{what} must be one of {', '.join(map(str, p.values))}")
        out.append(x)
    return tuple(out)


def to_norm(p: Param, values: tuple) -> tuple:
    """``values`` of ``p`` as 0..1 over its range (for answering ``/norm`` queries)."""
    out = []
    for k, v in enumerate(values):
        lo, hi = p.min[k], p.max[k]
        out.append(0.0 if hi == lo else min(max((float(v) - lo) / (hi - lo), 0.0), 1.0))
    return tuple(out)


def _describe(p: Param) -> str:
    if not p.types:
        return "no arguments"
    if all(t == "s" for t in p.types):
        return "a name" if len(p.types) == 1 else f"{len(p.types)} names"
    if len(p.types) == 1:
        lo, hi = p.min[0], p.max[0]
        return f"one number ({lo:g}..{hi:g})"
    return f"{len(p.types)} numbers"
