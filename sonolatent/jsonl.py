"""JSON Lines files (dataset manifests, performance logs): one reader, errors that name the line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ConfigError
from .textfile import read_text


def read_records(path: str | os.PathLike, what: str) -> list[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line of ``path``, a ``what`` (e.g. "manifest").

    Raises :class:`ConfigError` with one line: the file missing, a folder, unreadable, or a line that
    is not a JSON object (its number given).
    """
    p = Path(path)
    text = read_text(p, what)
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{p}:{n}: expected a JSON object, got {type(record).__name__}")
        records.append((n, record))
    return records
