"""Patches: a TOML file that recalls a whole setup (sounds, every parameter, play, MIDI mapping).

    [patch]
    name = "morph_modwheel"
    description = "Piano to strings on the mod wheel; keys play and transpose"
    checkpoint = "checkpoints/default"   # the model it was made with (repo root or this file's folder)

    [slots]                              # sample names in the sample folder (names, never paths)
    0 = "piano_c4"
    1 = "strings_c4"

    [params]                             # every settable parameter, applied in this order
    "/sono/gain" = 0.8
    "/sono/morph/pair" = [0, 1]
    "/sono/morph" = 0.0

    [play]
    autoplay = false                     # true: /sono/play velocity once the patch is loaded
    velocity = 1.0

    [midi]
    map = "midi/modwheel_morph.toml"     # the mapping that goes with it (relative to this file)

Every section is optional (a file with only ``[slots]`` and ``[params]`` is
a patch). Every key is checked; a mistake
is one :class:`~sonolatent.errors.ConfigError` line ``FILE:LINE: [section]
key 'KEY': problem``.

- ``[params]`` are applied in file order, in one block; the last of
  ``/sono/morph`` (or ``/sono/morph/pair``), ``/sono/xy`` and
  ``/sono/weights`` decides how the slots are blended.
- Latent coordinates are forgiving across models: ``/sono/latent`` with more
  values than the running model has coordinates drops the extra ones (a
  warning if any of them is not 0), fewer are padded with 0;
  ``/sono/latent/K`` and ``/sono/latent/K/scale`` beyond the model's count are
  ignored (a warning unless they are neutral: offset 0, scale 1).
- ``checkpoint`` is checked at load (:func:`checkpoint_warning`): a patch made
  for another model still loads, with one warning line, because sounds are
  re-encoded by the running model and only latent offsets mean something
  model-specific.

:func:`patch_text` writes the full format with the one TOML writer
(:func:`sonolatent.tomlfile.dumps`, which refuses a NaN); ``/sono/patch/save``
writes it atomically through :func:`write_patch`. Torch-free.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..params.namespace import MAX_SLOTS, Param, build_namespace
from ..params.values import coerce
from ..errors import ConfigError, SonolatentError
from ..outputs import write_text_atomic
from ..textfile import read_text
from ..tomlfile import dumps, find_line, loads

#: The repository root: checkpoint references are relative to it (or to the patch file).
REPO_ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("patch", "slots", "params", "play", "midi")
#: Stored parameters never written to a patch (views of other parameters, or read-only).
_DERIVED = ("/sono/xy/x", "/sono/xy/y")
_LATENT_K = re.compile(r"^/sono/latent/(\d+)(/scale)?$")


@dataclass
class Patch:
    """One patch file, checked against a namespace; ``changes`` are coerced, in file order."""

    path: Path | None = None
    name: str = ""
    description: str = ""
    checkpoint: str | None = None               # as written
    slots: dict[int, str] = field(default_factory=dict)
    changes: list[tuple[str, tuple]] = field(default_factory=list)
    autoplay: bool = False
    velocity: float = 1.0
    midi_map: str | None = None                 # as written
    warnings: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else "<patch>"

    def where(self, section: str, key: str | None = None) -> str:
        """``FILE:LINE: [section] key 'KEY'`` for messages."""
        path = (section,) if key is None else (section, key)
        line = find_line(self.text, path)
        loc = f"{self.source}:{line}" if line else self.source
        return f"{loc}: [{section}]" + (f" key {key!r}" if key is not None else "")

    def _base(self) -> Path:
        return self.path.resolve().parent if self.path is not None else Path.cwd()

    def checkpoint_path(self) -> Path | None:
        """The checkpoint folder named by ``checkpoint``: absolute, or relative to this file's folder if
        it exists there, else to the repository root."""
        if not self.checkpoint:
            return None
        ref = Path(os.path.expanduser(self.checkpoint))
        if ref.is_absolute():
            return ref
        here = self._base() / ref
        return here if here.exists() else REPO_ROOT / ref

    def midi_map_path(self) -> Path | None:
        """The ``[midi] map`` file, relative to this patch file's folder (or absolute)."""
        if not self.midi_map:
            return None
        ref = Path(os.path.expanduser(self.midi_map))
        return ref if ref.is_absolute() else self._base() / ref

    def play_changes(self) -> list[tuple[str, tuple]]:
        """``[("/sono/play", (velocity,))]`` when the patch plays by itself, else nothing."""
        return [("/sono/play", (self.velocity,))] if self.autoplay else []


