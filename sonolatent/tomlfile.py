"""The one TOML reader and writer (patches, MIDI mappings, scores), with one-line, line-numbered errors.

:func:`loads` parses text with ``tomllib`` and turns a syntax error into one
:class:`~sonolatent.errors.ConfigError` line ``SOURCE:LINE: TOML syntax error: ...``.
tomllib reports no line numbers for values it parsed fine, so the line of a
bad key is found by scanning the text for its table header and then the key
(:func:`find_line`). :func:`dumps` writes with ``tomli-w`` and refuses a NaN
or an infinity rather than writing something else. Torch-free.
"""

from __future__ import annotations

import math
import re
import tomllib

import tomli_w

from .errors import ConfigError


def _key_line_re(key: str) -> re.Pattern:
    return re.compile(r"^\s*(?:\"" + re.escape(key) + r"\"|'" + re.escape(key) + r"'|" + re.escape(key)
                      + r")\s*(?:=|\.)")


_HEADER_RE = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")


def find_line(text: str, path: tuple, lists=()) -> int | None:
    """The 1-based line where ``path`` stands in the TOML ``text``, found by scanning.

    Finds the table header (the N-th ``[[cc]]`` for ``("cc", N, ...)`` when
    ``"cc"`` is one of ``lists``, the arrays of tables), then
    the first matching ``key =`` line before the next header. Good enough for
    hand-written files; returns the header's line when the key is not found
    (a missing key), and None when nothing fits.
    """
    lines = text.splitlines()
    headers = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _HEADER_RE.match(line))]
    if not path:
        return None
    head, rest = path[0], list(path[1:])
    start, end = 0, len(lines)
    header_line = None
    if isinstance(head, str) and head in lists and rest and isinstance(rest[0], int):
        index = rest.pop(0)
        matches = [i for i, name in headers if name == head]
        if index < len(matches):
            header_line = matches[index]
        elif not matches:
            return _inline_item_line(lines, head, index)
    elif isinstance(head, str):
        matches = [i for i, name in headers if name == head]
        if matches:
            header_line = matches[0]
        elif not rest:
            # a key at the top level, or an unknown table written some other way
            for i, line in enumerate(lines[: headers[0][0] if headers else len(lines)]):
                if _key_line_re(head).match(line):
                    return i + 1
            for i, name in headers:
                if name == head or name.startswith(head + "."):
                    return i + 1
            return None
        else:
            # a sub-table such as [program.patches]
            for i, name in headers:
                if name == f"{head}.{rest[0]}":
                    return i + 1
    if header_line is None:
        return None
    start = header_line + 1
    following = [i for i, _ in headers if i > header_line]
    end = following[0] if following else len(lines)
    if not rest:
        return header_line + 1
    key = str(rest[0])
    for i in range(start, end):
        if _key_line_re(key).match(lines[i]):
            return i + 1
    for i, name in headers:  # [notes.sub] style
        if i > header_line and name == f"{head}.{key}":
            return i + 1
    return header_line + 1


def _inline_item_line(lines: list[str], head: str, index: int) -> int | None:
    """The line of item ``index`` of an array of inline tables ``head = [`` written one item a line (as
    :func:`dumps` writes them)."""
    start = next((i for i, line in enumerate(lines) if _key_line_re(head).match(line)), None)
    if start is None:
        return None
    items = [i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("{")]
    ends = [i for i in range(start + 1, len(lines)) if lines[i].strip() == "]"]
    items = [i for i in items if not ends or i < ends[0]]
    return items[index] + 1 if index < len(items) else start + 1


_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_EOD_RE = re.compile(r"\s*\(at end of document\)\s*$")


def loads(text: str, source: str) -> dict:
    """``tomllib.loads(text)``; a syntax error becomes one ConfigError line ``SOURCE:LINE: ...``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS_RE.search(msg)
        if m:
            raise ConfigError(f"{source}:{m.group(1)}: TOML syntax error: {msg[: m.start()]} "
                              f"(column {m.group(2)})") from None
        if _TOML_EOD_RE.search(msg):
            n = max(1, len(text.splitlines()))
            raise ConfigError(f"{source}:{n}: TOML syntax error: {_TOML_EOD_RE.sub('', msg)} "
                              f"(at end of file)") from None
        raise ConfigError(f"{source}: TOML syntax error: {msg}") from None


def _non_finite(value, path: str) -> str | None:
    """The dotted path of the first NaN or infinity inside ``value``, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for k, v in items:
        found = _non_finite(v, f"{path}{k}" if str(k).startswith("[") else f"{path}.{k}" if path else str(k))
        if found:
            return found
    return None


def dumps(doc: dict, header: str = "", what: str = "TOML") -> str:
    """``doc`` as TOML text (tomli-w), after ``header`` (comment lines starting with ``#``).

    A NaN or an infinity is refused with one :class:`ConfigError` line naming
    its key (nothing we write may hold one), as is a value TOML cannot hold.
    """
    bad = _non_finite(doc, "")
    if bad:
        raise ConfigError(f"{what}: {bad} is not a finite number; nothing written")
    try:
        body = tomli_w.dumps(doc)
    except TypeError as e:
        raise ConfigError(f"{what}: cannot be written as TOML ({e})") from None
    return (header.rstrip("\n") + "\n\n" if header.strip() else "") + body
