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
import threading
import time
import uuid


class JackServer:
    """``jackd -d dummy`` at ``rate`` Hz, ``period`` frames, under a unique name; started at once."""

    def __init__(self, rate: int = 48000, period: int = 256, prefix: str = "sonotest", realtime: bool = False):
        self.name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.rate = rate
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_AUDIO_RESERVATION="1")
        # --no-realtime for tests (behaviour); realtime=True (jackd -R, needs rtprio) where figures are taken
        self.cmd = ["jackd", "-R" if realtime else "--no-realtime", "-n", self.name, "-d", "dummy", "-r", str(rate),
                    "-p", str(period)]
        # jackd's chatter goes to a file (a pipe nobody reads could fill up and stall it)
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            ok = subprocess.run(["jack_wait", "-s", self.name, "-w", "-t", "5"], env=self.env,
                                capture_output=True, text=True, timeout=15)
            if ok.returncode != 0 or self.proc.poll() is not None:
                log = self.log()
                hint = ""
                if "Too many servers" in log:
                    # jackd keeps at most 8 servers in /dev/shm/jack-shm-registry; one killed with SIGKILL
                    # never deregisters, so killed test runs fill it up
                    hint = ("; the JACK server registry is full of servers that were killed without "
                            "deregistering: with no jackd running (pgrep jackd), remove /dev/shm/jack*")
                raise RuntimeError(f"jackd {self.name} did not start{hint}: {ok.stdout} {ok.stderr} {log}")
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


class JackFeeder:
    """A JACK client (the ``JACK-Client`` package) that plays ``audio`` from its port ``feeder:out`` once
    ``go`` is set and records its port ``feeder:in`` all along, both in its process callback, so that
    what it recorded is on the same sample timeline as what it played. ``take()``: the recording from the
    playback's start on; clear ``go`` and ``start`` and set ``go`` again to play once more."""

    def __init__(self, server_name: str, audio, rate: int, seconds: float, name: str = "feeder"):
        import jack
        import numpy as np

        self.client = jack.Client(name, servername=server_name, no_start_server=True)
        self.out = self.client.outports.register("out")
        self.inp = self.client.inports.register("in")
        self.audio = np.asarray(audio, np.float32)
        self.rec = np.zeros(int(seconds * rate), np.float32)
        self.pos = 0
        self.start = None
        self.go = threading.Event()
        self.client.set_process_callback(self._process)

    def _process(self, frames):
        o = self.out.get_array()
        o[:] = 0.0
        if self.go.is_set():
            if self.start is None:
                self.start = self.pos
            k = self.pos - self.start
            if k < len(self.audio):
                n = min(frames, len(self.audio) - k)
                o[:n] = self.audio[k:k + n]
        if self.pos + frames <= len(self.rec):
            self.rec[self.pos:self.pos + frames] = self.inp.get_array()
        self.pos += frames

    def take(self):
        return self.rec[self.start:].copy()

    def patch_into(self, client_prefix: str = "PortAudio") -> None:
        """Connect ``feeder:out`` to the other client's first input port (instead of the driver's capture
        ports) and that client's first output port to ``feeder:in``."""
        ins = [p.name for p in self.client.get_ports(f"{client_prefix}:", is_input=True, is_audio=True)]
        outs = [p.name for p in self.client.get_ports(f"{client_prefix}:", is_output=True, is_audio=True)]
        if not ins or not outs:
            raise AssertionError(f"no {client_prefix} ports: {[p.name for p in self.client.get_ports()]}")
        for src in [p.name for p in self.client.get_all_connections(ins[0])]:
            self.client.disconnect(src, ins[0])
        self.client.connect(f"{self.client.name}:out", ins[0])
        self.client.connect(outs[0], f"{self.client.name}:in")

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()
