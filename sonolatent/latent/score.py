"""Morph scores: a TOML file naming sound sources and blend keys over time.

Format::

    duration = 8.0          # seconds (optional; default: the last key's time,
                            # or the longest source if every key is at 0)
    interp = "slerp"        # "lerp" (default) or "slerp"
    align = "stretch"       # "stretch" (default: every source lasts the whole score)
                            # or "loop" (every source at its own speed, repeated)

    [[source]]
    name = "flute"
    file = "../samples/flute.wav"      # relative to the score file

    [[source]]
    name = "cello"
    file = "../samples/cello.wav"

    [[key]]
    time = 0.0                          # seconds; times never go back
    weights = { flute = 1, cello = 0 }  # or a list in source order: [1, 0]
    latent = { 0 = 1.5 }                # optional offsets in PCA standard deviations
    gain = -6.0                         # optional, dB (default 0)

Between keys every value (normalised weights, offsets, gain) moves linearly;
before the first key and after the last it is held. Two keys at the same time
make a jump. Every problem raises one :class:`ConfigError` line naming the
score file, the line and the key (the line is found by scanning the text,
because ``tomllib`` does not report positions).

Pure Python + numpy, no torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..tomlfile import loads
from .interp import INTERPOLATIONS

SCORE_ALIGN_MODES = ("stretch", "loop")
TOP_FIELDS = ("duration", "interp", "align", "source", "key")
SOURCE_FIELDS = ("name", "file")
KEY_FIELDS = ("time", "weights", "latent", "gain")


@dataclass(frozen=True)
class ScoreSource:
    name: str
    file: Path
    line: int


@dataclass(frozen=True)
class ScoreKey:
    time: float
    weights: tuple[float, ...]          # normalised, one per source
    latent: dict[int, float] = field(default_factory=dict)
    gain: float = 0.0
    line: int = 0


@dataclass(frozen=True)
class Score:
    path: Path
    sources: tuple[ScoreSource, ...]
    keys: tuple[ScoreKey, ...]
    duration: float | None = None
    interp: str = "lerp"
    align: str = "stretch"
    text: str = ""

    # -- values over time ------------------------------------------------------------
    def _key_interp(self, times, values: np.ndarray) -> np.ndarray:
        """Interpolate per-key ``values (C, n_keys)`` at ``times (n,)`` (jumps at repeated times)."""
        kt = np.array([k.time for k in self.keys], np.float64)
        t = np.asarray(times, np.float64)
        idx = np.searchsorted(kt, t, side="right")
        i0 = np.clip(idx - 1, 0, len(kt) - 1)
        i1 = np.clip(idx, 0, len(kt) - 1)
        span = kt[i1] - kt[i0]
        w = np.where(span > 0, (t - kt[i0]) / np.where(span > 0, span, 1.0), 0.0)
        w = np.clip(w, 0.0, 1.0)
        return values[:, i0] * (1 - w) + values[:, i1] * w

    def weights_at(self, times) -> np.ndarray:
        """Normalised source weights ``(K, n)`` at ``times`` (seconds)."""
        vals = np.array([k.weights for k in self.keys], np.float64).T
        return self._key_interp(times, vals)

    def offsets_at(self, times, dim: int) -> np.ndarray:
        """PCA offsets in standard deviations ``(dim, n)`` at ``times``."""
        self.check_latent_dim(dim)
        vals = np.zeros((dim, len(self.keys)))
        for i, k in enumerate(self.keys):
            for d, v in k.latent.items():
                vals[d, i] = v
        return self._key_interp(times, vals)

    def gain_at(self, times) -> np.ndarray:
        """Gain in dB ``(n,)`` at ``times``."""
        vals = np.array([[k.gain for k in self.keys]], np.float64)
        return self._key_interp(times, vals)[0]

    @property
    def has_offsets(self) -> bool:
        return any(k.latent for k in self.keys)

    @property
    def has_gain(self) -> bool:
        return any(k.gain != 0.0 for k in self.keys)

    def check_latent_dim(self, dim: int) -> None:
        for i, k in enumerate(self.keys):
            for d in k.latent:
                if d >= dim:
                    line = _find_line(self.text, "key", i, "latent", str(d)) or k.line
                    raise ConfigError(
                        f"{self.path}: line {line}: [[key]] {i + 1} latent: coordinate {d} is outside "
                        f"0..{dim - 1} (the model has {dim} latent dimensions)"
                    )

    def error(self, line: int, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}: line {line}: {msg}")


# -- locating lines ---------------------------------------------------------------------
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?")


def _blocks(text: str, table: str) -> list[tuple[int, int]]:
    """(first, last) 0-based line ranges of every ``[[table]]`` block."""
    lines = text.splitlines()
    heads = [(i, m.group(1).strip().strip("\"'")) for i, l in enumerate(lines) if (m := _HEADER.match(l))]
    out = []
    for n, (i, name) in enumerate(heads):
        if name == table:
            end = heads[n + 1][0] - 1 if n + 1 < len(heads) else len(lines) - 1
            out.append((i, end))
    return out


def _find_line(text: str, table: str | None, index: int, fieldname: str | None = None,
               token: str | None = None) -> int | None:
    """1-based line of ``fieldname`` (containing ``token`` if given) in the ``index``-th ``[[table]]``.

    ``table=None`` means the top level (before the first header). Falls back
    to the field's line, then to the block's header line.
    """
    lines = text.splitlines()
    if table is None:
        first_head = next((i for i, l in enumerate(lines) if _HEADER.match(l)), len(lines))
        lo, hi, head = 0, first_head - 1, None
    else:
        blocks = _blocks(text, table)
        if index >= len(blocks):
            return None
        lo, hi = blocks[index]
        head = lo + 1
    if fieldname is None:
        return head
    pat = re.compile(rf"^\s*[\"']?{re.escape(fieldname)}[\"']?\s*[=.]")
    field_line = None
    for i in range(lo, hi + 1):
        if pat.match(lines[i]):
            field_line = i
            break
    if field_line is None:
        return head
    if token is not None:
        tok = re.compile(rf"(?<![\w.]){re.escape(token)}(?![\w])")
        # the field's value may continue on following lines (multi-line arrays)
        for i in range(field_line, hi + 1):
            if i > field_line and re.match(r"^\s*[\w\"']+\s*=", lines[i]):
                break
            if tok.search(lines[i].split("#", 1)[0]):
                return i + 1
    return field_line + 1


# -- parsing ----------------------------------------------------------------------------
def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_score(path, text: str | None = None) -> Score:
    """Read and check a score file; every problem is one :class:`ConfigError` line with file and line."""
    path = Path(path)
    if text is None:
        if not path.exists():
            raise ConfigError(f"{path}: no such score file")
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, not a score file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the score ({type(e).__name__}: {e})") from None
    data = loads(text, str(path))

    def err(line, msg):
        return ConfigError(f"{path}: line {line or '?'}: {msg}")

    def top_line(name):
        return _find_line(text, None, 0, name) or 1

    unknown = [k for k in data if k not in TOP_FIELDS]
    if unknown:
        k = unknown[0]
        line = _find_line(text, k, 0) or top_line(k)
        raise err(line, f"unknown setting {k!r} (a score has {', '.join(TOP_FIELDS)}; tables are [[source]] and [[key]])")

    duration = data.get("duration")
    if duration is not None and (not _number(duration) or duration <= 0):
        raise err(top_line("duration"), f"duration must be a positive number of seconds, got {duration!r}")
    interp = data.get("interp", "lerp")
    if interp not in INTERPOLATIONS:
        raise err(top_line("interp"), f"interp must be one of {', '.join(INTERPOLATIONS)}, got {interp!r}")
    align_mode = data.get("align", "stretch")
    if align_mode not in SCORE_ALIGN_MODES:
        raise err(top_line("align"), f"align must be one of {', '.join(SCORE_ALIGN_MODES)}, got {align_mode!r}")

    # sources
    raw_sources = data.get("source")
    if not isinstance(raw_sources, list) or not raw_sources:
        line = _find_line(text, None, 0, "source") or 1
        raise err(line, "no [[source]] tables (each names a sound: name = \"a\", file = \"a.wav\")")
    sources: list[ScoreSource] = []
    for i, s in enumerate(raw_sources):
        head = _find_line(text, "source", i) or 1
        where = f"[[source]] {i + 1}"
        if not isinstance(s, dict):
            raise err(head, f"{where}: expected a table")
        bad = [k for k in s if k not in SOURCE_FIELDS]
        if bad:
            raise err(_find_line(text, "source", i, bad[0]) or head,
                      f"{where}: unknown field {bad[0]!r} (a source has {', '.join(SOURCE_FIELDS)})")
        for f in SOURCE_FIELDS:
            if f not in s:
                raise err(head, f"{where}: missing {f!r}")
            if not isinstance(s[f], str) or not s[f].strip():
                raise err(_find_line(text, "source", i, f) or head, f"{where}: {f} must be a non-empty string")
        name = s["name"]
        where = f"[[source]] {name!r}"
        if any(o.name == name for o in sources):
            raise err(_find_line(text, "source", i, "name") or head, f"{where}: the name is used twice")
        file = Path(s["file"]).expanduser()
        if not file.is_absolute():
            file = path.parent / file
        fline = _find_line(text, "source", i, "file") or head
        if not file.exists():
            raise err(fline, f"{where}: no such file {s['file']!r} ({file})")
        if file.is_dir():
            raise err(fline, f"{where}: {s['file']!r} is a folder, not a sound file")
        sources.append(ScoreSource(name, file, fline))
    names = [s.name for s in sources]

    # keys
    raw_keys = data.get("key")
    if not isinstance(raw_keys, list) or not raw_keys:
        line = _find_line(text, None, 0, "key") or len(text.splitlines()) or 1
        raise err(line, "no [[key]] tables (each has time = seconds and weights = {source = weight, ...})")
    keys: list[ScoreKey] = []
    for i, k in enumerate(raw_keys):
        head = _find_line(text, "key", i) or 1
        where = f"[[key]] {i + 1}"

        def line_of(f, token=None, _i=i, _head=head):
            return _find_line(text, "key", _i, f, token) or _head

        if not isinstance(k, dict):
            raise err(head, f"{where}: expected a table")
        bad = [f for f in k if f not in KEY_FIELDS]
        if bad:
            raise err(line_of(bad[0]), f"{where}: unknown field {bad[0]!r} (a key has {', '.join(KEY_FIELDS)})")
        if "time" not in k:
            raise err(head, f"{where}: missing 'time' (seconds)")
        t = k["time"]
        if not _number(t) or t < 0:
            raise err(line_of("time"), f"{where}: time must be a number of seconds >= 0, got {t!r}")
        if keys and t < keys[-1].time:
            raise err(line_of("time"), f"{where}: time {t:g} comes before the previous key's {keys[-1].time:g} (times never go back)")
        if duration is not None and t > duration:
            raise err(line_of("time"), f"{where}: time {t:g} is after the end of the score (duration {duration:g})")
        if "weights" not in k:
            raise err(head, f"{where}: missing 'weights' (e.g. weights = {{{names[0]} = 1}})")
        w = k["weights"]
        if isinstance(w, dict):
            vec = [0.0] * len(names)
            for n, v in w.items():
                if n not in names:
                    raise err(line_of("weights", n),
                              f"{where} weights: unknown source {n!r} (sources: {', '.join(names)})")
                if not _number(v) or v < 0:
                    raise err(line_of("weights", n), f"{where} weights: {n} must be a number >= 0, got {v!r}")
                vec[names.index(n)] = float(v)
        elif isinstance(w, list):
            if len(w) != len(names):
                raise err(line_of("weights"),
                          f"{where} weights: {len(w)} values for {len(names)} sources ({', '.join(names)})")
            for n, v in zip(names, w):
                if not _number(v) or v < 0:
                    raise err(line_of("weights"), f"{where} weights: the weight of {n} must be a number >= 0, got {v!r}")
            vec = [float(v) for v in w]
        else:
            raise err(line_of("weights"), f"{where} weights: expected a table {{name = weight}} or a list, got {w!r}")
        total = sum(vec)
        if total <= 0:
            raise err(line_of("weights"), f"{where} weights: all weights are 0 (at least one must be > 0)")
        latent = {}
        lat = k.get("latent", {})
        if not isinstance(lat, dict):
            raise err(line_of("latent"), f"{where} latent: expected a table {{coordinate = sd}}, e.g. {{0 = 1.5}}, got {lat!r}")
        for d, v in lat.items():
            if not re.fullmatch(r"\d+", d):
                raise err(line_of("latent", d), f"{where} latent: {d!r} is not a PCA coordinate number (0, 1, ...)")
            if not _number(v) or abs(v) > 100:
                raise err(line_of("latent", d), f"{where} latent: offset of coordinate {d} must be a number of sd (|x| <= 100), got {v!r}")
            latent[int(d)] = float(v)
        gain = k.get("gain", 0.0)
        if not _number(gain) or not -120.0 <= gain <= 24.0:
            raise err(line_of("gain"), f"{where}: gain must be a number of dB in -120..24, got {gain!r}")
        keys.append(ScoreKey(float(t), tuple(x / total for x in vec), latent, float(gain), head))
    return Score(path, tuple(sources), tuple(keys), None if duration is None else float(duration),
                 interp, align_mode, text)
