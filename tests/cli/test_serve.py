"""``sonolatent serve`` and ``sonolatent bounce`` as a user runs them: subprocesses, real UDP, real files."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
import soundfile as sf
from pythonosc.osc_message import OscMessage

from sonolatent.control.server import encode


def sonolatent(*args, **kw):
    return subprocess.run([sys.executable, "-m", "sonolatent", *map(str, args)], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 120), **kw)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("samples")
    t = np.arange(int(0.5 * 44100)) / 44100
    sf.write(d / "a.wav", (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 44100)
    sf.write(d / "b.wav", (0.3 * ((t * 330) % 1.0 - 0.5)).astype(np.float32), 44100)
    return d


class Daemon:
    """``sonolatent serve`` running; ``port`` from its first line; ``lines`` collected on a thread."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "sonolatent", "serve", "--port", "0", *map(str, args)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        threading.Thread(target=lambda: [self.lines.append(x.rstrip()) for x in self.proc.stdout],
                         daemon=True).start()
        end = time.monotonic() + 90
        while not any("OSC on udp" in x for x in self.lines):
            if self.proc.poll() is not None or time.monotonic() > end:
                time.sleep(0.2)
                self.kill()
                raise AssertionError(f"serve did not start: {self.lines}")
            time.sleep(0.02)
        first = next(x for x in self.lines if "OSC on udp" in x)
        self.port = int(first.split("OSC on udp ")[1].split(",")[0].split(";")[0].rsplit(":", 1)[1])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)

    def send(self, address, *values):
        self.sock.sendto(encode(address, values), ("127.0.0.1", self.port))

    def ask(self, address):
        self.send(address)
        return OscMessage(self.sock.recvfrom(65536)[0])

    def wait(self, timeout=60):
        rc = self.proc.wait(timeout)
        time.sleep(0.1)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "sock", None):
            self.sock.close()


@pytest.fixture
def daemons():
    ds = []

    def start(*args):
        d = Daemon(*args)
        ds.append(d)
        return d

    yield start
    for d in ds:
        d.kill()


def test_headless_performance_over_osc_bounces_to_the_same_samples(tiny_bundle_dir, samples, tmp_path, daemons):
    rec, log, out = tmp_path / "take.wav", tmp_path / "take.jsonl", tmp_path / "bounce.wav"
    d = daemons("--checkpoint", tiny_bundle_dir, "--samples", samples, "--no-audio", "--rate", 48000,
                "--record", rec, "--log-osc", log)
    assert any("oscsend 127.0.0.1" in x for x in d.lines)
    d.send("/sono/slot/0/load", "a")
    d.send("/sono/slot/1/load", "b")
    time.sleep(0.3)
    d.send("/sono/play", 1.0)
    for k in range(10):
        time.sleep(0.05)
        d.send("/sono/morph", k / 10)
    d.send("/sono/transpose", 5.0)
    d.send("/sono/latent/0", -1.0)
    end = time.monotonic() + 20          # the loader may take a while on a busy machine
    while d.ask("/sono/slot/1/name").params != ["b"]:
        assert time.monotonic() < end, "slot 1 never loaded"
        time.sleep(0.05)
    while (lambda p: dict(zip(p[::2], p[1::2])))(d.ask("/sono/status").params)["blocks"] < 50:   # >= 0.5 s
        assert time.monotonic() < end, "the daemon does not render"
        time.sleep(0.05)
    d.send("/sono/quit")
    assert d.wait() == 0
    assert "stopped after" in d.lines[-1] and "underflows 0," in d.lines[-1]   # no device, no device underflows
    assert "first at callback" not in d.lines[-1]
    events = [json.loads(x) for x in log.read_text().splitlines()]
    assert events[-1] == {"end": events[-1]["end"]}
    # every change is in the log, in order (how many blocks they spread over depends on the machine's load)
    changes = [(a, v) for e in events[1:-1] for a, v in e.get("changes", [])]
    morphs = [v[0] for a, v in changes if a == "/sono/morph"]
    assert morphs and morphs == sorted(morphs) and morphs[-1] == pytest.approx(0.9), morphs
    assert ("/sono/transpose", [5.0]) in changes and ("/sono/latent/0", [-1.0]) in changes
    r = sonolatent("bounce", log, "-o", out)
    assert r.returncode == 0, r.stderr
    live, sr = sf.read(rec, dtype="float32")
    again, sr2 = sf.read(out, dtype="float32")
    assert sr == sr2 == 48000 and len(live) > 24000 and np.abs(live).max() > 1e-3  # 50 blocks and the fade
    assert np.array_equal(live, again)


