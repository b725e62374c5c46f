"""An MPE controller's recorded take bends one note of a chord: all real parts.

A real MIDI file (an MPE lower zone: C4 on member channel 2, G4 on member
channel 3) is played in real time by the bridge (``sonolatent bridge --patch
patches/mpe.toml --midi-file``) into the daemon (``sonolatent serve --patch
patches/mpe.toml``, the shipped model, 8 voices, its own clock, ``--no-audio``)
over real UDP; the daemon records what it plays and logs it. The take sets the
member channels' bend range to 2 semitones (RPN 0), holds the chord, then
bends channel 2 fully up: the C4 becomes a D4, the G4 stays. In the
recording, over the chord before the bend, the spectrum has peaks at C4
(261.6 Hz) and G4 (392.0 Hz) and none at D4 (293.7 Hz); after it, peaks at D4
and G4 and the C4 peak gone; the G4 peak is about as strong as before. The
daemon's bounce of its log equals the recording, sample for sample.
"""

from __future__ import annotations

import json
import sys

import mido
import numpy as np
import soundfile as sf

from .midi.test_midi_cli import write_midi
from .test_chords import peak
from .test_perform import PATCH, Proc, bounce_one_thread, shipped_model_copy

MPE = PATCH.parent / "mpe.toml"
C4, D4, G4 = 261.63, 293.66, 392.0


def cc(control, value, channel):
    return mido.Message("control_change", control=control, value=value, channel=channel)


def test_an_mpe_bend_moves_one_note_of_a_chord_and_the_bounce_equals_the_take(tmp_path):
    model, bundle = shipped_model_copy(tmp_path / "model")
    rec, log, song = tmp_path / "take.wav", tmp_path / "take.jsonl", tmp_path / "mpe.mid"
    write_midi(song, [(0.0, cc(101, 0, 1)), (0.0, cc(100, 0, 1)), (0.0, cc(6, 2, 1)),   # RPN 0: +-2 semitones
                      (0.3, mido.Message("note_on", note=60, velocity=110, channel=1)),
                      (0.3, mido.Message("note_on", note=67, velocity=110, channel=2)),
                      (1.6, mido.Message("pitchwheel", pitch=8191, channel=1)),          # the C4 -> D4
                      (2.9, mido.Message("note_off", note=60, channel=1)),
                      (2.9, mido.Message("note_off", note=67, channel=2))])
    procs: list[Proc] = []
    try:
        daemon = Proc([sys.executable, "-m", "sonolatent", "serve", "--patch", str(MPE), "--checkpoint", str(model),
                       "--no-audio", "--port", "0", "--oscquery-port", "-1", "--record", str(rec), "--log-osc", str(log),
                       "--duration", "4.0"], None)
        procs.append(daemon)
        line = daemon.wait_for("OSC on udp 127.0.0.1:")
        port = int(line.split("OSC on udp 127.0.0.1:")[1].split(",")[0].split(";")[0])
        bridge = Proc([sys.executable, "-m", "sonolatent", "bridge", "--patch", str(MPE), "--midi-file", str(song),
                       "--to", f"127.0.0.1:{port}"], None)
        procs.append(bridge)
        assert bridge.proc.wait(60) == 0, bridge.lines
        daemon.proc.wait(60)
    finally:
        for p in procs:
            p.kill()
    assert daemon.proc.returncode == 0, daemon.lines
    take, sr = sf.read(rec, dtype="float32")
    events = [json.loads(x) for x in log.read_text().splitlines()][1:]
    first = lambda address: min(e["block"] for e in events for a, _ in e.get("changes", []) if a == address)
    assert [v for e in events for a, v in e.get("changes", []) if a == "/sono/note/bend"] == [[60.0, 2.0]], events
    hop, delay = bundle.mel_config.hop_length, 1024
    on, bent, off = first("/sono/note/on"), first("/sono/note/bend"), first("/sono/note/off")
    chord = take[on * hop - delay + int(0.25 * sr):bent * hop - delay]
    after = take[bent * hop - delay + int(0.25 * sr):off * hop - delay]
    assert len(chord) > 0.6 * sr and len(after) > 0.6 * sr
    before_peaks = {f: peak(chord, f, sr) for f in (C4, D4, G4)}
    after_peaks = {f: peak(after, f, sr) for f in (C4, D4, G4)}
    print("peaks (over the floor) before the bend", before_peaks, "after", after_peaks)
    assert before_peaks[C4] > 8 and before_peaks[G4] > 8 and before_peaks[D4] < before_peaks[C4] / 4
    assert after_peaks[D4] > 8 and after_peaks[C4] < after_peaks[D4] / 4       # the bent note moved...
    assert 0.5 < after_peaks[G4] / before_peaks[G4] < 2.0                        # ...the other stayed
    assert np.array_equal(bounce_one_thread(log, bundle), take)
