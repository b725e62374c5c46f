"""Real parts: a JACK dummy server, JACK MIDI ports, the bridge CLI, liblo's oscdump and a UDP socket."""

import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import mido
import pytest
import rtmidi

from pythonosc.osc_message import OscMessage

from sonolatent.midi import load_mapping
from sonolatent.midi.osc_out import build_message

from .conftest import REPO, LineReader, UdpReceiver, free_udp_port, run_bridge

pytestmark = pytest.mark.jack

MODWHEEL = str(REPO / "patches" / "midi" / "modwheel_morph.toml")
XY = str(REPO / "patches" / "midi" / "xy_pad.toml")


def uid() -> str:
    return uuid.uuid4().hex[:6]


class OscDump:
    """liblo's ``oscdump -L PORT`` as a subprocess; ``messages()`` parses its lines."""

    def __init__(self):
        self.port = free_udp_port()
        self.proc = subprocess.Popen(["oscdump", "-L", str(self.port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.reader = LineReader(self.proc.stdout)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # ready once the port is taken
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                except OSError:
                    return
            time.sleep(0.02)
        self.close()
        raise AssertionError("oscdump did not start listening")

    def messages(self) -> list[tuple[str, str, list[str]]]:
        """(address, types, values as text) per line, /sono/ping left out."""
        out = []
        for line in list(self.reader.lines):
            parts = line.split()
            if len(parts) < 2 or parts[1] == "/sono/ping":
                continue
            types = parts[2] if len(parts) > 2 else ""
            out.append((parts[1], types, parts[3:]))
        return out

    def wait_for(self, n: int, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.messages()) < n:
            time.sleep(0.02)
        return self.messages()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)


@pytest.fixture
def oscdump():
    d = OscDump()
    yield d
    d.close()


@pytest.fixture
def kbd(jack_server):
    """A mido UNIX_JACK virtual output port ('keyboard') in this process, plus a raw rtmidi one."""
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    client = f"sonokbd{uid()}"
    port = backend.open_output("kbd", client_name=client)
    raw = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=f"sonoraw{uid()}")
    raw.open_virtual_port("raw")
    jack_server.wait_port(f"{client}:kbd")
    try:
        yield port, f"{client}:kbd", raw
    finally:
        port.close()
        raw.close_port()
        raw.delete()


def send_spaced(port, msgs, gap=0.015):
    for m in msgs:
        port.send(m)
        time.sleep(gap)


EXPECTED_KEYS = [
    ("/sono/morph", 64 / 127),
    ("/sono/transpose", 4.0),
    ("/sono/play", 1.0),
    ("/sono/transpose", 7.0),
    ("/sono/transpose", 9.0),
    ("/sono/transpose", 6.0),
    ("/sono/transpose", 4.0),
    ("/sono/stop", None),
]


def test_bridge_in_jack_port_to_oscdump_and_udp(jack_server, kbd, oscdump, bridges):
    port, port_name, raw = kbd
    name = f"bridge{uid()}"
    rx = UdpReceiver()
    try:
        b = bridges("--map", MODWHEEL, "--api", "jack", "--in", port_name, "--name", name,
                    "--to", f"127.0.0.1:{oscdump.port}", "--to", f"127.0.0.1:{rx.port}",
                    "--control", f"127.0.0.1:{free_udp_port()}")
        b.err.wait_for("Ctrl-C stops")
        # the raw port connects to the bridge's input too (JACK inputs take many connections)
        raw_port = next(p for p in jack_server.ports() if p.startswith("sonoraw") and p.endswith(":raw"))
        jack_server.connect(raw_port, f"{name}:midi_in")
        time.sleep(0.1)
        send_spaced(port, [mido.Message("control_change", control=1, value=64),
                           mido.Message("note_on", note=64, velocity=127),
                           mido.Message("note_on", note=67, velocity=90),
                           mido.Message("pitchwheel", pitch=8191),
                           mido.Message("note_off", note=67),
                           mido.Message("sysex", data=[0x7D, 1, 2, 3])])
        for garbage in ([0x40, 0x41], [0x90, 60], [0xF7]):  # stray data, a cut note-on, a stray EOX
            raw.send_message(garbage)
            time.sleep(0.015)
        send_spaced(port, [mido.Message("pitchwheel", pitch=0), mido.Message("note_off", note=64)])
        got_udp = rx.wait_for(len(EXPECTED_KEYS))
        got_dump = oscdump.wait_for(len(EXPECTED_KEYS))
        assert b.stop() == 0
    finally:
        rx.close()
    assert [(a, args[0] if args else None) for _, a, args in got_udp] == [
        (a, pytest.approx(v, abs=1e-6) if v is not None else None) for a, v in EXPECTED_KEYS]
    assert [a for a, _, _ in got_dump] == [a for a, _ in EXPECTED_KEYS]
    for (address, types, values), (_, v) in zip(got_dump, EXPECTED_KEYS):
        if v is None:
            assert types == "" and values == []
        else:
            assert types == "f" and float(values[0]) == pytest.approx(v, abs=1e-5)
    err = b.err.text()
    assert "8 MIDI messages in, 8 OSC messages out; ignored: 5 garbage bytes, 1 sysex" in err, err
    assert "no daemon answering" not in err and "Traceback" not in err


def test_virtual_port_connected_with_jack_connect(jack_server, bridges, tmp_path):
    name = f"virt{uid()}"
    rx = UdpReceiver()
    raw = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK, name=f"sonopad{uid()}")
    raw.open_virtual_port("pad")
    try:
        b = bridges("--map", XY, "--api", "jack", "--virtual", "--name", name, "--no-control",
                    "--to", f"127.0.0.1:{rx.port}")
        line = b.err.wait_for("Ctrl-C stops")
        assert f"virtual port '{name}:midi_in'" in line
        jack_server.wait_port(f"{name}:midi_in")
        pad = next(p for p in jack_server.ports() if p.startswith("sonopad") and p.endswith(":pad"))
        jack_server.connect(pad, f"{name}:midi_in")
        time.sleep(0.1)
        for event in ([0xB0, 16, 127], [0xB0, 17, 0], [0x33], [0xC0, 1], [0xF8], [0xB0, 18, 127]):
            raw.send_message(event)
            time.sleep(0.015)
        got = rx.wait_for(4)
        assert b.stop() == 0
    finally:
        raw.close_port()
        raw.delete()
        rx.close()
    assert [(a, args) for _, a, args in got] == [
        ("/sono/xy/x", (1.0,)), ("/sono/xy/y", (0.0,)), ("/sono/patch/load", ("morph_modwheel",)),
        ("/sono/position", (1.0,))]
    assert "ignored: 1 garbage bytes, 1 realtime" in b.err.text()


