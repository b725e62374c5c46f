"""Outputs written while the engine plays: the recording and the performance log.

Both are written incrementally on one background thread (the producer only
queues; it never touches the disk).

- The recording (:class:`WavRecorder`) is written under its own name from the
  start, and its header is rewritten about every second: if the process dies
  (kill -9, a power cut of the program), the file is a valid WAV holding all
  but at most the last second of the take.
- The performance log (:class:`LineLog`) goes to a temporary file in the
  destination's folder and is moved into place with ``os.replace`` when
  closed: the final name holds a whole log or nothing.

``abort()`` (a failed start) removes what was begun.
"""

from __future__ import annotations

import json
import os
import queue
import struct
import threading

import numpy as np

from ..outputs import check_output_path, temp_beside


class BackgroundWriter:
    """One thread that runs queued writes in order."""

    def __init__(self, prepare=None):
        """``prepare`` runs first on the writer's thread (the engine's :meth:`~.Engine.join_realtime`)."""
        self._prepare = prepare
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sonolatent-writer", daemon=True)
        self.error: BaseException | None = None
        self._thread.start()

    def put(self, fn, *args) -> None:
        self._q.put((fn, args))

    def _run(self) -> None:
        if self._prepare is not None:
            self._prepare()
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, args = item
            if self.error is not None:
                continue
            try:
                fn(*args)
            except BaseException as e:  # reported by close(); the audio keeps going
                self.error = e

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()


class _AtomicOutput:
    """A file written through the background writer to a temporary name, then moved into place."""

    file = None

    def __init__(self, path, what: str, writer: BackgroundWriter):
        self.path = check_output_path(path, what)
        self.tmp = temp_beside(self.path)
        self.writer = writer

    def finish(self) -> None:
        """Queue closing and renaming (runs after every queued write)."""
        self.writer.put(self._finish)

    def _finish(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.file.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


class WavRecorder:
    """32-bit float WAV (mono, or ``channels``) written under its own name as the audio comes, its header
    rewritten every ``header_every`` seconds of audio (and at the end): a crash loses at most that much.

    The header is RIFF/WAVE with a ``fmt`` chunk (IEEE float), a ``fact`` chunk (the frame count) and
    the ``data`` chunk; the sizes are 32-bit, so a take ends at 4 GiB (6 hours at 48 kHz).
    """

    HEADER = 58                       # bytes before the first sample
    MAX_BYTES = 0xFFFFFFFF - HEADER

    def __init__(self, path: str | os.PathLike, sample_rate: int, writer: BackgroundWriter, channels: int = 1,
                 header_every: float = 1.0):
        self.path = check_output_path(path, "--record")
        self.writer = writer
        self.rate = int(sample_rate)
        self.channels = int(channels)
        self.every = max(1, int(header_every * self.rate))
        self.frames = 0               # queued by the producer
        self._on_disk = 0             # written by the writer thread
        self._since = 0
        self._full = False
        self.file = None              # opened with the first audio: a failed start leaves an old take alone

    def _header(self, frames: int) -> bytes:
        ch = self.channels
        n = 4 * ch * frames
        fmt = struct.pack("<HHIIHHH", 3, ch, self.rate, 4 * ch * self.rate, 4 * ch, 32, 0)
        return (b"RIFF" + struct.pack("<I", self.HEADER - 8 + n) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt))
                + fmt + b"fact" + struct.pack("<II", 4, frames) + b"data" + struct.pack("<I", n))

    def write(self, x: np.ndarray) -> None:
        self.frames += len(x)
        self.writer.put(self._write, np.asarray(x, np.float32))

    def _open(self) -> None:
        self.file = open(self.path, "wb")
        self.file.write(self._header(0))

    def _write(self, x: np.ndarray) -> None:
        if self.file is None:
            self._open()
        if self._full:
            return
        room = (self.MAX_BYTES - 4 * self.channels * self._on_disk) // (4 * self.channels)
        if len(x) > room:
            x, self._full = x[:room], True
        self.file.write(x.astype("<f4", copy=False).tobytes())
        self._on_disk += len(x)
        self._since += len(x)
        if self._since >= self.every or self._full:
            self._update_header()

    def _update_header(self) -> None:
        f = self.file
        end = f.tell()
        f.seek(0)
        f.write(self._header(self._on_disk))
        f.seek(end)
        f.flush()                     # in the operating system's hands: it survives the process
        self._since = 0

    def finish(self) -> None:
        """Queue the last header update and closing (runs after every queued write)."""
        self.writer.put(self._finish)

    def _finish(self) -> None:
        if self.file is None:
            self._open()
        self._update_header()
        self.file.close()

    def keep(self) -> None:
        """After a write failed (a full disk): close the take with the header of what reached the disk."""
        try:
            if self.file is not None and not self.file.closed:
                self._update_header()
                self.file.close()
        except Exception:
            pass

    def abort(self) -> None:
        """Close and remove the take (only one this recorder began: nothing is opened before the audio)."""
        if self.file is None:
            return
        try:
            self.file.close()
        except Exception:
            pass
        self.path.unlink(missing_ok=True)


class LineLog(_AtomicOutput):
    """JSON lines, written as they come, finalised atomically by ``finish``."""

    def __init__(self, path: str | os.PathLike, writer: BackgroundWriter):
        super().__init__(path, "--log-osc", writer)
        self.file = open(self.tmp, "w", encoding="utf-8")

    def write(self, obj: dict) -> None:
        self.writer.put(self._write, json.dumps(obj, separators=(",", ":")))

    def _write(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()