def test_sigterm_fades_out_exits_0_and_finalises_outputs(tiny_bundle_dir, samples, tmp_path, daemons):
    rec, log = tmp_path / "t.wav", tmp_path / "t.jsonl"
    d = daemons("--checkpoint", tiny_bundle_dir, "--samples", samples, "--no-audio", "--record", rec,
                "--log-osc", log, "--oscquery-port", -1)
    d.send("/sono/free", 1)
    d.send("/sono/play", 1.0)
    time.sleep(0.5)
    assert not log.exists()          # the log: written to a temporary name until the end
    d.proc.send_signal(signal.SIGTERM)
    assert d.wait() == 0
    x, sr = sf.read(rec, dtype="float32")
    assert sr == 44100 and np.abs(x[-100:]).max() < 1e-4 < np.abs(x).max()   # faded out, not cut
    assert json.loads(log.read_text().splitlines()[-1])["end"] > 0
    assert not list(tmp_path.glob(".*part"))


def test_freewheel_duration_and_patch(tiny_bundle_dir, samples, tmp_path):
    patch = tmp_path / "p.toml"
    patch.write_text('[slots]\n0 = "a"\n[params]\n"/sono/gain" = 0.5\n')
    rec = tmp_path / "f.wav"
    r = sonolatent("serve", "--checkpoint", tiny_bundle_dir, "--samples", samples, "--patch", patch,
                   "--freewheel", "--duration", 2, "--record", rec, "--port", 0)
    assert r.returncode == 0, r.stderr
    assert "freewheel" in r.stdout
    x, sr = sf.read(rec, dtype="float32")
    assert 2.0 <= len(x) / sr < 2.2


