"""MIDI mapping files (TOML): schema, strict loading and saving.

A mapping file says which MIDI controls drive which OSC addresses of the
daemon. Every table and key is checked; a mistake raises
:class:`~sonolatent.errors.ConfigError` with one line
``FILE:LINE: WHERE: PROBLEM``. tomllib reports no line numbers for values it
parsed fine, so the line of a bad key is found by scanning the text for its
table header and then the key (:func:`sonolatent.tomlfile.find_line`).

Channels are written 1..16 as on keyboards (mido's ``channel`` is 0..15);
leave ``channel`` out to listen on all channels (omni). Program numbers are
0-based as on the wire (program 0 is shown as "1" on many keyboards).

Example::

    [osc]
    host = "127.0.0.1"
    port = 9000

    [notes]
    root = 60

    [[cc]]
    cc = 1
    address = "/sono/morph"
"""

from __future__ import annotations

import math
import os
import re

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SonolatentError
from ..outputs import write_text_atomic
from ..textfile import read_text
from ..tomlfile import dumps
from ..tomlfile import find_line as _find_line
from ..tomlfile import loads as loads_toml

CURVES = ("linear", "exp", "log")
VELOCITY_MODES = ("play", "gain", "off")
NOTE_MODES = ("poly", "mpe", "play", "off")
MPE_ZONES = ("lower", "upper")
#: MPE's default bend range of a member channel (per-note bends), in semitones
MPE_BEND_RANGE = 48.0
_MPE_KEYS = ("zone", "members", "bend_range")   # [notes] keys of mode = "mpe" alone
AFTERTOUCH_TYPES = ("channel", "poly")

_ADDRESS_RE = re.compile(r"^/[A-Za-z0-9_\-./]*[A-Za-z0-9_\-]$")


