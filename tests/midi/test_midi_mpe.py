"""MPE mode (``[notes] mode = "mpe"``): member channels' bend, pressure and CC 74 become per-note expression;
the master channel stays global; RPN 0 sets bend ranges, RPN 6 (the MPE Configuration Message) the zone."""

import mido
import pytest

from sonolatent.errors import ConfigError
from sonolatent.midi import Mapper, load_mapping, read_mapping_text
from sonolatent.midi.mapping import dumps_mapping

from .conftest import REPO

MPE = '[notes]\nmode = "mpe"\n[pitchbend]\nrange = 2\n[[aftertouch]]\naddress = "/sono/gain"\n[[cc]]\ncc = 74\naddress = "/sono/morph"\n'


def on(note, velocity=127, channel=1):
    return mido.Message("note_on", note=note, velocity=velocity, channel=channel)


def off(note, channel=1):
    return mido.Message("note_off", note=note, channel=channel)


def bend(pitch, channel=1):
    return mido.Message("pitchwheel", pitch=pitch, channel=channel)


def press(value, channel=1):
    return mido.Message("aftertouch", value=value, channel=channel)


def cc(control, value, channel=1):
    return mido.Message("control_change", control=control, value=value, channel=channel)


def rpn(channel, lsb, msb_value, lsb_value=None):
    msgs = [cc(101, 0, channel), cc(100, lsb, channel), cc(6, msb_value, channel)]
    return msgs + ([cc(38, lsb_value, channel)] if lsb_value is not None else [])


def test_member_channels_are_notes_with_their_own_bend_pressure_and_timbre():
    m = Mapper(read_mapping_text(MPE))
    assert m.together
    assert m.handle(on(60, channel=1)) == [("/sono/note/on", (60.0, 1.0))]      # channel 2: a member
    assert m.handle(on(64, channel=2)) == [("/sono/note/on", (64.0, 1.0))]
    assert m.handle(bend(8191, channel=1)) == [("/sono/note/bend", (60.0, 48.0))]   # MPE's default range
    assert m.handle(bend(-4096, channel=2)) == [("/sono/note/bend", (64.0, -24.0))]
    assert m.handle(press(127, channel=2)) == [("/sono/note/pressure", (64.0, 1.0))]
    assert m.handle(cc(74, 64, channel=1)) == [("/sono/note/timbre", (60.0, 0.5))]   # 64: the rest value
    assert m.handle(cc(74, 127, channel=1)) == [("/sono/note/timbre", (60.0, 1.0))]
    assert m.handle(cc(74, 0, channel=1)) == [("/sono/note/timbre", (60.0, 0.0))]
    # the master channel (1) stays global: [pitchbend], [[aftertouch]], [[cc]]
    assert m.handle(bend(8191, channel=0)) == [("/sono/transpose", (2.0,))]
    assert m.handle(press(127, channel=0)) == [("/sono/gain", (1.0,))]
    assert m.handle(cc(74, 127, channel=0)) == [("/sono/morph", (1.0,))]
    assert m.handle(cc(64, 127, channel=0)) == [("/sono/sustain", (1,))]
    assert m.ignored == {}


def test_a_note_on_carries_its_channels_expression_and_a_released_note_follows_its_channel():
    m = Mapper(read_mapping_text(MPE))
    # controllers send a note's expression before its note-on: it goes with the note-on (rest values left out)
    assert m.handle(bend(4096, channel=3)) == []                                   # no note on channel 4 yet
    assert m.handle(press(0, channel=3)) + m.handle(cc(74, 100, channel=3)) == []
    assert m.handle(on(62, 100, channel=3)) == [
        ("/sono/note/on", (62.0, pytest.approx(100 / 127))), ("/sono/note/bend", (62.0, pytest.approx(24.0, abs=0.01))),
        ("/sono/note/timbre", (62.0, pytest.approx(0.5 + 36 / 126)))]
    assert m.handle(off(62, channel=3)) == [("/sono/note/off", (62.0,))]
    assert m.handle(bend(0, channel=3)) == [("/sono/note/bend", (62.0, 0.0))]       # its release follows
    # another channel starts the same pitch: it is that channel's note now
    assert m.handle(on(62, channel=4))[0] == ("/sono/note/on", (62.0, 1.0))
    assert m.handle(bend(100, channel=3)) == []
    assert m.handle(bend(8191, channel=4)) == [("/sono/note/bend", (62.0, 48.0))]
    # a new note on a channel: the channel's released notes stop following it
    m.handle(off(62, channel=4))
    m.handle(on(70, channel=4))
    assert m.handle(press(64, channel=4)) == [("/sono/note/pressure", (70.0, pytest.approx(64 / 127)))]
    # polyphonic key pressure of a held key is that note's pressure
    assert m.handle(mido.Message("polytouch", note=70, value=127, channel=4)) == [("/sono/note/pressure", (70.0, 1.0))]


