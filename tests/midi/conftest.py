"""Real parts for the MIDI bridge tests: UDP receivers, a private JACK server, the bridge CLI."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sonolatent.control.wire import parse_packet
from sonolatent.jackserver import JackServer
from pythonosc.osc_message import OscMessage

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; Python does not export it


class UdpReceiver:
    """Collects OSC messages on 127.0.0.1:<free port> with kernel arrival times (seconds)."""

    def __init__(self, port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # SO_RCVBUF is capped by net.core.rmem_max (~208 KiB); as root SO_RCVBUFFORCE is not, so a
        # burst is not dropped by the kernel while this thread waits for a loaded CPU
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is not None:
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                    break
                except OSError:
                    continue
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.messages: list[tuple[float, str, tuple]] = []
        self.bundles: list[list[str]] = []   # the addresses of each bundle received
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.05)
            if not r:
                continue
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, 64)
            except OSError:
                return
            t = time.time()
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    t = sec + nsec * 1e-9
            if data.startswith(b"#bundle"):   # messages sent together (mpe: a note-on and its expression)
                got = parse_packet(data)[0]
                self.bundles.append([m.address for m in got])
                self.messages.extend((t, m.address, tuple(m.params)) for m in got)
                continue
            m = OscMessage(data)
            self.messages.append((t, m.address, tuple(m.params)))

    def without_ping(self) -> list[tuple[float, str, tuple]]:
        return [m for m in self.messages if m[1] != "/sono/ping"]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[float, str, tuple]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.without_ping()) < count:
            time.sleep(0.01)
        return self.without_ping()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self.sock.close()


@pytest.fixture
def receiver():
    r = UdpReceiver()
    yield r
    r.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bridge_cmd(*args: str) -> list[str]:
    return [PYTHON, "-m", "sonolatent", "bridge", *args]


def run_bridge(*args: str, timeout: float = 30, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(bridge_cmd(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env)


class LineReader:
    """Reads a subprocess pipe on a thread so tests can wait for a line without blocking forever."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            time.sleep(0.01)
        raise AssertionError(f"no line containing {text!r} within {timeout} s; got: {self.lines}")

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "\n".join(self.lines)


class BridgeProcess:
    """The bridge CLI as a running subprocess; ``stop()`` sends SIGTERM and returns the exit status."""

    def __init__(self, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen(bridge_cmd(*args), cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.err = LineReader(self.proc.stderr)
        self.out = LineReader(self.proc.stdout)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the bridge did not stop on SIGTERM")


@pytest.fixture
def bridges():
    """Start bridges with ``bridges(*args)``; all are stopped (killed if need be) at teardown."""
    started: list[BridgeProcess] = []

    def start(*args: str, env: dict | None = None) -> BridgeProcess:
        b = BridgeProcess(*args, env=env)
        started.append(b)
        return b

    yield start
    for b in started:
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()


# ---------------------------------------------------------------------------
# a private JACK server (dummy driver, sonolatent/jackserver.py): a unique name, so nothing else collides


@pytest.fixture(scope="module")
def jack_server():
    """A JACK dummy server for this module; the test process talks to it too. Always stopped."""
    server = JackServer()
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    pidfile = os.environ.get("SONOTEST_JACK_PIDFILE")  # lets a test check the cleanup
    if pidfile:
        Path(pidfile).write_text(f"{server.proc.pid} {server.name}\n")
    try:
        yield server
    finally:
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
        server.stop()
