"""Shared pieces for the control-surface tests: a real UDP client that reads replies."""

import socket
import time

import pytest
from pythonosc.osc_message import OscMessage

from sonolatent.control.server import OscServer, encode
from sonolatent.control.target import RecordingTarget


class Client:
    """A UDP socket bound on 127.0.0.1 that sends OSC and reads the server's replies."""

    def __init__(self, server_address):
        self.server = server_address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)

    @property
    def address(self):
        return self.sock.getsockname()

    def send(self, address_or_dgram, *values, types=None):
        data = address_or_dgram if isinstance(address_or_dgram, bytes) else encode(address_or_dgram, values, types)
        self.sock.sendto(data, self.server)

    def recv(self, timeout=2.0):
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65536)
        m = OscMessage(data)
        return m.address, m.params

    def ask(self, address, *values, types=None, timeout=2.0):
        self.send(address, *values, types=types)
        return self.recv(timeout)

    def drain(self, wait=0.2):
        out = []
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.recv(left))
            except socket.timeout:
                return out

    def close(self):
        self.sock.close()


def write_sounds(folder, **extra):
    """Real WAV files for slot loads: ``sine.wav`` and ``saw.wav`` (0.5 s), plus ``name=samples`` ones."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(0.5 * 44100)) / 44100
    sounds = {"sine.wav": 0.5 * np.sin(2 * np.pi * 220 * t), "saw.wav": 0.3 * ((t * 330) % 1.0 - 0.5), **extra}
    for name, x in sounds.items():
        sf.write(folder / name, np.asarray(x, np.float32), 44100)
    return folder


def wait_until(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


@pytest.fixture
def target():
    return RecordingTarget()


@pytest.fixture
def make_server(target):
    servers = []

    def make(**kw):
        s = OscServer(kw.pop("target", target), "127.0.0.1", 0, **kw).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(make_server):
    return make_server()


@pytest.fixture
def client(server):
    c = Client(server.address)
    yield c
    c.close()
