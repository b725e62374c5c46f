"""JSON Lines files (dataset manifests, performance logs): one reader, errors that name the line."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ConfigError


def read_records(path: str | os.PathLike, what: str) -> list[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line of ``path``, a ``what`` (e.g. "manifest").

    Raises :class:`ConfigError` with one line: the file missing, a folder, unreadable, or a line that
    is not a JSON object (its number given).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, not a {what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the {what} ({e.__class__.__name__})") from None
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
