"""Poly mode (the default [notes] mode): keys -> the daemon's voices, pedal, all-notes-off, bend, panic."""

import mido
import pytest

from sonolatent.midi import Mapper, load_mapping, read_mapping_text

from .conftest import REPO


def on(note, velocity=100, channel=0):
    return mido.Message("note_on", note=note, velocity=velocity, channel=channel)


def off(note, channel=0):
    return mido.Message("note_off", note=note, channel=channel)


def cc(control, value, channel=0):
    return mido.Message("control_change", control=control, value=value, channel=channel)


def test_keys_are_voices_and_a_chord_is_two_note_ons():
    m = Mapper(read_mapping_text("[notes]\n"))
    assert m.mapping.notes.mode == "poly"
    assert m.handle(on(60, 127)) == [("/sono/note/on", (60.0, 1.0))]
    assert m.handle(on(67, 64)) == [("/sono/note/on", (67.0, pytest.approx(64 / 127)))]
    assert m.handle(off(60)) == [("/sono/note/off", (60.0,))]
    assert m.handle(on(67, 0)) == [("/sono/note/off", (67.0,))]      # velocity 0 is a note off
    assert m.ignored == {}


def test_pedal_all_notes_off_bend_and_panic():
    m = Mapper(read_mapping_text("[notes]\nvelocity = \"off\"\n[pitchbend]\nrange = 2\n"))
    assert m.handle(on(62, 20)) == [("/sono/note/on", (62.0, 1.0))]
    assert m.handle(cc(64, 127)) == [("/sono/sustain", (1,))]
    assert m.handle(cc(64, 100)) == []                                # still down: nothing new
    assert m.handle(off(62)) == [("/sono/note/off", (62.0,))]          # the daemon holds it
    assert m.handle(cc(64, 0)) == [("/sono/sustain", (0,))]
    assert m.handle(mido.Message("pitchwheel", pitch=8191)) == [("/sono/transpose", (2.0,))]   # every voice
    assert m.handle(cc(123, 0)) == [("/sono/allnotesoff", ())]
    m.handle(on(70))
    assert m.panic() == [("/sono/allnotesoff", ())]                   # the bridge stopping with a key down
    assert m.panic() == []


def test_the_shipped_chords_map_plays_chords_and_loads_patches_on_program_change():
    m = Mapper(load_mapping(REPO / "patches" / "midi" / "chords.toml"))
    assert m.handle(on(60, 127)) + m.handle(on(64, 127)) + m.handle(on(67, 127)) == \
        [("/sono/note/on", (float(p), 1.0)) for p in (60, 64, 67)]
    assert m.handle(mido.Message("program_change", program=1)) == [("/sono/patch/load", ("morph_modwheel",))]
