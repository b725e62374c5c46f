"""Patches (interim format, small on purpose): a TOML file naming slot sounds and parameter values.

    [slots]
    0 = "piano"
    1 = "strings/cello"

    [params]
    "/sono/morph" = 0.25
    "/sono/xy" = [0.2, 0.7]

The patch format is owned by the MIDI/patch work; this reader only turns a
file into slot names and ``(address, values)`` changes for the engine.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path

from ..control.namespace import MAX_SLOTS, Param
from ..errors import ConfigError, SonolatentError

#: Stored parameters never written to a patch (views of other parameters, or read-only).
_DERIVED = ("/sono/xy/x", "/sono/xy/y")


def read_patch(path: str | os.PathLike, namespace: dict[str, Param]) -> tuple[dict[int, str], list[tuple]]:
    """``(slots {index: sample name}, [(address, values)])`` from a patch file."""
    from .core import coerce

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: patch file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the patch ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    unknown = sorted(set(data) - {"slots", "params"})
    if unknown:
        raise ConfigError(f"{p}: unknown section {unknown[0]!r} (expected [slots] and [params])")
    slots: dict[int, str] = {}
    for key, name in (data.get("slots") or {}).items():
        if not (key.isdigit() and int(key) < MAX_SLOTS):
            raise ConfigError(f"{p}: [slots] key {key!r} is not a slot number 0..{MAX_SLOTS - 1}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{p}: [slots] {key} must be a sample name (a string)")
        slots[int(key)] = name
    changes = []
    for address, value in (data.get("params") or {}).items():
        param = namespace.get(address)
        if param is None:
            raise ConfigError(f"{p}: [params] {address!r} is not an address of the daemon")
        if param.action or not param.access & 2:
            raise ConfigError(f"{p}: [params] {address} cannot be set from a patch")
        try:
            changes.append((address, coerce(param, value if isinstance(value, list) else [value])))
        except SonolatentError as e:
            raise ConfigError(f"{p}: [params] {e}") from None
    return slots, changes


def _toml_value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "0.0"
    return str(v)


def patch_text(slot_names: dict[int, str], values: dict[str, tuple], namespace: dict[str, Param],
               last: tuple[str, ...] = ()) -> str:
    """A patch holding ``slot_names`` and every settable stored value (``last`` addresses written last)."""
    lines = ["[slots]"]
    lines += [f"{k} = {_toml_value(n)}" for k, n in sorted(slot_names.items()) if n]
    lines += ["", "[params]"]
    addrs = [a for a, prm in namespace.items()
             if not prm.action and prm.access & 2 and a in values and a not in _DERIVED
             and not (a.startswith("/sono/latent/") and not a.endswith("/scale"))]
    addrs = [a for a in addrs if a not in last] + [a for a in last if a in addrs]
    for a in addrs:
        vals = values[a]
        body = _toml_value(vals[0]) if len(vals) == 1 else "[" + ", ".join(_toml_value(x) for x in vals) + "]"
        lines.append(f'"{a}" = {body}')
    return "\n".join(lines) + "\n"


def resolve_patch(root: str | os.PathLike, name: str) -> Path:
    """``root/name.toml``; refuses names that are paths or lead outside ``root``."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise SonolatentError(f"patch name {name!r}: a plain name is expected (no folders)")
    base = Path(root).resolve()
    p = (base / name).with_suffix(".toml") if not name.endswith(".toml") else base / name
    real = p.resolve()
    if not real.is_relative_to(base):
        raise SonolatentError(f"patch name {name!r}: resolves outside the patch folder")
    return real
