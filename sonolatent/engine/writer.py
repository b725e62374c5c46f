"""Outputs written while the engine plays: the recording and the performance log.

Both are written incrementally on one background thread (the producer only
queues; it never touches the disk) to a temporary file in the destination's
folder, and moved into place with ``os.replace`` when closed: the final name
holds a whole file or nothing. ``abort()`` removes the temporary file.
"""

from __future__ import annotations

import json
import os
import queue
import threading

import numpy as np

from ..outputs import check_output_path, temp_beside


class BackgroundWriter:
    """One thread that runs queued writes in order."""

    def __init__(self):
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sonolatent-writer", daemon=True)
        self.error: BaseException | None = None
        self._thread.start()

    def put(self, fn, *args) -> None:
        self._q.put((fn, args))

    def _run(self) -> None:
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


class WavRecorder(_AtomicOutput):
    """Float32 WAV (mono, or ``channels``), written as it comes, finalised atomically by ``finish``."""

    def __init__(self, path: str | os.PathLike, sample_rate: int, writer: BackgroundWriter, channels: int = 1):
        import soundfile as sf

        super().__init__(path, "--record", writer)
        try:
            self.file = sf.SoundFile(str(self.tmp), "w", samplerate=int(sample_rate), channels=int(channels),
                                     subtype="FLOAT", format="WAV")
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        self.frames = 0

    def write(self, x: np.ndarray) -> None:
        self.frames += len(x)
        self.writer.put(self.file.write, np.asarray(x, np.float32))


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