def test_rpn_0_sets_the_bend_ranges_and_rpn_6_the_zone():
    m = Mapper(read_mapping_text(MPE))
    m.handle(on(60, channel=5))
    for msg in rpn(9, 0, 12, 50):                  # RPN 0 on a member channel: every member channel's range
        assert m.handle(msg) == []
    assert m.handle(bend(8191, channel=5)) == [("/sono/note/bend", (60.0, 12.5))]
    for msg in rpn(0, 0, 7):                       # on the master channel: [pitchbend]'s range
        m.handle(msg)
    assert m.handle(bend(-8192, channel=0)) == [("/sono/transpose", (-7.0,))]
    # the MPE Configuration Message: the lower zone has 3 member channels (2..4); ranges back to 48 and 2
    for msg in rpn(0, 6, 3):
        m.handle(msg)
    assert m.handle(bend(-8192, channel=0)) == [("/sono/transpose", (-2.0,))]
    m.handle(on(61, channel=3))
    assert m.handle(bend(8191, channel=3)) == [("/sono/note/bend", (61.0, 48.0))]
    assert m.handle(bend(8191, channel=5)) == [("/sono/transpose", (2.0,))]   # channel 6 is no member now
    assert m.ignored == {}


def test_the_upper_zone():
    m = Mapper(read_mapping_text('[notes]\nmode = "mpe"\nzone = "upper"\nmembers = 4\nbend_range = 24\n'
                                 '[pitchbend]\nrange = 2\n'))
    m.handle(on(50, channel=11))                                          # channel 12: 12..15 are members
    assert m.handle(bend(8191, channel=11)) == [("/sono/note/bend", (50.0, 24.0))]
    assert m.handle(bend(8191, channel=15)) == [("/sono/transpose", (2.0,))]   # the master channel, 16
    m.handle(on(52, channel=10))
    assert m.handle(bend(8191, channel=10)) == [("/sono/transpose", (2.0,))]   # channel 11: outside the zone


def test_mpe_mapping_files_are_checked_and_round_trip(tmp_path):
    for text, where in (('[notes]\nmode = "mpe"\nchannel = 2\n', "channel"),
                        ('[notes]\nmode = "poly"\nbend_range = 12\n', "bend_range"),
                        ('[notes]\nmode = "mpe"\nzone = "middle"\n', "zone"),
                        ('[notes]\nmode = "mpe"\nmembers = 16\n', "members")):
        with pytest.raises(ConfigError, match=where):
            read_mapping_text(text)
    shipped = load_mapping(REPO / "patches" / "midi" / "mpe.toml")
    assert shipped.notes.mode == "mpe" and read_mapping_text(dumps_mapping(shipped)) == shipped
    poly = read_mapping_text("[notes]\n")
    assert "bend_range" not in dumps_mapping(poly) and read_mapping_text(dumps_mapping(poly)) == poly


def mpe_take():
    """A recorded MPE performance (seconds, message): RPN 0 sets the member range to 12, the G4's pressure and
    slide come before its note-on (as controllers send them), the C4 bends, the G4 presses and slides, the
    master channel bends everything and holds the pedal."""
    m = lambda t, msg: (t, msg)
    return ([m(0.0, x) for x in rpn(1, 0, 12)] + [
        m(0.01, press(40, channel=2)), m(0.01, cc(74, 90, channel=2)),
        m(0.02, on(60, 100, channel=1)), m(0.03, on(67, 90, channel=2)),
        m(0.1, bend(2048, channel=1)), m(0.12, bend(8191, channel=1)),
        m(0.15, press(127, channel=2)), m(0.16, cc(74, 20, channel=2)),
        m(0.2, bend(-8192, channel=0)), m(0.21, cc(64, 127, channel=0)),
        m(0.3, off(60, channel=1)), m(0.31, bend(0, channel=1)),         # the C4's release still follows its channel
        m(0.35, cc(64, 0, channel=0)), m(0.4, off(67, channel=2))])


def test_a_recorded_mpe_stream_through_the_bridge_over_real_udp(tmp_path, receiver):
    from .test_midi_cli import write_midi
    from .conftest import run_bridge

    song = tmp_path / "mpe.mid"
    take = mpe_take()
    write_midi(song, take)
    mapping = REPO / "patches" / "midi" / "mpe.toml"
    mapper = Mapper(load_mapping(mapping))
    want = [mapper.handle(msg) for _, msg in take]
    out = run_bridge("--map", str(mapping), "--midi-file", str(song), "--freewheel", "--to", f"127.0.0.1:{receiver.port}")
    assert out.returncode == 0, out.stderr
    flat = [x for w in want for x in w]
    got = [(a, args) for _, a, args in receiver.wait_for(len(flat))]
    assert len(got) == len(flat)
    for (a, args), (wa, wargs) in zip(got, flat):    # float32 on the wire
        assert a == wa and args == pytest.approx(wargs, rel=1e-6), (got, flat)
    assert ("/sono/note/bend", (60.0, 12.0)) in got and ("/sono/note/bend", (60.0, 0.0)) in got
    assert ("/sono/transpose", (-2.0,)) in got and ("/sono/note/pressure", (67.0, 1.0)) in got
    # the G4's note-on came in one datagram with its pressure and timbre: the daemon applies them together
    assert receiver.bundles == [["/sono/note/on", "/sono/note/pressure", "/sono/note/timbre"]]
    assert [w for w in want if len(w) > 1] == [[("/sono/note/on", (67.0, pytest.approx(90 / 127))),
                                                ("/sono/note/pressure", (67.0, pytest.approx(40 / 127))),
                                                ("/sono/note/timbre", (67.0, pytest.approx(0.5 + 26 / 126)))]]
