"""What the daemon answers is what it plays: derived values read back the state in effect, patches
store it, and ``/sono/info`` gives the delays in device-rate samples.

Everything goes over real UDP through the control surface to a running engine; values are polled
until the producer has applied the change (no timing is asserted).
"""

from __future__ import annotations

import math
import socket
import time

import numpy as np
import pytest
import soundfile as sf
from pythonosc.osc_message import OscMessage

from sonolatent.control.server import encode
from sonolatent.control.surface import ControlSurface
from sonolatent.engine.core import COMMIT_CHUNK
from sonolatent.engine.patch import load_patch
from sonolatent.engine.runtime import Engine
from sonolatent.engine.safety import OutputStage, SafetyConfig
from sonolatent.models.synth import StreamingSynth


class Client:
    def __init__(self, port):
        self.to = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)

    def send(self, address, *values):
        self.sock.sendto(encode(address, values), self.to)

    def ask(self, address):
        self.send(address)
        while True:
            m = OscMessage(self.sock.recvfrom(65536)[0])
            if m.address == address:
                return tuple(m.params)

    def info(self) -> dict:
        p = self.ask("/sono/info")
        return dict(zip(p[::2], p[1::2]))

    def until(self, address, want, timeout=10.0):
        """Ask ``address`` until it answers ``want`` (approximately); the last answer."""
        end = time.monotonic() + timeout
        while True:
            got = self.ask(address)
            if len(got) == len(want) and np.allclose(got, want, atol=1e-6):
                return got
            if time.monotonic() > end:
                return got
            time.sleep(0.01)


@pytest.fixture
def daemon(bundle, samples_dir, tmp_path):
    made = []

    def start(**kw):
        kw.setdefault("mode", "headless")
        e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, patches_dir=tmp_path, **kw)
        surface = ControlSurface(e, "127.0.0.1", 0, oscquery_port=-1).start()
        made.append((e, surface))
        e.start()
        return e, Client(surface.osc.address[1])

    yield start
    for e, surface in reversed(made):     # last started, first closed: each restores what it found
        surface.stop()
        e.request_quit()
        e.close()


def test_weights_read_back_the_blend_that_morph_and_xy_make_and_patches_store_it(daemon, tmp_path):
    e, c = daemon()
    zeros = (0.0,) * 6
    c.send("/sono/morph", 0.25)
    assert c.until("/sono/weights", (0.75, 0.25) + zeros) == pytest.approx((0.75, 0.25) + zeros)
    c.send("/sono/morph/pair", 1, 3)
    assert c.until("/sono/weights", (0, 0.75, 0, 0.25, 0, 0, 0, 0)) == pytest.approx((0, 0.75, 0, 0.25, 0, 0, 0, 0))
    c.send("/sono/xy", 0.3, 0.7)
    want = (0.7 * 0.3, 0.3 * 0.3, 0.7 * 0.7, 0.3 * 0.7) + (0.0,) * 4
    assert c.until("/sono/weights", want) == pytest.approx(want)
    c.send("/sono/xy/x", 1.0)                                   # one axis: the other stays
    assert c.until("/sono/xy", (1.0, 0.7)) == pytest.approx((1.0, 0.7))
    assert c.until("/sono/weights", (0, 0.3, 0, 0.7, 0, 0, 0, 0)) == pytest.approx((0, 0.3, 0, 0.7, 0, 0, 0, 0))
    c.send("/sono/weights", 0.5, 0.5, 0, 1, 0, 0, 0, 0)         # read back normalised, as played
    assert c.until("/sono/weights", (0.25, 0.25, 0, 0.5, 0, 0, 0, 0)) == pytest.approx((0.25, 0.25, 0, 0.5, 0, 0, 0, 0))
    # what the engine blends is what it answers
    assert np.allclose(e.core.weights.target, c.ask("/sono/weights"))
    c.send("/sono/latent/2", 1.5)                               # the vector and its coordinates agree
    assert c.until("/sono/latent/2", (1.5,)) == (1.5,)
    assert c.until("/sono/latent", (0, 0, 1.5) + (0,) * (e.core.D - 3))[2] == 1.5

    # a saved patch holds the blend in effect, and loading it gives the same blend back
    c.send("/sono/xy", 0.3, 0.7)
    c.until("/sono/weights", want)
    c.send("/sono/patch/save", "now")
    end = time.monotonic() + 10
    while not (tmp_path / "now.toml").exists() and time.monotonic() < end:
        time.sleep(0.01)
    patch = load_patch(tmp_path / "now.toml", e.namespace)
    stored = dict(patch.changes)
    assert stored["/sono/weights"] == pytest.approx(want)
    assert stored["/sono/xy"] == pytest.approx((0.3, 0.7))
    assert [a for a, _ in patch.changes][-1] == "/sono/xy"      # the way it was set still decides
    c.send("/sono/morph", 0.9)
    c.until("/sono/weights", (0, 0.1, 0, 0.9, 0, 0, 0, 0))
    c.send("/sono/patch/load", "now")
    assert c.until("/sono/weights", want) == pytest.approx(want)


