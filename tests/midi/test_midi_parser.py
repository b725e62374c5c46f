"""MidiParser: raw bytes -> mido messages, garbage counted not raised."""

import random

import mido

from sonolatent.midi import Mapper, MidiParser, read_mapping_text


def kinds(msgs):
    return [m.type for m in msgs]


def test_plain_messages_and_running_status_in_a_stream():
    p = MidiParser()
    msgs = p.feed([0xB0, 1, 64, 2, 65, 3, 66])  # CC with running status
    assert [(m.control, m.value) for m in msgs] == [(1, 64), (2, 65), (3, 66)]
    msgs = p.feed([0xC3, 5, 6])  # program change: one data byte, running status too
    assert [(m.channel, m.program) for m in msgs] == [(3, 5), (3, 6)]
    assert p.accepted_bytes == 10
    msgs = p.feed([0xE0, 0x00, 0x40, 0x90])
    assert msgs[0].type == "pitchwheel" and msgs[0].pitch == 0
    assert p.feed([60]) == []  # split across feeds
    (m,) = p.feed([100])
    assert (m.type, m.note, m.velocity) == ("note_on", 60, 100)
    assert p.ignored == {}


def test_stray_data_bytes_are_garbage():
    p = MidiParser()
    assert p.feed([1, 2, 3]) == []
    assert p.ignored["garbage_bytes"] == 3


def test_a_status_byte_cuts_a_short_message():
    p = MidiParser()
    msgs = p.feed([0x90, 60, 0xB0, 7, 100])
    assert kinds(msgs) == ["control_change"]
    assert p.ignored["garbage_bytes"] == 2


def test_events_do_not_carry_running_status():
    p = MidiParser()
    assert kinds(p.feed_event([0xB0, 1, 64])) == ["control_change"]
    assert p.feed_event([0x40, 0x41]) == []  # would be a CC in a stream; in an event it is garbage
    assert p.ignored["garbage_bytes"] == 2
    assert p.feed_event([0x90, 60]) == []  # truncated event
    assert kinds(p.feed_event([0x80, 60, 0])) == ["note_off"]
    assert p.ignored["garbage_bytes"] == 4


def test_sysex_whole_split_cut_and_stray_end():
    p = MidiParser()
    (m,) = p.feed_event([0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7])
    assert m.type == "sysex" and list(m.data) == [0x7E, 0x7F, 0x06, 0x01]
    assert p.feed_event([0xF0, 1, 2]) == []  # long SysEx split over events
    (m,) = p.feed_event([3, 4, 0xF7])
    assert list(m.data) == [1, 2, 3, 4]
    assert p.ignored == {}
    # a status byte cuts a SysEx short: its bytes are garbage
    assert kinds(p.feed([0xF0, 1, 2, 0xB0, 1, 2])) == ["control_change"]
    assert p.ignored["garbage_bytes"] == 3
    assert p.feed([0xF7]) == []
    assert p.ignored["garbage_bytes"] == 4


def test_realtime_bytes_inside_a_message_pass_through():
    p = MidiParser()
    msgs = p.feed([0x90, 0xF8, 60, 0xFE, 100])
    assert kinds(msgs) == ["clock", "active_sensing", "note_on"]
    assert msgs[2].note == 60 and msgs[2].velocity == 100
    msgs = p.feed([0xF0, 1, 0xF8, 2, 0xF7])
    assert kinds(msgs) == ["clock", "sysex"] and list(msgs[1].data) == [1, 2]
    assert p.ignored == {}


def test_undefined_status_and_system_common():
    p = MidiParser()
    assert p.feed([0xF4, 0xF5, 0xF9, 0xFD]) == []
    assert p.ignored["garbage_bytes"] == 4
    msgs = p.feed([0xF2, 0x10, 0x01, 0xF6, 0xF3, 5])
    assert kinds(msgs) == ["songpos", "tune_request", "song_select"]
    assert p.feed([7]) == []  # system common clears running status
    assert p.ignored["garbage_bytes"] == 5


def test_oversized_sysex_is_dropped():
    p = MidiParser(max_sysex=16)
    assert p.feed([0xF0] + [1] * 40 + [0xF7]) == []
    assert p.ignored["garbage_bytes"] > 16
    assert kinds(p.feed([0xB0, 1, 2])) == ["control_change"]


def test_random_bytes_never_raise_and_every_byte_is_accounted_for():
    rng = random.Random(1234)
    m = Mapper(read_mapping_text("[notes]\n[[cc]]\ncc = 1\naddress = \"/sono/morph\"\n"))
    p = MidiParser()
    total = n = 0
    for _ in range(300):
        event = [rng.randrange(256) for _ in range(rng.randrange(1, 8))]
        total += len(event)
        for msg in p.feed_event(event):
            assert isinstance(msg, mido.Message)
            n += 1
            m.handle(msg)
    p.reset()  # a message left open at the end counts as garbage
    assert p.accepted_bytes + p.ignored["garbage_bytes"] == total
    assert p.ignored["garbage_bytes"] > 0 and n > 20
    assert sum(m.ignored.values()) > 0
