"""Output files: checked before the work starts, written whole or not at all.

Every command that writes a file checks its path first (:func:`check_output_path`:
the folder exists and is writable, the name is not a folder), so that a long
render or training run never fails at its very end. Files are written to a
temporary name in the destination's folder (:func:`temp_beside`) and moved
into place with ``os.replace``: the final name holds a whole file or nothing.
Standard library only, so torch-free code can use it.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from .errors import SonolatentError


def check_output_path(path: str | os.PathLike, what: str | None = None, suffixes=None) -> Path:
    """Refuse an output path that cannot be written, with one line naming ``what`` (an option) and the path.

    ``suffixes``: the file name must end in one of these (case-insensitive).
    """
    p = Path(path)
    name = f"{what} {p}" if what else str(p)
    if suffixes and p.suffix.lower() not in suffixes:
        raise SonolatentError(f"{name}: the file name must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise SonolatentError(f"{name}: is a folder")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise SonolatentError(f"{name}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise SonolatentError(f"{name}: the folder {parent} does not exist")
    _probe(parent, name)
    return p


def check_output_folder(path: str | os.PathLike, what: str | None = None) -> Path:
    """``path`` is a folder, or one can be made there; checked without creating anything."""
    p = Path(path)
    name = f"{what} {p}" if what else str(p)
    if p.exists() and not p.is_dir():
        raise SonolatentError(f"{name}: exists and is not a folder")
    base = p
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise SonolatentError(f"{name}: {base} is a file, not a folder")
    _probe(base, name)
    return p


def _probe(folder: Path, name: str) -> None:
    """Create and remove a file in ``folder``: permissions, read-only mounts and pseudo file systems
    alike (modes alone mislead: root ignores them)."""
    try:
        with tempfile.TemporaryFile(dir=str(folder)):
            pass
    except OSError as e:
        raise SonolatentError(f"{name}: the folder {folder} is not writable ({e.strerror or e})") from None


def usual_mode(path: str | os.PathLike, folder: bool = False) -> None:
    """Give a file made through ``mkstemp`` (mode 0600), or a ``folder`` made through ``mkdtemp`` (0700),
    the mode a plain ``open`` or ``mkdir`` would have under the user's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    try:
        os.chmod(path, (0o777 if folder else 0o666) & ~mask)
    except OSError:
        pass


def temp_beside(path: str | os.PathLike, what: str = "write") -> Path:
    """An empty temporary file in ``path``'s folder, to be moved onto ``path`` when complete.

    A failure is one line, ``PATH: cannot WHAT (reason)``.
    """
    p = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=str(p.parent if str(p.parent) else "."))
    except OSError as e:
        raise SonolatentError(f"{p}: cannot {what} ({e.strerror or e})") from None
    os.close(fd)
    usual_mode(tmp)
    return Path(tmp)


def remove_quietly(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = False, mode: int | None = None,
                      what: str = "write") -> None:
    """Write ``text`` (UTF-8) to ``path`` via a temporary file in the same folder and ``os.replace``.

    ``fsync``: flush the file to the disk before it takes the name. ``mode``: the
    file's permission bits (default: what a plain ``open`` would give). A failure
    is one line, ``PATH: cannot WHAT (reason)``.
    """
    p = Path(path)
    tmp = temp_beside(p, what)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, p)
    except OSError as e:
        remove_quietly(tmp)
        raise SonolatentError(f"{p}: cannot {what} ({e.strerror or e})") from None
    except BaseException:
        remove_quietly(tmp)
        raise


#: What :func:`temp_beside`, the patch writer and checkpoint exports leave when a process dies before
#: the rename: ``.NAME.XXXXXXXX.part`` (a file, or a folder for a checkpoint).
_STALE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.part$")


def stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Unfinished temporary files (and folders) of ours in ``folder``, left by a process that died."""
    try:
        return sorted(p for p in Path(folder).iterdir() if _STALE.match(p.name))
    except OSError:
        return []


def report_stale_parts(*folders, warn=None) -> list[Path]:
    """One warning line per folder that holds :func:`stale_parts` (at a command's start). They are
    reported, not removed: another process may be writing one of them right now."""
    found, seen = [], set()
    for folder in folders:
        if folder is None:
            continue
        f = Path(folder) if str(folder) else Path(".")
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        parts = stale_parts(f)
        if parts:
            names = ", ".join(p.name for p in parts[:3]) + (f" and {len(parts) - 3} more" if len(parts) > 3 else "")
            msg = (f"{f}: {len(parts)} unfinished temporary file{'s' * (len(parts) != 1)} from an interrupted "
                   f"earlier run ({names}); remove {'them' if len(parts) != 1 else 'it'} once no other "
                   f"sonolatent is writing there")
            if warn is None:
                print(f"sonolatent: warning: {msg}", file=sys.stderr, flush=True)
            else:
                warn(msg)
            found += parts
    return found