def test_learn_over_osc_while_playing_live(jack_server, kbd, bridges, tmp_path):
    port, port_name, _ = kbd
    mapping = tmp_path / "live.toml"
    mapping.write_text(open(MODWHEEL).read())
    control = free_udp_port()
    rx = UdpReceiver()
    asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asker.bind(("127.0.0.1", 0))
    asker.settimeout(5)
    try:
        b = bridges("--map", str(mapping), "--api", "jack", "--in", port_name, "--name", f"learn{uid()}",
                    "--to", f"127.0.0.1:{rx.port}", "--control", f"127.0.0.1:{control}")
        b.err.wait_for("Ctrl-C stops")
        asker.sendto(build_message("/sono/midi/learn", ("/sono/latent/3",)), ("127.0.0.1", control))
        assert OscMessage(asker.recv(65536)).address == "/sono/midi/learn/armed"
        port.send(mido.Message("control_change", control=21, value=127, channel=5))
        m = OscMessage(asker.recv(65536))
        assert (m.address, m.params) == ("/sono/midi/learned", ["/sono/latent/3", "CC 21 on channel 6 -> /sono/latent/3"])
        time.sleep(0.02)
        port.send(mido.Message("control_change", control=21, value=0, channel=5))
        port.send(mido.Message("control_change", control=21, value=0, channel=0))  # other channel: not bound
        assert len(rx.wait_for(2)) == 2
        time.sleep(0.1)  # the other channel's CC would have arrived by now
        assert b.stop() == 0
    finally:
        asker.close()
        rx.close()
    assert [(a, args) for _, a, args in rx.without_ping()] == [("/sono/latent/3", (3.0,)), ("/sono/latent/3", (-3.0,))]
    saved = load_mapping(mapping)
    assert any(c.cc == 21 and c.channel == 6 and c.address == "/sono/latent/3" for c in saved.cc)
    assert any(c.cc == 1 and c.address == "/sono/morph" for c in saved.cc)  # the rest is kept
    assert saved.notes == load_mapping(MODWHEEL).notes
    assert mapping.read_text().startswith("# Mod wheel morphs, keys play.")