@pytest.mark.parametrize("args, message", [
    (["--freewheel"], "--duration"),
    (["--no-audio", "--samples", "/nonexistent"], "--samples"),
    (["--no-audio", "--record", "/nonexistent/x.wav"], "--record"),
    (["--no-audio", "--patch", "missing.toml", "--record", "r.wav", "--log-osc", "l.jsonl"], "missing.toml"),
    (["--no-audio", "--block-size", "3"], "--block-size"),
])
def test_user_mistakes_are_one_line_errors(tiny_bundle_dir, args, message, tmp_path):
    r = sonolatent("serve", "--checkpoint", tiny_bundle_dir, "--port", 0, *args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("sonolatent: error:") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint_and_bad_log(tmp_path):
    r = sonolatent("serve", "--checkpoint", tmp_path / "none", "--no-audio")
    assert r.returncode == 2 and "checkpoint folder not found" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    r = sonolatent("bounce", bad, "-o", tmp_path / "o.wav")
    assert r.returncode == 2 and "bad.jsonl:1" in r.stderr and not (tmp_path / "o.wav").exists()


def test_list_devices_and_help():
    r = sonolatent("serve", "--list-devices")
    assert r.returncode == 0
    r = sonolatent("serve", "--help")
    assert r.returncode == 0 and "--log-osc" in r.stdout and "--host" in r.stdout and "--oscquery-port" in r.stdout
    assert "--bind" not in r.stdout and "--http-port" not in r.stdout      # old spellings: accepted, not listed
    r = sonolatent("bounce", "--help")
    assert r.returncode == 0 and "LOG" in r.stdout


def test_old_option_spellings_still_work():
    from sonolatent.cli.main import build_parser

    argv = ["serve", "--bind", "127.0.0.2", "--http-port", "9123"]
    args = build_parser(argv).parse_args(argv)
    assert (args.host, args.oscquery_port) == ("127.0.0.2", 9123)


def test_stop_line_names_the_first_underflow_only_when_there_is_one():
    from sonolatent.cli.serve import stop_line

    st = {"blocks": 10, "callbacks": 40, "underflows": 0, "underflow_first_callback": -1, "ring_underruns": 0,
          "render_ms_mean": 1.0, "render_ms_max": 2.0, "frame_ms": 11.6}
    assert "underflows 0, ring underruns 0" in stop_line(st) and "callback -1" not in stop_line(st)
    st.update(underflows=2, underflow_first_callback=17)
    assert "underflows 2 (first at callback 17), ring underruns 0" in stop_line(st)


def test_without_an_audio_device_serve_says_so_and_runs_headless(tiny_bundle_dir, tmp_path):
    env = dict(os.environ, JACK_DEFAULT_SERVER=f"sl-none-{uuid.uuid4().hex[:8]}",   # no JACK server by that name
               XDG_DATA_HOME=str(tmp_path / "data"))
    (tmp_path / "here").mkdir()
    probe = subprocess.run([sys.executable, "-c", "import sounddevice as sd; sd.query_devices(kind='output')"],
                           env=env, capture_output=True, timeout=60)
    r = sonolatent("serve", "--checkpoint", tiny_bundle_dir, "--port", 0, "--duration", 0.5, env=env,
                   cwd=tmp_path / "here")
    assert r.returncode == 0, r.stderr
    if probe.returncode != 0:      # this machine has no sound card (the test rig)
        assert "no audio output device" in r.stderr and "running headless" in r.stderr
        assert "own real-time clock" in r.stdout
        takes = list((tmp_path / "data" / "sonolatent" / "takes").glob("sonolatent-take-*.wav"))
        assert len(takes) == 1 and f"recording to {takes[0]}" in r.stderr     # records what it played, named at start
        assert list((tmp_path / "here").iterdir()) == []                      # and not into the current folder
    else:                          # a machine with one plays through it
        assert "audio:" in r.stdout


def test_kill_9_mid_take_leaves_a_playable_take_under_its_name_and_stale_parts_are_reported(
        tiny_bundle_dir, samples, tmp_path, daemons):
    """The recording is written under its own name with its header rewritten every second: a daemon
    killed with SIGKILL leaves a WAV that opens, missing at most about a second. Temporary files left
    by an earlier crash (a take of an older version, a patch save) are named in a warning at start."""
    patches = tmp_path / "patches"
    patches.mkdir()
    stale = [tmp_path / ".t.wav.k3j9x_2a.part", patches / ".mine.toml.Ab12Cd34.part"]
    for p in stale:
        p.write_bytes(b"RIFF")
    rec = tmp_path / "t.wav"
    d = daemons("--checkpoint", tiny_bundle_dir, "--samples", samples, "--no-audio", "--record", rec,
                "--patches", patches, "--oscquery-port", -1)
    warned = [x for x in d.lines if "unfinished temporary file" in x]
    assert len(warned) == 2 and ".t.wav.k3j9x_2a.part" in warned[0] + warned[1], d.lines
    assert ".mine.toml.Ab12Cd34.part" in warned[0] + warned[1] and all(p.exists() for p in stale)   # not removed
    d.send("/sono/free", 1)
    d.send("/sono/play", 1.0)
    hop_out = None
    end = time.monotonic() + 60
    while True:                       # at least 2.5 s of audio rendered
        params = d.ask("/sono/status").params
        st = dict(zip(params[::2], params[1::2]))
        info = d.ask("/sono/info").params
        info = dict(zip(info[::2], info[1::2]))
        hop_out = info["frame_samples"] * info["device_rate"] / info["model_rate"]
        if st["blocks"] * hop_out >= 2.5 * info["device_rate"]:
            break
        assert time.monotonic() < end, st
        time.sleep(0.1)
    d.proc.kill()                     # SIGKILL: no handler, no finally, no flush
    d.proc.wait(10)
    rate = info["device_rate"]
    x, sr = sf.read(rec, dtype="float32")
    assert sr == rate
    rendered = st["blocks"] * hop_out
    assert rendered - 1.25 * rate <= len(x) <= rendered + 2 * rate, (len(x), rendered)
    assert np.abs(x[rate // 2:]).max() > 1e-3             # the sound, not an empty file


def test_the_takes_folder_follows_xdg_and_the_option(monkeypatch, tmp_path):
    from pathlib import Path

    from sonolatent.cli.serve import default_take_name, takes_folder
    from sonolatent.errors import SonolatentError

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert takes_folder() == tmp_path / "home" / ".local" / "share" / "sonolatent" / "takes"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert takes_folder() == tmp_path / "xdg" / "sonolatent" / "takes"
    assert takes_folder(str(tmp_path / "mine")) == tmp_path / "mine"
    first = default_take_name(tmp_path / "mine" / "deeper")       # the folder is made
    Path(first).write_bytes(b"")
    second = default_take_name(tmp_path / "mine" / "deeper")
    assert Path(first).parent == tmp_path / "mine" / "deeper" and second != first and second.endswith("-2.wav")
    (tmp_path / "file").write_text("")
    with pytest.raises(SonolatentError, match=r"^takes folder .*file/x: cannot create it"):
        default_take_name(tmp_path / "file" / "x")


def test_serve_defaults_are_the_engines():
    """serve's --help names the engine's defaults without importing the engine: they must agree."""
    import argparse

    from sonolatent.cli import serve
    from sonolatent.engine.core import DEFAULT_RESAMPLER, DEFAULT_VOICES
    from sonolatent.engine.runtime import DEFAULT_BUFFER_MS, DEFAULT_RT_PRIORITY

    sub = argparse.ArgumentParser().add_subparsers()
    serve.register(sub)
    ns = sub.choices["serve"].parse_args([])
    assert (ns.buffer_ms, ns.voices, ns.resampler, ns.rt_priority) == \
        (DEFAULT_BUFFER_MS, DEFAULT_VOICES, DEFAULT_RESAMPLER, DEFAULT_RT_PRIORITY)


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "2000"])
def test_a_bad_buffer_ms_is_one_line(value):
    r = subprocess.run([sys.executable, "-m", "sonolatent", "serve", "--no-audio", "--buffer-ms", value],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "--buffer-ms" in r.stderr and "'auto' or 0..1000 milliseconds" in r.stderr
