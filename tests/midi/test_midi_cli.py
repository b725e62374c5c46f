"""The bridge CLI as a real process: MIDI files (timing), freewheel, a missing daemon, learn, errors, no torch."""

import os
import signal
import socket
import subprocess
import textwrap
import time

import mido
import pytest
from pythonosc.osc_message import OscMessage

from sonolatent.midi import load_mapping
from sonolatent.midi.osc_out import build_message

from .conftest import PYTHON, REPO, BridgeProcess, UdpReceiver, free_udp_port, run_bridge

MODWHEEL = str(REPO / "patches" / "midi" / "modwheel_morph.toml")


def write_midi(path, events, ticks_per_beat=480, tempo=500000, tempo_changes=()):
    """events: (seconds, message) at 120 bpm unless ``tempo_changes`` [(seconds, tempo)] say otherwise.

    Times are converted to ticks with the tempo in force, so the file's real
    event times are exactly the given seconds (to a tick).
    """
    mid = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    items = [(t, 0, msg) for t, msg in events] + [(t, -1, mido.MetaMessage("set_tempo", tempo=tp))
                                                  for t, tp in tempo_changes]
    items.sort(key=lambda x: (x[0], x[1]))
    now_s, now_tick, cur_tempo = 0.0, 0, tempo
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    for t, _, msg in items:
        ticks = round(mido.second2tick(t - now_s, ticks_per_beat, cur_tempo))
        track.append(msg.copy(time=ticks))
        now_tick += ticks
        now_s += mido.tick2second(ticks, ticks_per_beat, cur_tempo)
        if msg.is_meta and msg.type == "set_tempo":
            cur_tempo = msg.tempo
    mid.save(path)
    return mid