def test_unknown_port_lists_the_available_ones_and_list_shows_them(jack_server, kbd, bridges):
    _, port_name, _ = kbd
    out = run_bridge("--map", MODWHEEL, "--api", "jack", "--in", "no such keyboard", "--no-control")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("sonolatent: error: --in 'no such keyboard': no such MIDI input; available: ")
    assert repr(port_name) in lines[0]
    listed = run_bridge("--list", "--api", "jack")
    assert listed.returncode == 0 and f"  {port_name}" in listed.stdout.splitlines()
    # a unique part of the name is enough
    b = bridges("--map", MODWHEEL, "--api", "jack", "--in", port_name.split(":")[0].upper(), "--no-control",
                "--to", f"127.0.0.1:{free_udp_port()}")
    assert f"MIDI in '{port_name}'" in b.err.wait_for("Ctrl-C stops")
    assert b.stop() == 0


def test_jack_without_a_server_is_one_line(tmp_path):
    env = dict(os.environ, JACK_DEFAULT_SERVER=f"nobody{uid()}", JACK_NO_START_SERVER="1")
    out = run_bridge("--map", MODWHEEL, "--api", "jack", "--in", "x", "--no-control", env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "sonolatent: error: cannot open JACK MIDI: MidiInJack::initialize: JACK server not running?; "
        "start a JACK server first (jackd, or qjackctl)"]  # and none of libjack's chatter


def test_jack_is_stopped_even_when_a_test_fails(tmp_path):
    """Run a failing test that uses the fixture in a child pytest; its jackd must be gone afterwards."""
    (tmp_path / "tests" / "midi").mkdir(parents=True)
    (tmp_path / "tests" / "midi" / "conftest.py").write_text((REPO / "tests" / "midi" / "conftest.py").read_text())
    (tmp_path / "tests" / "midi" / "test_fails.py").write_text(textwrap.dedent("""
        def test_boom(jack_server):
            assert jack_server.proc.poll() is None
            raise AssertionError("deliberate failure")
    """))
    pidfile = tmp_path / "jack.pid"
    env = dict(os.environ, SONOTEST_JACK_PIDFILE=str(pidfile))
    env.pop("JACK_DEFAULT_SERVER", None)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
                          "--rootdir", str(tmp_path), str(tmp_path / "tests")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert "deliberate failure" in out.stdout and out.returncode == 1, out.stdout + out.stderr
    pid, name = pidfile.read_text().split()
    assert not _alive(int(pid)), f"jackd {name} (pid {pid}) still running"
    assert not any(name in _cmdline(p) for p in _pids()), f"a process still mentions {name}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_burst_arrives_whole_and_in_order_and_stopping_releases_held_keys(jack_server, kbd, bridges):
    port, port_name, _ = kbd
    rx = UdpReceiver()
    try:
        b = bridges("--map", MODWHEEL, "--api", "jack", "--in", port_name, "--name", f"burst{uid()}",
                    "--no-control", "--to", f"127.0.0.1:{rx.port}")
        b.err.wait_for("Ctrl-C stops")
        time.sleep(0.05)
        port.send(mido.Message("note_on", note=72, velocity=64))
        for i in range(300):  # ~300 messages in well under a second, several per JACK period
            port.send(mido.Message("control_change", control=1, value=i % 128))
            if i % 5 == 4:
                time.sleep(0.003)
        got = rx.wait_for(302, timeout=30)   # a busy machine can hold the burst up for seconds; none may be lost
        assert len(got) == 302
        assert b.stop() == 0  # SIGTERM with a key still down: the bridge sends /sono/stop on its way out
        got = rx.wait_for(303, timeout=30)
    finally:
        rx.close()
    assert [a for _, a, _ in got[:2]] == ["/sono/transpose", "/sono/play"]
    assert [round(args[0] * 127) for _, _, args in got[2:302]] == [i % 128 for i in range(300)]
    assert got[302][1:] == ("/sono/stop", ())
    assert "301 MIDI messages in, 303 OSC messages out" in b.err.text()
