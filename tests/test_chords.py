"""A chord played on a JACK MIDI keyboard sounds both pitches: all real parts.

A private JACK dummy server carries the MIDI; the bridge (``sonolatent bridge
--patch patches/chords.toml --api jack``) reads a JACK MIDI port that this test
writes real MIDI bytes into; the daemon (``sonolatent serve --patch
patches/chords.toml``, the shipped model, 8 voices) renders on its own clock
(``--no-audio``) and records what it plays. C4 and G4 go down together (the
patch's piano sample is a C4; root 60), then are released. In the recording,
over the held chord, the spectrum has peaks at both fundamentals, 261.6 Hz and
392.0 Hz (G4 is no harmonic of C4); before the chord, and in the daemon's bounce
of C4 alone (the log with the G4 taken out), the 392 Hz peak is absent. The
bounce of the whole log equals the recording, sample for sample.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

import mido
import numpy as np
import pytest
import soundfile as sf

from sonolatent.jackserver import JackServer
from .test_perform import PATCH, Proc, bounce_one_thread, shipped_model_copy  # noqa: F401  (PATCH: the other patch)

pytestmark = pytest.mark.jack
CHORDS = PATCH.parent / "chords.toml"
RATE = 44100
C4, G4 = 261.63, 392.0


def peak(x, f, rate=RATE, n_fft=16384):
    """Spectral magnitude near ``f`` (+-2 %) over the median of 150..1200 Hz (the floor around it)."""
    hop = n_fft // 4
    w = np.hanning(n_fft)
    mag = np.mean([np.abs(np.fft.rfft(w * x[i:i + n_fft])) for i in range(0, len(x) - n_fft, hop)], axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    near = (freqs > f * 0.98) & (freqs < f * 1.02)
    floor = np.median(mag[(freqs > 150) & (freqs < 1200)])
    return float(mag[near].max() / floor)


def test_a_chord_on_a_jack_midi_keyboard_sounds_both_pitches(tmp_path, monkeypatch):
    model, bundle = shipped_model_copy(tmp_path / "model")
    rec, log = tmp_path / "take.wav", tmp_path / "take.jsonl"
    procs: list[Proc] = []
    kbd = None
    with JackServer(48000, 256, prefix="sl-chords") as jack:
        try:
            daemon = Proc([sys.executable, "-m", "sonolatent", "serve", "--patch", str(CHORDS), "--checkpoint",
                           str(model), "--no-audio", "--port", "0", "--oscquery-port", "-1", "--record", str(rec),
                           "--log-osc", str(log), "--duration", "4.5"], jack.env)
            procs.append(daemon)
            line = daemon.wait_for("OSC on udp 127.0.0.1:")
            port = int(line.split("OSC on udp 127.0.0.1:")[1].split(",")[0].split(";")[0])
            monkeypatch.setenv("JACK_DEFAULT_SERVER", jack.name)
            client = f"sonochord{uuid.uuid4().hex[:6]}"
            kbd = mido.Backend("mido.backends.rtmidi/UNIX_JACK").open_output("keys", client_name=client)
            jack.wait_port(f"{client}:keys")
            bridge = Proc([sys.executable, "-m", "sonolatent", "bridge", "--patch", str(CHORDS), "--api", "jack",
                           "--in", f"{client}:keys", "--to", f"127.0.0.1:{port}", "--no-control"], jack.env)
            procs.append(bridge)
            bridge.wait_for("Ctrl-C stops")
            time.sleep(0.3)
            kbd.send(mido.Message("note_on", note=60, velocity=110))
            kbd.send(mido.Message("note_on", note=67, velocity=110))
            time.sleep(1.6)
            kbd.send(mido.Message("note_off", note=60))
            kbd.send(mido.Message("note_off", note=67))
            daemon.proc.wait(60)
        finally:
            if kbd is not None:
                kbd.close()
            for p in procs:
                p.kill()
    assert daemon.proc.returncode == 0, daemon.lines
    take, sr = sf.read(rec, dtype="float32")
    events = [json.loads(x) for x in log.read_text().splitlines()][1:]
    ons = [(e["block"], v[0]) for e in events for a, v in e.get("changes", []) if a == "/sono/note/on"]
    offs = [e["block"] for e in events for a, v in e.get("changes", []) if a == "/sono/note/off"]
    assert sorted(p for _, p in ons) == [60.0, 67.0] and len(offs) == 2, events
    hop, delay = bundle.mel_config.hop_length, 1024
    start = max(b for b, _ in ons) * hop - delay + int(0.25 * sr)
    end = min(offs) * hop - delay
    assert end - start > 0.8 * sr
    chord = take[start:end]
    before = take[: min(b for b, _ in ons) * hop - delay]
    assert np.abs(before).max() == 0.0                         # silent until the keys
    assert peak(chord, C4) > 8 and peak(chord, G4) > 8, (peak(chord, C4), peak(chord, G4))
    # the same performance without the G4: the 392 Hz peak goes
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    for e in lines:
        if "changes" in e:
            e["changes"] = [c for c in e["changes"] if not (c[0].startswith("/sono/note/") and c[1][0] == 67.0)]
    solo = tmp_path / "solo.jsonl"
    solo.write_text("".join(json.dumps(e) + "\n" for e in lines))
    alone = bounce_one_thread(solo, bundle)[start:end]
    assert peak(alone, C4) > 8 and peak(alone, G4) < peak(chord, G4) / 4, (peak(alone, C4), peak(alone, G4))
    assert np.array_equal(bounce_one_thread(log, bundle), take)