def _held_back_by_synth(bundle) -> int:
    """Model-rate samples the synth holds back, counted: frames in x hop - samples out."""
    s = StreamingSynth(bundle)
    n = sum(len(s.process(np.zeros((bundle.vae.latent_dim, 1), np.float32))) for _ in range(12))
    return 12 * bundle.mel_config.hop_length - n


def _held_back_by_soxr(rate_in, rate_out, chunk, quality) -> float:
    """Output samples a fresh soxr stream (the engine's settings for ``--resampler``) holds back in steady
    state, fed the engine's commit chunks, counted."""
    import soxr

    # lq: the fixed-rate LQ filter where its output comes steadily (44.1 -> 48 kHz), else (2:1, downsampling)
    # the variable-rate one, as hq
    q, vr = ("LQ", False) if quality == "lq" and rate_out == 48000 else ("HQ", True)
    s = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=q, vr=vr)
    given, held = 0, []
    for i in range(300):
        given += len(s.resample_chunk(np.zeros(chunk, np.float32)))
        held.append((i + 1) * chunk * rate_out / rate_in - given)
    return float(np.mean(held[100:]))


def _held_back_by_limiter(rate) -> int:
    """Fed one sample at a time, how many samples after an impulse went in does it come out?"""
    st = OutputStage(rate, SafetyConfig(track=False))
    x = np.zeros(1000, np.float32)
    x[100] = 0.5
    out = []
    for i in range(len(x)):
        out.extend(st.process(x[i:i + 1].copy(), None))
        if len(out) > 100:
            assert out[100] == 0.5 and not any(out[:100])   # it keeps its place in the stream
            return i - 100
    raise AssertionError("the impulse never came out")


@pytest.mark.parametrize("rate,quality", [(48000, "lq"), (48000, "hq"), (22050, "lq")])
def test_info_reports_the_delays_in_device_rate_samples(bundle, daemon, rate, quality, tmp_path):
    hop, model_rate = bundle.mel_config.hop_length, bundle.sample_rate
    ratio = rate / model_rate
    chunk = COMMIT_CHUNK
    want = {"model": round(_held_back_by_synth(bundle) * ratio), "chunk": round(chunk * ratio),
            "ring": 256 + round(0.010 * rate), "resampler": round(_held_back_by_soxr(model_rate, rate, chunk, quality)),
            "limiter": round(0.002 * rate)}
    assert want["limiter"] == _held_back_by_limiter(rate)
    _, c = daemon(device_rate=rate, block_size=256, safety_ms=10.0, resampler=quality)
    info = c.info()
    assert info["device_rate"] == rate and info["resampler"] == quality
    assert info["frame_samples"] == round(hop * ratio)
    got = {k: info[f"delay_{k}_samples"] for k in want}
    assert got == want
    assert info["delay_samples"] == sum(want.values())
    _, c_off = daemon(device_rate=rate, safety=SafetyConfig(limiter=False))
    assert c_off.info()["delay_limiter_samples"] == 0

    # measured through a freewheel render: what model, resampler and limiter hold back is what never
    # reaches the recording of N blocks (mono and stereo alike)
    for channels in (1, 2):
        rec = tmp_path / f"fw{rate}_{channels}.wav"
        e = Engine(StreamingSynth(bundle), samples_dir=tmp_path, mode="freewheel", device_rate=rate, record=rec,
                   duration=0.5, voices=4, channels=channels, resampler=quality)
        e.start()
        assert e.wait(60)
        e.close()
        n_blocks = e.core.block
        y, sr = sf.read(rec, dtype="float32", always_2d=True)
        held = n_blocks * hop * ratio - len(y)
        assert sr == rate and y.shape[1] == channels
        assert abs(held - (want["model"] + want["resampler"] + want["limiter"])) <= 1.5
        d = e.delays()
        held_parts = ("model", "resampler", "limiter")
        assert {k: d[k] for k in held_parts} == {k: want[k] for k in held_parts}
        assert d["ring"] == 0 and d["total"] == d["model"] + d["chunk"] + d["resampler"] + d["limiter"]
        assert math.isclose(held, d["model"] + d["resampler"] + d["limiter"], abs_tol=1.5)


def test_the_dry_run_target_reads_back_the_same_way():
    """``RecordingTarget`` (the control surface's in-memory target) derives the weights as the engine does."""
    from sonolatent.control.target import RecordingTarget

    surface = ControlSurface(RecordingTarget(), "127.0.0.1", 0, oscquery_port=-1).start()
    try:
        c = Client(surface.osc.address[1])
        c.send("/sono/morph", 0.25)
        assert c.until("/sono/weights", (0.75, 0.25) + (0.0,) * 6) == pytest.approx((0.75, 0.25) + (0.0,) * 6)
        c.send("/sono/xy/y", 0.5)
        assert c.until("/sono/weights", (0.5, 0, 0.5, 0, 0, 0, 0, 0)) == pytest.approx((0.5, 0, 0.5, 0, 0, 0, 0, 0))
    finally:
        surface.stop()