class FieldError(Exception):
    """A problem at a key path such as ``("cc", 2, "curve")``; the loader adds file and line."""

    def __init__(self, path: tuple, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


# ---------------------------------------------------------------------------
# the schema


@dataclass(frozen=True)
class OscConfig:
    """Where OSC goes, and where the bridge listens for its own control messages."""

    host: str = "127.0.0.1"
    port: int = 9000
    control_host: str = "127.0.0.1"
    control_port: int = 9001


@dataclass(frozen=True)
class NotesConfig:
    """Keys play the daemon.

    ``mode = "poly"`` (the default): every key is a voice. Note-on ->
    ``/sono/note/on note velocity``, note-off -> ``/sono/note/off note``, the
    pedal (CC 64, with ``sustain``) -> ``/sono/sustain 1|0``, all-notes-off
    (CC 123) and all-sound-off (CC 120) -> ``/sono/allnotesoff``; the daemon
    holds released notes while the pedal is down, and its ``/sono/note/root``
    says which key plays untransposed (``root`` and ``transpose`` here are for
    ``"play"``).

    ``mode = "mpe"``: poly mode for MIDI Polyphonic Expression controllers. The
    ``zone``'s master channel (1 for ``"lower"``, 16 for ``"upper"``) stays
    global; each note on one of its ``members`` member channels (2.. upward,
    15.. downward) gets that channel's pitch bend (``bend_range`` semitones
    either way) as ``/sono/note/bend``, its channel pressure (and polyphonic
    key pressure) as ``/sono/note/pressure`` and its CC 74 as
    ``/sono/note/timbre``. RPN 0 changes the bend range (member channels: the
    notes'; the master channel: ``[pitchbend]``'s), RPN 6 (the MPE
    Configuration Message) the zone's member channels.

    ``mode = "play"``: one voice, note-on -> ``play``, note -> ``transpose``
    relative to ``root``. Last-note priority, legato: a key pressed while
    another is held only changes the transpose (unless ``retrigger``);
    releasing the newest key falls back to the newest key still held;
    ``stop`` is sent when no key is held (and, with ``sustain``, the pedal
    CC 64 is up).
    """

    mode: str = "poly"
    channel: int | None = None
    root: int = 60
    retrigger: bool = False
    sustain: bool = True
    velocity: str = "play"  # play: /sono/play v; gain: /sono/gain v then /sono/play; off: /sono/play
    velocity_min: float = 0.0
    velocity_max: float = 1.0
    velocity_curve: str = "linear"
    transpose: bool = True
    play_address: str = "/sono/play"
    stop_address: str = "/sono/stop"
    transpose_address: str = "/sono/transpose"
    gain_address: str = "/sono/gain"
    zone: str = "lower"          # mpe: lower (master channel 1) or upper (master channel 16)
    members: int = 15            # mpe: member channels of the zone
    bend_range: float = MPE_BEND_RANGE   # mpe: semitones of a member channel's full pitch bend


@dataclass(frozen=True)
class PitchbendConfig:
    """Pitch bend (-8192..8191) -> ``address``: ``range`` semitones either way, or ``min``..``max``.

    When ``address`` is the notes' transpose address, the bend is added to
    the held key's transpose.
    """

    address: str = "/sono/transpose"
    range: float | None = 2.0
    min: float | None = None
    max: float | None = None
    channel: int | None = None


@dataclass(frozen=True)
class ProgramConfig:
    """Program change N -> ``address`` with the name ``patches[N]``."""

    patches: dict[int, str] = field(default_factory=dict)
    address: str = "/sono/patch/load"
    channel: int | None = None


@dataclass(frozen=True)
class CCMap:
    """One control change (7-bit, or 14-bit with ``lsb``) -> one address."""

    cc: int
    address: str
    min: float = 0.0
    max: float = 1.0
    curve: str = "linear"
    invert: bool = False
    channel: int | None = None
    lsb: int | None = None


@dataclass(frozen=True)
class NRPNMap:
    """One NRPN parameter (CC 99/98 select, CC 6/38 data, 14-bit) -> one address."""

    param: int
    address: str
    min: float = 0.0
    max: float = 1.0
    curve: str = "linear"
    invert: bool = False
    channel: int | None = None


@dataclass(frozen=True)
class AftertouchMap:
    """Channel pressure, or polyphonic key pressure (optionally of one ``note``) -> one address."""

    address: str
    type: str = "channel"
    min: float = 0.0
    max: float = 1.0
    curve: str = "linear"
    invert: bool = False
    channel: int | None = None
    note: int | None = None


@dataclass(frozen=True)
class Mapping:
    """A whole mapping file. ``notes``/``pitchbend``/``program`` are None when absent."""

    osc: OscConfig = field(default_factory=OscConfig)
    notes: NotesConfig | None = None
    pitchbend: PitchbendConfig | None = None
    program: ProgramConfig | None = None
    cc: tuple[CCMap, ...] = ()
    nrpn: tuple[NRPNMap, ...] = ()
    aftertouch: tuple[AftertouchMap, ...] = ()

    def to_dict(self) -> dict:
        """Plain dict in file form (channels 1..16, absent optional keys left out)."""
        out: dict[str, Any] = {"osc": asdict(self.osc)}
        for name in ("notes", "pitchbend", "program"):
            section = getattr(self, name)
            if section is not None:
                d = {k: v for k, v in asdict(section).items() if v is not None}
                if name == "notes" and section.mode != "mpe":
                    for key in _MPE_KEYS:
                        d.pop(key)
                if name == "program":
                    d["patches"] = {str(k): v for k, v in sorted(section.patches.items())}
                out[name] = d
        for name in ("cc", "nrpn", "aftertouch"):
            items = getattr(self, name)
            if items:
                out[name] = [{k: v for k, v in asdict(m).items() if v is not None} for m in items]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "Mapping":
        """Strict: unknown keys, wrong types and out-of-range values raise ConfigError."""
        try:
            return parse_mapping(data)
        except FieldError as e:
            raise ConfigError(f"{describe_path(e.path)}: {e.message}") from None


# ---------------------------------------------------------------------------
# strict parsing of the dict from tomllib


def _type_name(v: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)


def _check_keys(table: Any, allowed: set[str], path: tuple, required: tuple = ()) -> dict:
    if not isinstance(table, dict):
        raise FieldError(path, f"must be a table, got {_type_name(table)}")
    for key in table:
        if key not in allowed:
            raise FieldError(path + (key,), f"unknown key (known: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in table:
            raise FieldError(path, f"missing required key '{key}'")
    return table


def _int(table: dict, key: str, path: tuple, lo: int, hi: int, default: Any) -> Any:
    if key not in table:
        return default
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, int):
        raise FieldError(path + (key,), f"must be an integer, got {_type_name(v)} {v!r}")
    if not lo <= v <= hi:
        raise FieldError(path + (key,), f"must be in {lo}..{hi}, got {v}")
    return v


def _float(table: dict, key: str, path: tuple, default: Any, lo: float = -1e9, hi: float = 1e9) -> Any:
    if key not in table:
        return default
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise FieldError(path + (key,), f"must be a number, got {_type_name(v)} {v!r}")
    if not math.isfinite(v) or not lo <= v <= hi:
        raise FieldError(path + (key,), f"must be a finite number in {lo:g}..{hi:g}, got {v}")
    return float(v)


def _bool(table: dict, key: str, path: tuple, default: bool) -> bool:
    if key not in table:
        return default
    v = table[key]
    if not isinstance(v, bool):
        raise FieldError(path + (key,), f"must be true or false, got {_type_name(v)} {v!r}")
    return v


def _str(table: dict, key: str, path: tuple, default: Any, choices: tuple = ()) -> Any:
    if key not in table:
        return default
    v = table[key]
    if not isinstance(v, str):
        raise FieldError(path + (key,), f"must be a string, got {_type_name(v)} {v!r}")
    if choices and v not in choices:
        raise FieldError(path + (key,), f"must be one of {', '.join(choices)}, got {v!r}")
    return v


def check_address(address: Any, path: tuple = ("address",)) -> str:
    """An OSC address a mapping may send to: '/' then letters, digits, '_', '-', '.', '/'."""
    if not isinstance(address, str):
        raise FieldError(path, f"must be a string, got {_type_name(address)} {address!r}")
    if not _ADDRESS_RE.match(address) or "//" in address:
        raise FieldError(path, f"not a valid OSC address {address!r} (like '/sono/morph')")
    return address


def _address(table: dict, key: str, path: tuple, default: Any) -> Any:
    if key not in table:
        if default is None:
            raise FieldError(path, f"missing required key '{key}'")
        return default
    return check_address(table[key], path + (key,))


def _channel(table: dict, path: tuple) -> int | None:
    return _int(table, "channel", path, 1, 16, None)


def _shape(table: dict, path: tuple) -> dict:
    """min, max, curve, invert: the value shaping shared by cc, nrpn and aftertouch."""
    lo = _float(table, "min", path, 0.0)
    hi = _float(table, "max", path, 1.0)
    if lo == hi:
        raise FieldError(path + ("max",), f"min and max are both {lo:g}; nothing would move")
    return {"min": lo, "max": hi, "curve": _str(table, "curve", path, "linear", CURVES),
            "invert": _bool(table, "invert", path, False)}


def _parse_osc(t: Any, path: tuple) -> OscConfig:
    _check_keys(t, {f.name for f in fields(OscConfig)}, path)
    d = OscConfig()
    host = _str(t, "host", path, d.host)
    chost = _str(t, "control_host", path, d.control_host)
    for key, v in (("host", host), ("control_host", chost)):
        if not v.strip() or any(c.isspace() for c in v):
            raise FieldError(path + (key,), f"not a host name or address: {v!r}")
    return OscConfig(host=host, port=_int(t, "port", path, 1, 65535, d.port), control_host=chost,
                     control_port=_int(t, "control_port", path, 0, 65535, d.control_port))


def _parse_notes(t: Any, path: tuple) -> NotesConfig:
    _check_keys(t, {f.name for f in fields(NotesConfig)}, path)
    d = NotesConfig()
    vlo = _float(t, "velocity_min", path, d.velocity_min, 0.0, 1.0)
    vhi = _float(t, "velocity_max", path, d.velocity_max, 0.0, 1.0)
    mode = _str(t, "mode", path, d.mode, NOTE_MODES)
    for key in _MPE_KEYS:
        if key in t and mode != "mpe":
            raise FieldError(path + (key,), 'only for mode = "mpe"')
    if mode == "mpe" and "channel" in t:
        raise FieldError(path + ("channel",), 'mode = "mpe" listens on its zone\'s channels (zone, members); '
                                              "leave channel out")
    bend_range = _float(t, "bend_range", path, d.bend_range, 0.0, 96.0)
    if bend_range == 0.0:
        raise FieldError(path + ("bend_range",), "must be more than 0 semitones")
    return NotesConfig(
        mode=mode,
        zone=_str(t, "zone", path, d.zone, MPE_ZONES),
        members=_int(t, "members", path, 1, 15, d.members),
        bend_range=bend_range,
        channel=_channel(t, path),
        root=_int(t, "root", path, 0, 127, d.root),
        retrigger=_bool(t, "retrigger", path, d.retrigger),
        sustain=_bool(t, "sustain", path, d.sustain),
        velocity=_str(t, "velocity", path, d.velocity, VELOCITY_MODES),
        velocity_min=vlo,
        velocity_max=vhi,
        velocity_curve=_str(t, "velocity_curve", path, d.velocity_curve, CURVES),
        transpose=_bool(t, "transpose", path, d.transpose),
        play_address=_address(t, "play_address", path, d.play_address),
        stop_address=_address(t, "stop_address", path, d.stop_address),
        transpose_address=_address(t, "transpose_address", path, d.transpose_address),
        gain_address=_address(t, "gain_address", path, d.gain_address),
    )


def _parse_pitchbend(t: Any, path: tuple) -> PitchbendConfig:
    _check_keys(t, {f.name for f in fields(PitchbendConfig)}, path)
    has_minmax = "min" in t or "max" in t
    if has_minmax and "range" in t:
        raise FieldError(path + ("range",), "give either range or min/max, not both")
    if has_minmax:
        if not ("min" in t and "max" in t):
            raise FieldError(path + ("min" if "min" not in t else "max",), "min and max go together")
        lo, hi = _float(t, "min", path, None), _float(t, "max", path, None)
        if lo == hi:
            raise FieldError(path + ("max",), f"min and max are both {lo:g}; nothing would move")
        rng = None
    else:
        lo = hi = None
        rng = _float(t, "range", path, 2.0, 0.0, 96.0)
        if rng == 0.0:
            raise FieldError(path + ("range",), "must be more than 0 semitones")
    return PitchbendConfig(address=_address(t, "address", path, PitchbendConfig.address),
                           range=rng, min=lo, max=hi, channel=_channel(t, path))


def _parse_program(t: Any, path: tuple) -> ProgramConfig:
    _check_keys(t, {"patches", "address", "channel"}, path, required=("patches",))
    raw = t["patches"]
    patches: dict[int, str] = {}
    if isinstance(raw, list):
        if len(raw) > 128:
            raise FieldError(path + ("patches",), f"at most 128 names (programs 0..127), got {len(raw)}")
        items = list(enumerate(raw))
    elif isinstance(raw, dict):
        items = []
        for k, v in raw.items():
            if not k.isdigit() or not 0 <= int(k) <= 127:
                raise FieldError(path + ("patches", k), "program numbers are 0..127")
            items.append((int(k), v))
    else:
        raise FieldError(path + ("patches",), f"must be an array of names or a table, got {_type_name(raw)}")
    for n, name in items:
        if not isinstance(name, str):
            raise FieldError(path + ("patches",), f"program {n}: name must be a string, got {_type_name(name)}")
        if name:  # "" leaves a program unmapped
            patches[n] = name
    return ProgramConfig(patches=patches, address=_address(t, "address", path, ProgramConfig.address),
                         channel=_channel(t, path))


def _parse_cc(t: Any, path: tuple) -> CCMap:
    _check_keys(t, {f.name for f in fields(CCMap)}, path, required=("cc", "address"))
    cc = _int(t, "cc", path, 0, 127, None)
    lsb = _int(t, "lsb", path, 32, 63, None)
    if lsb is not None and cc > 31:
        raise FieldError(path + ("lsb",), f"14-bit pairs need an MSB controller 0..31, cc is {cc}")
    return CCMap(cc=cc, lsb=lsb, address=_address(t, "address", path, None), channel=_channel(t, path),
                 **_shape(t, path))


def _parse_nrpn(t: Any, path: tuple) -> NRPNMap:
    _check_keys(t, {f.name for f in fields(NRPNMap)}, path, required=("param", "address"))
    return NRPNMap(param=_int(t, "param", path, 0, 16383, None), address=_address(t, "address", path, None),
                   channel=_channel(t, path), **_shape(t, path))


def _parse_aftertouch(t: Any, path: tuple) -> AftertouchMap:
    _check_keys(t, {f.name for f in fields(AftertouchMap)}, path, required=("address",))
    kind = _str(t, "type", path, "channel", AFTERTOUCH_TYPES)
    note = _int(t, "note", path, 0, 127, None)
    if note is not None and kind != "poly":
        raise FieldError(path + ("note",), "only polyphonic aftertouch (type = \"poly\") has a note")
    return AftertouchMap(address=_address(t, "address", path, None), type=kind, note=note,
                         channel=_channel(t, path), **_shape(t, path))


_SECTIONS = {"osc": _parse_osc, "notes": _parse_notes, "pitchbend": _parse_pitchbend, "program": _parse_program}
_LISTS = {"cc": _parse_cc, "nrpn": _parse_nrpn, "aftertouch": _parse_aftertouch}


def parse_mapping(data: Any) -> Mapping:
    """Build a :class:`Mapping` from the dict tomllib returns; raises :class:`FieldError`."""
    _check_keys(data, set(_SECTIONS) | set(_LISTS), ())
    kwargs: dict[str, Any] = {}
    for name, parse in _SECTIONS.items():
        if name in data:
            kwargs[name] = parse(data[name], (name,))
    for name, parse in _LISTS.items():
        if name in data:
            items = data[name]
            if not isinstance(items, list):
                raise FieldError((name,), f"must be an array of tables ([[{name}]]), got {_type_name(items)}")
            kwargs[name] = tuple(parse(item, (name, i)) for i, item in enumerate(items))
    return Mapping(**kwargs)  # an empty mapping is legal: MIDI learn fills it


# ---------------------------------------------------------------------------
# files


def describe_path(path: tuple) -> str:
    """``("cc", 2, "curve")`` -> ``[[cc]] #3 key 'curve'``."""
    if not path:
        return "top level"
    head, rest = path[0], list(path[1:])
    if head in _LISTS and rest and isinstance(rest[0], int):
        where = f"[[{head}]] #{rest.pop(0) + 1}"
    elif head in _LISTS or head in _SECTIONS:
        where = f"[{head}]" if head in _SECTIONS else f"[[{head}]]"
    else:
        return f"key '{head}'" if not rest else f"key '{head}.{'.'.join(map(str, rest))}'"
    if rest:
        where += f" key '{'.'.join(map(str, rest))}'"
    return where


def find_line(text: str, path: tuple) -> int | None:
    """The 1-based line of ``path`` in a mapping file's ``text`` (see :func:`sonolatent.tomlfile.find_line`)."""
    return _find_line(text, path, _LISTS)


def read_mapping_text(text: str, source: str = "<mapping>") -> Mapping:
    """Parse TOML text; errors become one ConfigError line ``SOURCE:LINE: ...``."""
    data = loads_toml(text, source)
    try:
        return parse_mapping(data)
    except FieldError as e:
        line = find_line(text, e.path)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {describe_path(e.path)}: {e.message}") from None


def load_mapping(path: str | os.PathLike) -> Mapping:
    """Read and validate a mapping file; every problem is one ConfigError line naming the file."""
    p = Path(path)
    return read_mapping_text(read_text(p, "mapping file"), str(p))


# ---------------------------------------------------------------------------
# writing


def dumps_mapping(mapping: Mapping, header: str = "") -> str:
    """TOML text for ``mapping`` (through the one writer, :func:`sonolatent.tomlfile.dumps`)."""
    return dumps(mapping.to_dict(), header, what="mapping")


def leading_comments(text: str) -> str:
    """The comment block at the top of a TOML file (kept when the file is rewritten)."""
    keep = []
    for line in text.splitlines():
        if line.startswith("#") or (not line.strip() and keep):
            keep.append(line)
        else:
            break
    return "\n".join(keep).rstrip("\n")


def save_mapping(mapping: Mapping, path: str | os.PathLike) -> None:
    """Write ``mapping`` to ``path`` atomically (temp file in the same folder, then ``os.replace``).

    The comment block at the top of an existing file is kept; the rest is
    rewritten from ``mapping``, so nothing else of the old file is lost.
    """
    p = Path(path)
    header = ""
    mode = None
    try:
        header = leading_comments(p.read_text(encoding="utf-8"))
        mode = p.stat().st_mode & 0o777
    except (OSError, UnicodeDecodeError):
        pass
    text = dumps_mapping(mapping, header)
    read_mapping_text(text, str(p))  # never write a file we could not read back
    try:   # flushed to disk; an existing file keeps its mode, a new one gets what a plain open() gives
        write_text_atomic(p, text, fsync=True, mode=mode, what="save mapping")
    except SonolatentError as e:   # a mapping's problems are ConfigErrors
        raise ConfigError(str(e)) from None
