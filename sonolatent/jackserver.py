"""A private JACK dummy server: real audio callbacks on a machine without a sound card (tests, benchmarks).

``JackServer()`` starts ``jackd --no-realtime -n NAME -d dummy`` under a
unique name, so it never collides with another server, and waits until it
answers; ``stop()`` (or leaving a ``with`` block) always ends it, killing it
if it does not stop on SIGTERM. ``env`` points a child process at it
(``JACK_DEFAULT_SERVER``); ``JACK_NO_AUDIO_RESERVATION`` keeps jackd away from
D-Bus device reservation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid


class JackServer:
    """``jackd -d dummy`` at ``rate`` Hz, ``period`` frames, under a unique name; started at once."""

    def __init__(self, rate: int = 48000, period: int = 256, prefix: str = "sonotest"):
        self.name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.rate = rate
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_AUDIO_RESERVATION="1")
        self.cmd = ["jackd", "--no-realtime", "-n", self.name, "-d", "dummy", "-r", str(rate), "-p", str(period)]
        # jackd's chatter goes to a file (a pipe nobody reads could fill up and stall it)
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            ok = subprocess.run(["jack_wait", "-s", self.name, "-w", "-t", "5"], env=self.env,
                                capture_output=True, text=True, timeout=15)
            if ok.returncode != 0 or self.proc.poll() is not None:
                raise RuntimeError(f"jackd {self.name} did not start: {ok.stdout} {ok.stderr} {self.log()}")
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> "JackServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        """What jackd printed so far (the last 2000 characters)."""
        try:
            self._log.seek(0)
            return self._log.read().decode(errors="replace")[-2000:]
        except (OSError, ValueError):
            return ""

    def run(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        """Run a JACK tool (``jack_lsp``, ``jack_connect``...) against this server."""
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=kw.pop("timeout", 20), **kw)

    def ports(self) -> list[str]:
        out = self.run("jack_lsp", "-s", self.name, timeout=10)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()]

    def wait_port(self, name: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if name in self.ports():
                return
            time.sleep(0.05)
        raise AssertionError(f"JACK port {name!r} did not appear; ports: {self.ports()}")

    def connect(self, src: str, dst: str) -> None:
        subprocess.run(["jack_connect", "-s", self.name, src, dst], env=self.env, check=True,
                       capture_output=True, timeout=10)

    def device(self) -> int:
        """PortAudio's JACK output device index, asked in a fresh process (PortAudio enumerates once, at start)."""
        code = textwrap.dedent("""
            import sounddevice as sd
            for api in sd.query_hostapis():
                if api["name"] == "JACK Audio Connection Kit":
                    print([d for d in api["devices"] if sd.query_devices(d)["max_output_channels"] > 0][0])
        """)
        out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=60)
        if not out.stdout.strip():
            raise AssertionError(f"no JACK device in PortAudio: {out.stderr[-500:]}")
        return int(out.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