# ---------------------------------------------------------------------------------------------------
# reading


def _latent_dim(namespace: dict[str, Param]) -> int:
    p = namespace.get("/sono/latent")
    return len(p.types) if p is not None else 0


def _check_keys(patch: Patch, section: str, table, allowed: tuple) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{patch.where(section)}: must be a table ([{section}])")
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{patch.where(section, key)}: unknown key (expected {', '.join(allowed)})")
    return table


def _string(patch: Patch, section: str, table: dict, key: str, default=None, empty_ok: bool = False):
    if key not in table:
        return default
    v = table[key]
    if not isinstance(v, str) or (not v and not empty_ok):
        raise ConfigError(f"{patch.where(section, key)}: must be a {'' if empty_ok else 'non-empty '}string, "
                          f"got {v!r}")
    return v


def _param_change(patch: Patch, namespace: dict[str, Param], address: str, value, dim: int):
    """The coerced ``(address, values)`` for one ``[params]`` entry, or None when it is left out."""
    m = _LATENT_K.match(address)
    if m and int(m.group(1)) >= dim and isinstance(value, (int, float)) and not isinstance(value, bool):
        neutral = 1.0 if m.group(2) else 0.0
        if value != neutral:
            patch.warnings.append(f"{patch.where('params', address)}: the model has {dim} latent coordinates; "
                                  f"coordinate {m.group(1)} ignored")
        return None
    if address == "/sono/latent" and isinstance(value, list) and len(value) != dim and dim:
        extra = value[dim:]
        if any(x != 0 for x in extra if isinstance(x, (int, float))):
            patch.warnings.append(f"{patch.where('params', address)}: {len(value)} values for a model with {dim} "
                                  f"latent coordinates; the ones beyond {dim} ignored")
        value = list(value[:dim]) + [0.0] * max(0, dim - len(value))
    param = namespace.get(address)
    if param is None:
        raise ConfigError(f"{patch.where('params', address)}: not an address of the daemon")
    if param.action or not param.access & 2:
        raise ConfigError(f"{patch.where('params', address)}: cannot be set from a patch")
    try:
        return address, coerce(param, value if isinstance(value, list) else [value])
    except SonolatentError as e:
        raise ConfigError(f"{patch.where('params', address)}: {e}") from None


