"""Real-time through a real JACK server (dummy driver): the daemon plays via PortAudio's JACK host API.

jackd runs with a unique name; the daemon (a subprocess) opens PortAudio's JACK
device, jack_rec records its output port from JACK, OSC packets turn the sound
on and off, and the daemon's counters must show that its ring never ran short while it plays
(and at most one isolated xrun flagged by the non-real-time JACK server). The recording
made by JACK must hold exactly the samples the daemon recorded on its side.
"""

import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from pythonosc.osc_message import OscMessage

from sonolatent.control.server import encode

from sonolatent.jackserver import JackServer

pytestmark = pytest.mark.jack
RATE = 48000


@pytest.fixture
def jack():
    with JackServer(RATE, 256, prefix="sl-engine") as j:
        yield j


class Lines:
    """A subprocess's output lines, read on a thread; ``wait_for`` a regex (fails fast if it exits)."""

    def __init__(self, proc):
        self.lines = []
        self.proc = proc
        threading.Thread(target=lambda: [self.lines.append(x.rstrip()) for x in proc.stdout], daemon=True).start()

    def wait_for(self, pattern, timeout=60.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                time.sleep(0.2)
                end = min(end, time.monotonic())
            for line in self.lines:
                m = re.search(pattern, line)
                if m:
                    return m
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r}: {self.lines}")


def status(sock, addr) -> dict:
    sock.sendto(encode("/sono/status"), addr)
    m = OscMessage(sock.recvfrom(65536)[0])
    assert m.address == "/sono/status"
    return dict(zip(m.params[::2], m.params[1::2]))


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def test_daemon_plays_through_jack_reacts_to_osc_and_never_underflows(jack, tiny_bundle_dir, samples_dir, tmp_path):
    dev = jack.device()
    patch = tmp_path / "p.toml"
    patch.write_text('[slots]\n0 = "saw"\n1 = "chirp"\n[params]\n"/sono/morph" = 0.5\n"/sono/attack" = 0.005\n'
                     '"/sono/gain" = 1.0\n')
    rec = tmp_path / "daemon.wav"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "sonolatent", "serve", "--checkpoint", str(tiny_bundle_dir), "--samples",
         str(samples_dir), "--patch", str(patch), "--device", str(dev), "--port", "0", "--oscquery-port", "-1",
         "--record", str(rec), "--duration", "30"],
        env=jack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cap = tmp_path / "jack.wav"
    recorder = None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        out = Lines(daemon)
        m = out.wait_for(r"OSC on udp 127\.0\.0\.1:(\d+).*at 48000 Hz")
        osc = ("127.0.0.1", int(m.group(1)))
        jack.wait_port("PortAudio:out_0")
        recorder = subprocess.Popen(["jack_rec", "-f", str(cap), "-d", "5", "-b", "32", "PortAudio:out_0"],
                                    env=jack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock.settimeout(3.0)
        # counters once the stream runs and the capture client has joined the graph (JACK may flag
        # an xrun to every client while clients start): from here on the performance must not underflow
        time.sleep(0.3)
        while (before := status(sock, osc))["callbacks"] < 200:
            time.sleep(0.05)
        t_play = time.monotonic()
        sock.sendto(encode("/sono/play", (1.0,)), osc)
        time.sleep(1.0)
        sock.sendto(encode("/sono/gain", (0.0,)), osc)
        time.sleep(0.6)
        sock.sendto(encode("/sono/gain", (1.0,)), osc)
        time.sleep(0.8)
        after = status(sock, osc)
        assert time.monotonic() - t_play < 3.5          # all of it inside jack_rec's 5 s
        sock.sendto(encode("/sono/quit"), osc)
        assert daemon.wait(30) == 0
        assert recorder.wait(30) == 0
    finally:
        sock.close()
        for p in (daemon, recorder):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
    # The engine's own promise is strict: the producer always had the next block ready.
    assert after["ring_underruns"] == before["ring_underruns"], (before, after)
    # The device flag is raised for any xrun in the JACK graph (jackd, jack_rec, us). A jackd without
    # real-time priority on a shared 2-core CI machine is itself descheduled now and then, so one
    # isolated flag in the ~2.4 s is tolerated; a callback that blocks or waits on the GIL makes many.
    assert after["underflows"] - before["underflows"] <= 1, (before, after)
    assert after["blocks"] > before["blocks"] + 150, after
    final = out.wait_for(r"ring underruns (\d+)")     # the daemon's closing summary agrees
    assert int(final.group(1)) >= after["ring_underruns"], final.group(0)

    heard, sr = sf.read(cap, dtype="float32", always_2d=True)
    heard = heard[:, 0]
    assert sr == RATE
    on = int(np.argmax(np.abs(heard) > 1e-6))
    assert on > 0.2 * RATE, "sound before /sono/play"
    seg = lambda a, b: heard[on + int(a * RATE):on + int(b * RATE)]   # noqa: E731 (seconds after the onset)
    loud = rms(seg(0.2, 0.9))
    assert loud > 1e-3
    assert rms(seg(1.2, 1.5)) < 0.01 * loud            # /sono/gain 0 heard
    assert rms(seg(1.8, 2.3)) > 0.5 * loud             # /sono/gain 1 heard again
    # what JACK carried is exactly what the daemon rendered, with no gap or repeat
    played, _ = sf.read(rec, dtype="float32")
    on_p = int(np.argmax(np.abs(played) > 1e-6))
    n = min(len(played) - on_p, len(heard) - on, int(2.4 * RATE))
    assert n > 2 * RATE
    assert np.abs(heard[on:on + n] - played[on_p:on_p + n]).max() < 1e-6