def test_importing_and_running_the_bridge_never_imports_torch(tmp_path):
    midi_file = tmp_path / "s.mid"
    write_midi(midi_file, [(0.0, mido.Message("control_change", control=1, value=5))])
    port = free_udp_port()
    code = textwrap.dedent(f"""
        import sys
        import sonolatent.midi, sonolatent.midi.bridge, sonolatent.cli.bridge
        assert "torch" not in sys.modules, "import sonolatent.midi imported torch"
        from sonolatent.cli.main import main
        rc = main(["bridge", "--map", {MODWHEEL!r}, "--midi-file", {str(midi_file)!r}, "--freewheel",
                   "--to", "127.0.0.1:{port}"])
        assert rc == 0, rc
        assert "rtmidi" in sys.modules or "mido" in sys.modules
        print("torch" in sys.modules)
    """)
    out = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    helped = subprocess.run([PYTHON, "-c", "import sys\nfrom sonolatent.cli.main import main\n"
                             "try:\n    main(['bridge', '--help'])\nexcept SystemExit:\n    pass\n"
                             "print('torch' in sys.modules)"], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert helped.stdout.strip().endswith("False"), helped.stdout + helped.stderr
    assert "--midi-file" in helped.stdout


TIMES = [0.0, 0.1, 0.25, 0.26, 0.5, 0.75, 0.8, 1.0, 1.2, 1.45]


def timed_song(path):
    events = [(t, mido.Message("control_change", control=1, value=i * 10)) for i, t in enumerate(TIMES)]
    # a tempo change half way: the file's ticks change meaning, the seconds must not
    write_midi(path, events, tempo_changes=[(0.6, 300000)])
    return events


def test_a_midi_file_plays_in_order_and_takes_its_time(tmp_path):
    """The bridge as a process: every event, in order, and the file's length in wall time (a lower bound,
    which holds on a busy machine). How close each event comes to its time is a real-time figure:
    ``python -m benchmarks.midi_timing``."""
    song = tmp_path / "timed.mid"
    timed_song(song)
    file_times = []
    acc = 0.0
    for msg in mido.MidiFile(song):
        acc += msg.time
        if not msg.is_meta:
            file_times.append(acc)
    assert file_times == pytest.approx(TIMES, abs=0.0015)  # the file says what we meant (tick rounding)
    rx = UdpReceiver()
    try:
        t0 = time.monotonic()
        out = run_bridge("--map", MODWHEEL, "--midi-file", str(song), "--to", f"127.0.0.1:{rx.port}")
        wall = time.monotonic() - t0
        got = rx.wait_for(len(TIMES))
    finally:
        rx.close()
    assert out.returncode == 0, out.stderr
    assert [(a, round(args[0] * 127)) for _, a, args in got] == [("/sono/morph", i * 10) for i in range(len(TIMES))]
    assert got[-1][0] - got[0][0] >= TIMES[-1] - 0.01      # not sent in a burst
    assert wall > 1.4


def test_playback_waits_for_each_events_absolute_time_on_the_clock_it_is_given():
    """``play_events`` on an injected clock whose every nap overshoots by 4 ms: each event goes out at or
    after its time and within one overshoot of it (absolute deadlines: the overshoots never add up),
    and ``idle`` is consulted while waiting and can stop playback."""
    from sonolatent.midi.player import play_events

    now, naps = [100.0], []

    def sleep(s):
        naps.append(s)
        now[0] += s + 0.004

    events = [(t, mido.Message("control_change", control=1, value=i)) for i, t in enumerate(TIMES)]
    sent = []
    n = play_events(events, lambda m: sent.append((now[0] - 100.0, m.value)), clock=lambda: now[0], sleep=sleep,
                    max_nap=0.05)
    assert n == len(TIMES) and [v for _, v in sent] == list(range(len(TIMES)))
    for (t, _), (at, _) in zip(events, sent):
        assert t <= at <= t + 0.004 + 1e-9, (t, at)
    assert max(naps) <= 0.05
    now[0], sent[:] = 0.0, []
    calls = []
    assert play_events(events, lambda m: sent.append(m), clock=lambda: now[0], sleep=sleep,
                       idle=lambda: calls.append(now[0]) or now[0] > 0.3) == 4   # 0, 0.1, 0.25, 0.26
    assert len(calls) > 4
    assert play_events(events, lambda m: None, freewheel=True, clock=lambda: 0.0, sleep=sleep) == len(TIMES)


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_midi_file_cut_short_exits_128_plus_the_signal(tmp_path, sig, status):
    song = tmp_path / "long.mid"
    write_midi(song, [(0.0, mido.Message("note_on", note=60, velocity=100))]
               + [(0.1 * i, mido.Message("control_change", control=1, value=i)) for i in range(1, 100)])  # 10 s
    rx = UdpReceiver()
    b = BridgeProcess("--map", MODWHEEL, "--midi-file", str(song), "--to", f"127.0.0.1:{rx.port}")
    try:
        b.err.wait_for("playing")
        rx.wait_for(3)                      # it is sending
        b.proc.send_signal(sig)
        assert b.proc.wait(timeout=10) == status
        deadline = time.monotonic() + 2
        while "/sono/stop" not in [a for _, a, _ in rx.without_ping()] and time.monotonic() < deadline:
            time.sleep(0.01)
        got = rx.without_ping()
    finally:
        rx.close()
        if b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()
    err = b.err.text()
    assert "Traceback" not in err
    assert "MIDI messages in" in err        # the summary line
    assert got[-1][1] == "/sono/stop"       # the held key let go on the way out
    assert ("sonolatent: interrupted" in err) == (sig == signal.SIGINT)


def test_freewheel_plays_everything_at_once_in_order(tmp_path):
    song = tmp_path / "long.mid"
    events = [(i * 0.05, mido.Message("control_change", control=1, value=i % 128)) for i in range(400)]
    write_midi(song, events)  # 20 s of music
    rx = UdpReceiver()
    try:
        t0 = time.monotonic()
        out = run_bridge("--map", MODWHEEL, "--midi-file", str(song), "--freewheel", "--to",
                         f"127.0.0.1:{rx.port}")
        wall = time.monotonic() - t0
        got = rx.wait_for(400)
    finally:
        rx.close()
    assert out.returncode == 0, out.stderr
    assert wall < 10
    assert [round(args[0] * 127) for _, _, args in got] == [i % 128 for i in range(400)]
    assert got[-1][0] - got[0][0] < 2.0
    assert "400 MIDI messages in, 400 OSC messages out" in out.stderr


def test_no_daemon_warns_once_and_keeps_going(tmp_path):
    song = tmp_path / "song.mid"
    events = [(i * 0.01, mido.Message("control_change", control=1, value=i % 128)) for i in range(60)]
    events.append((0.7, mido.Message("sysex", data=[1, 2])))
    write_midi(song, events)
    port = free_udp_port()  # nobody listens there
    out = run_bridge("--map", MODWHEEL, "--midi-file", str(song), "--to", f"127.0.0.1:{port}")
    assert out.returncode == 0, out.stderr
    warning = f"no daemon answering at 127.0.0.1:{port}; will keep sending"
    assert out.stderr.count(warning) == 1, out.stderr
    assert "answering at" in out.stderr and out.stderr.count("answering") == 1
    assert "61 MIDI messages in, 60 OSC messages out; ignored: 1 sysex" in out.stderr
    assert "Traceback" not in out.stderr


def test_daemon_coming_back_is_said_once(tmp_path):
    song = tmp_path / "song.mid"
    events = [(i * 0.04, mido.Message("control_change", control=1, value=i % 128)) for i in range(60)]
    write_midi(song, events)  # 2.4 s
    port = free_udp_port()
    proc = subprocess.Popen([PYTHON, "-m", "sonolatent", "bridge", "--map", MODWHEEL, "--midi-file", str(song),
                             "--to", f"127.0.0.1:{port}"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        rx = UdpReceiver(port)  # the daemon starts
        try:
            err = proc.communicate(timeout=30)[1]
            got = rx.wait_for(1)
        finally:
            rx.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert err.count(f"no daemon answering at 127.0.0.1:{port}; will keep sending") == 1, err
    assert err.count(f"daemon answering at 127.0.0.1:{port} again") == 1, err
    assert err.index("will keep sending") < err.index("again")
    values = [round(args[0] * 127) for _, a, args in got if a == "/sono/morph"]
    assert len(values) >= 25 and values == sorted(values) and values[-1] == 59


def test_learn_from_the_command_line_saves_the_file(tmp_path):
    mapping = tmp_path / "learned.toml"
    mapping.write_text("# my knobs\n[notes]\nmode = \"play\"\nroot = 48\n\n[[cc]]\ncc = 1\naddress = \"/sono/morph\"\n")
    song = tmp_path / "s.mid"
    write_midi(song, [(0.0, mido.Message("note_on", note=50, velocity=127)),
                      (0.01, mido.Message("control_change", control=74, value=127, channel=3)),
                      (0.02, mido.Message("control_change", control=74, value=0, channel=3)),
                      (0.03, mido.Message("control_change", control=1, value=127))])
    rx = UdpReceiver()
    try:
        out = run_bridge("--map", str(mapping), "--learn", "/sono/latent/5", "--midi-file", str(song),
                         "--freewheel", "--to", f"127.0.0.1:{rx.port}")
        got = rx.wait_for(5)
    finally:
        rx.close()
    assert out.returncode == 0, out.stderr
    assert f"learned CC 74 on channel 4 -> /sono/latent/5; saved {mapping}" in out.stderr
    assert [(a, args) for _, a, args in got] == [
        ("/sono/transpose", (2.0,)), ("/sono/play", (1.0,)), ("/sono/latent/5", (3.0,)),
        ("/sono/latent/5", (-3.0,)), ("/sono/morph", (1.0,)), ("/sono/stop", ())]
    m = load_mapping(mapping)
    assert m.notes.root == 48
    assert [(c.cc, c.address, c.channel, c.min, c.max) for c in m.cc] == [
        (1, "/sono/morph", None, 0.0, 1.0), (74, "/sono/latent/5", 4, -3.0, 3.0)]
    assert mapping.read_text().startswith("# my knobs\n")


def test_learn_over_the_control_port(tmp_path):
    mapping = tmp_path / "new.toml"
    mapping.write_text("# empty so far: learn fills it\n")
    song = tmp_path / "s.mid"
    write_midi(song, [(1.5, mido.Message("pitchwheel", pitch=8191, channel=1)),
                      (1.6, mido.Message("pitchwheel", pitch=-8192, channel=1))])
    control_port = free_udp_port()
    rx = UdpReceiver()
    asker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    asker.bind(("127.0.0.1", 0))
    asker.settimeout(5)
    proc = subprocess.Popen([PYTHON, "-m", "sonolatent", "bridge", "--map", str(mapping), "--midi-file",
                             str(song), "--control", f"127.0.0.1:{control_port}", "--to",
                             f"127.0.0.1:{rx.port}"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        replies = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait for the control port to answer
            asker.sendto(build_message("/sono/midi/ping"), ("127.0.0.1", control_port))
            try:
                asker.settimeout(0.1)
                replies.append(OscMessage(asker.recv(65536)).address)
                break
            except socket.timeout:
                continue
        assert replies == ["/sono/midi/pong"], proc.poll()
        asker.settimeout(5)
        asker.sendto(b"\x00garbage\xff\xfe", ("127.0.0.1", control_port))  # malformed: dropped
        asker.sendto(b"/sono/midi/learn\x00\x00\x00\x00,s\x00\x00\xff\xfe\x00\x00", ("127.0.0.1", control_port))
        asker.sendto(build_message("/sono/midi/learn", ("/sono/play",)), ("127.0.0.1", control_port))
        m = OscMessage(asker.recv(65536))
        assert m.address == "/sono/midi/error" and "trigger" in m.params[0]
        asker.sendto(build_message("/sono/midi/learn", ("/sono/position",)), ("127.0.0.1", control_port))
        m = OscMessage(asker.recv(65536))
        assert (m.address, m.params) == ("/sono/midi/learn/armed", ["/sono/position"])
        m = OscMessage(asker.recv(65536))
        assert (m.address, m.params) == ("/sono/midi/learned",
                                         ["/sono/position", "pitch bend on channel 2 -> /sono/position"])
        err = proc.communicate(timeout=30)[1]
        got = rx.wait_for(2)
    finally:
        asker.close()
        rx.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert [(a, args) for _, a, args in got] == [("/sono/position", (1.0,)), ("/sono/position", (0.0,))]
    assert "MIDI learn: /sono/play takes a trigger" in err
    m = load_mapping(mapping)
    assert (m.pitchbend.address, m.pitchbend.min, m.pitchbend.max, m.pitchbend.channel) == (
        "/sono/position", 0.0, 1.0, 2)
    assert "Traceback" not in err


@pytest.mark.parametrize("args, expected", [
    ([], "--map FILE is required"),
    (["--map", "nope.toml"], "nope.toml: mapping file not found"),
    (["--map", MODWHEEL, "--freewheel"], "--freewheel only goes with --midi-file"),
    (["--map", MODWHEEL, "--to", "localhost"], "--to: expected HOST:PORT"),
    (["--map", MODWHEEL, "--to", "localhost:99999"], "--to: port must be 0..65535"),
    (["--map", MODWHEEL, "--midi-file", "missing.mid"], "missing.mid: MIDI file not found"),
    (["--map", MODWHEEL, "--midi-file", MODWHEEL], "not a usable standard MIDI file"),
    (["--map", MODWHEEL, "--in", "x", "--virtual"], "pick one"),
    (["--map", MODWHEEL, "--learn", "/sono/stop", "--midi-file", MODWHEEL], "MIDI learn: /sono/stop"),
])
def test_user_mistakes_are_one_line_and_exit_2(args, expected):
    out = run_bridge(*args)
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("sonolatent: error: ") and expected in lines[0], lines[0]


def test_a_folder_or_an_empty_file_as_midi_file_says_what_is_wrong(tmp_path):
    from sonolatent.errors import SonolatentError
    from sonolatent.midi import load_midi_events
    with pytest.raises(SonolatentError, match="is a folder, not a MIDI file"):
        load_midi_events(tmp_path)
    (tmp_path / "empty.mid").write_bytes(b"")
    with pytest.raises(SonolatentError, match=r"not a usable standard MIDI file \(\w+"):   # never "()"
        load_midi_events(tmp_path / "empty.mid")


def test_a_broken_mapping_file_names_its_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[[cc]]\ncc = 1\naddress = \"/sono/morph\"\ncurve = \"squiggle\"\n")
    out = run_bridge("--map", str(p), "--midi-file", "x.mid")
    assert out.returncode == 2
    assert out.stderr.strip() == (f"sonolatent: error: {p}:4: [[cc]] #1 key 'curve': must be one of "
                                  "linear, exp, log, got 'squiggle'")


def test_control_port_in_use_is_one_line(tmp_path):
    song = tmp_path / "s.mid"
    write_midi(song, [(0.0, mido.Message("control_change", control=1, value=1))])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        out = run_bridge("--map", MODWHEEL, "--midi-file", str(song), "--control", f"127.0.0.1:{port}",
                         "--to", f"127.0.0.1:{free_udp_port()}")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("sonolatent: error: --control 127.0.0.1:")
    assert "cannot listen" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_default_api_is_alsa_and_its_absence_is_one_line():
    out = run_bridge("--list")
    if os.path.exists("/dev/snd/seq"):  # a machine with the ALSA sequencer lists its ports
        assert out.returncode == 0 and out.stdout.startswith("MIDI inputs (alsa API):"), out.stderr
    else:  # this rig has none: one line, no libasound chatter, and the way out
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("sonolatent: error: cannot open ALSA MIDI: ") and "try --api jack" in lines[0]


def test_verbose_prints_each_message_and_learn_creates_a_missing_file(tmp_path):
    song = tmp_path / "s.mid"
    write_midi(song, [(0.0, mido.Message("control_change", control=20, value=127)),
                      (0.0, mido.Message("sysex", data=[1])),
                      (0.0, mido.Message("control_change", control=20, value=0))])
    mapping = tmp_path / "sub" / "fresh.toml"
    mapping.parent.mkdir()
    port = free_udp_port()
    out = run_bridge("--map", str(mapping), "--learn", "/sono/gain", "--midi-file", str(song), "--freewheel",
                     "--verbose", "--to", f"127.0.0.1:{port}")
    assert out.returncode == 0, out.stderr
    assert f"{mapping} does not exist yet; MIDI learn will create it" in out.stderr
    assert "control_change channel=0 control=20 value=127 -> /sono/gain 1" in out.stderr
    assert "sysex (1 bytes) -> (nothing)" in out.stderr
    assert "control_change channel=0 control=20 value=0 -> /sono/gain 0" in out.stderr
    m = load_mapping(mapping)
    assert [(c.cc, c.address, c.channel) for c in m.cc] == [(20, "/sono/gain", 1)]
