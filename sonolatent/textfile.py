"""Reading a user's text file (patch, MIDI mapping, manifest, performance log): one way, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of ``path``, a ``what`` (e.g. "patch file").

    Raises :class:`ConfigError` with one line naming the file: missing, a folder, unreadable, or not
    UTF-8 (with the line and byte where the text stops being UTF-8).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, not a {what}") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the {what} ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{p}:{line}: not UTF-8 text (byte {e.start})") from None