def parse_patch(text: str, source: str | os.PathLike | None = None,
                namespace: dict[str, Param] | None = None) -> Patch:
    """Check a patch's TOML ``text`` against ``namespace`` (default: 16 latent coordinates)."""
    namespace = namespace or build_namespace()
    patch = Patch(path=Path(source) if source is not None else None, text=text)
    data = loads(text, patch.source)
    for key in data:
        if key not in SECTIONS:
            line = find_line(text, (key,))
            raise ConfigError(f"{patch.source}{f':{line}' if line else ''}: unknown section {key!r} "
                              f"(expected [{'], ['.join(SECTIONS)}])")
    meta = _check_keys(patch, "patch", data.get("patch", {}), ("name", "description", "checkpoint"))
    default_name = patch.path.stem if patch.path is not None else ""
    patch.name = _string(patch, "patch", meta, "name", default_name)
    patch.description = _string(patch, "patch", meta, "description", "", empty_ok=True)
    patch.checkpoint = _string(patch, "patch", meta, "checkpoint")

    slots = data.get("slots", {})
    if not isinstance(slots, dict):
        raise ConfigError(f"{patch.where('slots')}: must be a table ([slots])")
    for key, name in slots.items():
        if not (key.isdigit() and int(key) < MAX_SLOTS):
            raise ConfigError(f"{patch.where('slots', key)}: not a slot number 0..{MAX_SLOTS - 1}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{patch.where('slots', key)}: must be a sample name (a string)")
        patch.slots[int(key)] = name

    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{patch.where('params')}: must be a table ([params])")
    dim = _latent_dim(namespace)
    for address, value in params.items():
        change = _param_change(patch, namespace, address, value, dim)
        if change is not None:
            patch.changes.append(change)

    play = _check_keys(patch, "play", data.get("play", {}), ("autoplay", "velocity"))
    if "autoplay" in play:
        if not isinstance(play["autoplay"], bool):
            raise ConfigError(f"{patch.where('play', 'autoplay')}: must be true or false, got {play['autoplay']!r}")
        patch.autoplay = play["autoplay"]
    if "velocity" in play:
        v = play["velocity"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ConfigError(f"{patch.where('play', 'velocity')}: must be a number 0..1, got {v!r}")
        patch.velocity = float(v)

    midi = _check_keys(patch, "midi", data.get("midi", {}), ("map",))
    patch.midi_map = _string(patch, "midi", midi, "map")
    return patch


def load_patch(path: str | os.PathLike, namespace: dict[str, Param] | None = None) -> Patch:
    """Read and check a patch file; every problem is one ConfigError line naming the file."""
    p = Path(path)
    return parse_patch(read_text(p, "patch file"), p, namespace)


def read_patch(path: str | os.PathLike, namespace: dict[str, Param]) -> tuple[dict[int, str], list[tuple]]:
    """``(slots {index: sample name}, [(address, values)])`` from a patch file (``/sono/play`` last
    when it plays by itself)."""
    patch = load_patch(path, namespace)
    return patch.slots, patch.changes + patch.play_changes()


def checkpoint_warning(patch: Patch, running: str | os.PathLike | None) -> str | None:
    """One line when the patch names a checkpoint other than the ``running`` one (or one that is missing)."""
    want = patch.checkpoint_path()
    if want is None or running is None:
        return None
    where = patch.where("patch", "checkpoint")
    if not want.exists():
        return f"{where}: checkpoint {patch.checkpoint} not found; playing it with the running model {running}"
    if want.resolve() != Path(running).resolve():
        return (f"{where}: made for checkpoint {patch.checkpoint}, the daemon runs {running}; "
                "the sounds are encoded by the running model, latent offsets may sound different")
    return None


# ---------------------------------------------------------------------------------------------------
# writing


def checkpoint_ref(folder: str | os.PathLike) -> str:
    """How a patch names ``folder``: relative to the repository root when inside it, else absolute."""
    p = Path(folder).resolve()
    return p.relative_to(REPO_ROOT).as_posix() if p.is_relative_to(REPO_ROOT) else str(p)


def patch_text(slot_names: dict[int, str], values: dict[str, tuple], namespace: dict[str, Param],
               last: tuple[str, ...] = (), *, name: str | None = None, description: str = "",
               checkpoint: str | None = None, autoplay: bool = False, velocity: float = 1.0,
               midi_map: str | None = None, header: str = "") -> str:
    """A patch holding ``slot_names`` and every settable stored value (``last`` addresses written last).

    ``header`` (comment lines, each starting with ``#``) goes first. ``[patch]``
    is written when ``name``, ``description`` or ``checkpoint`` is given, ``[midi]``
    when ``midi_map`` is.
    """
    doc: dict = {}
    if name or description or checkpoint:
        meta = {"name": name} if name else {}
        meta["description"] = description
        if checkpoint:
            meta["checkpoint"] = checkpoint
        doc["patch"] = meta
    doc["slots"] = {str(k): n for k, n in sorted(slot_names.items()) if n}
    addrs = [a for a, prm in namespace.items()
             if not prm.action and prm.access & 2 and a in values and a not in _DERIVED
             and not (a.startswith("/sono/latent/") and not a.endswith("/scale"))]
    addrs = [a for a in addrs if a not in last] + [a for a in last if a in addrs]
    doc["params"] = {a: (values[a][0] if len(values[a]) == 1 else list(values[a])) for a in addrs}
    doc["play"] = {"autoplay": bool(autoplay), "velocity": float(velocity)}
    if midi_map:
        doc["midi"] = {"map": midi_map}
    return dumps(doc, header, what=f"patch {name or ''}".strip())


def write_patch(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically: a temporary file in the same folder, flushed to disk, then renamed (mode 0644).

    A failure is one line (:class:`SonolatentError`) and leaves no temporary file.
    """
    write_text_atomic(path, text, fsync=True, mode=0o644)


def resolve_patch(root: str | os.PathLike, name: str) -> Path:
    """``root/name.toml``; refuses names that are paths or lead outside ``root``."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise SonolatentError(f"patch name {name!r}: a plain name is expected (no folders)")
    base = Path(root).resolve()
    p = base / (name if name.endswith(".toml") else name + ".toml")   # "v1.2" -> v1.2.toml
    real = p.resolve()
    if not real.is_relative_to(base):
        raise SonolatentError(f"patch name {name!r}: resolves outside the patch folder")
    return real
