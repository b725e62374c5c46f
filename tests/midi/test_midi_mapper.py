"""Mapper: MIDI messages -> OSC messages, no ports."""

import math

import mido
import pytest

from sonolatent.errors import ConfigError
from sonolatent.midi import Mapper, apply_curve, bend_to_unit, read_mapping_text, shape


def mapper(text: str) -> Mapper:
    return Mapper(read_mapping_text(text))


def cc(control, value, channel=0):
    return mido.Message("control_change", control=control, value=value, channel=channel)


def on(note, velocity=100, channel=0):
    return mido.Message("note_on", note=note, velocity=velocity, channel=channel)


def off(note, channel=0):
    return mido.Message("note_off", note=note, channel=channel)


def value(out):
    assert len(out) == 1, out
    (address, args), = out
    assert len(args) == 1
    return address, args[0]


# -- curves and shaping


def test_curves_fix_ends_and_bend_the_middle():
    for curve in ("linear", "exp", "log"):
        assert apply_curve(0.0, curve) == 0.0
        assert apply_curve(1.0, curve) == pytest.approx(1.0)
    assert apply_curve(0.5, "linear") == 0.5
    assert apply_curve(0.5, "exp") == pytest.approx(math.expm1(2) / math.expm1(4))
    assert apply_curve(0.5, "exp") < 0.2
    assert apply_curve(0.5, "log") > 0.8
    for x in (0.1, 0.37, 0.8):  # log is exactly the inverse of exp
        assert apply_curve(apply_curve(x, "exp"), "log") == pytest.approx(x)
    xs = [i / 20 for i in range(21)]
    for curve in ("exp", "log"):
        ys = [apply_curve(x, curve) for x in xs]
        assert ys == sorted(ys) and len(set(ys)) == len(ys)


def test_shape_invert_and_range():
    assert shape(0.0, -3, 3) == -3
    assert shape(1.0, -3, 3) == 3
    assert shape(0.0, -3, 3, invert=True) == 3
    assert shape(0.25, 10, 20, invert=True) == 17.5
    assert shape(1.0, 1, 0) == 0  # min > max is allowed: a reversed knob


def test_cc_7bit_linear_exp_log_invert():
    m = mapper("""
[[cc]]
cc = 1
address = "/sono/morph"
[[cc]]
cc = 2
address = "/sono/gain"
curve = "exp"
[[cc]]
cc = 3
address = "/sono/latent/3"
min = -3
max = 3
invert = true
[[cc]]
cc = 4
address = "/sono/rate"
min = 0.5
max = 2.0
curve = "log"
""")
    assert value(m.handle(cc(1, 0))) == ("/sono/morph", 0.0)
    assert value(m.handle(cc(1, 127))) == ("/sono/morph", 1.0)
    assert value(m.handle(cc(1, 64)))[1] == pytest.approx(64 / 127)
    assert value(m.handle(cc(2, 64)))[1] == pytest.approx(apply_curve(64 / 127, "exp"))
    assert value(m.handle(cc(3, 0))) == ("/sono/latent/3", 3.0)
    assert value(m.handle(cc(3, 127))) == ("/sono/latent/3", -3.0)
    assert value(m.handle(cc(4, 127)))[1] == pytest.approx(2.0)
    assert value(m.handle(cc(4, 32)))[1] == pytest.approx(0.5 + 1.5 * apply_curve(32 / 127, "log"))
    assert m.ignored == {}
    assert m.handle(cc(5, 10)) == []
    assert m.ignored["unmapped"] == 1


def test_cc_channel_filter_is_one_based():
    m = mapper("""
[[cc]]
cc = 1
channel = 2
address = "/sono/morph"
[[cc]]
cc = 1
address = "/sono/gain"
""")
    assert [a for a, _ in m.handle(cc(1, 5, channel=1))] == ["/sono/morph", "/sono/gain"]
    assert [a for a, _ in m.handle(cc(1, 5, channel=0))] == ["/sono/gain"]


def test_14bit_cc_msb_then_lsb():
    m = mapper("""
[[cc]]
cc = 1
lsb = 33
address = "/sono/morph"
""")
    # an LSB before any MSB has nothing to refine
    assert m.handle(cc(33, 5)) == []
    # MSB alone: the LSB counts as 0 (MIDI spec)
    assert value(m.handle(cc(1, 64))) == ("/sono/morph", pytest.approx((64 << 7) / 16383))
    out = value(m.handle(cc(33, 100)))
    assert out == ("/sono/morph", pytest.approx(((64 << 7) | 100) / 16383))
    # LSB only (MSB unchanged): refines the stored MSB
    assert value(m.handle(cc(33, 1)))[1] == pytest.approx(((64 << 7) | 1) / 16383)
    # full scale
    m.handle(cc(1, 127))
    assert value(m.handle(cc(33, 127)))[1] == pytest.approx(1.0)
    # 14-bit resolution: neighbouring values differ by 1/16383
    m.handle(cc(1, 0))
    a = value(m.handle(cc(33, 1)))[1]
    b = value(m.handle(cc(33, 2)))[1]
    assert b - a == pytest.approx(1 / 16383)
    assert m.ignored == {}


def test_14bit_msb_state_is_per_channel():
    m = mapper("""
[[cc]]
cc = 7
lsb = 39
address = "/sono/gain"
""")
    m.handle(cc(7, 127, channel=0))
    m.handle(cc(7, 0, channel=1))
    assert value(m.handle(cc(39, 0, channel=0)))[1] == pytest.approx((127 << 7) / 16383)
    assert value(m.handle(cc(39, 0, channel=1)))[1] == 0.0


def nrpn(param, msb, lsb=None, channel=0):
    msgs = [cc(99, param >> 7, channel), cc(98, param & 127, channel), cc(6, msb, channel)]
    if lsb is not None:
        msgs.append(cc(38, lsb, channel))
    return msgs


def test_nrpn_selects_then_14bit_data():
    m = mapper("""
[[nrpn]]
param = 300
address = "/sono/latent/2"
min = -3
max = 3
[[nrpn]]
param = 5
address = "/sono/morph"
""")
    outs = [m.handle(msg) for msg in nrpn(300, 64, 0)]
    assert outs[0] == [] and outs[1] == []
    assert value(outs[2]) == ("/sono/latent/2", pytest.approx(-3 + 6 * (64 << 7) / 16383))
    assert value(outs[3]) == ("/sono/latent/2", pytest.approx(-3 + 6 * (64 << 7) / 16383))
    assert value(m.handle(cc(38, 127)))[1] == pytest.approx(-3 + 6 * ((64 << 7) | 127) / 16383)
    # another parameter
    outs = [m.handle(msg) for msg in nrpn(5, 127, 127)]
    assert value(outs[-1]) == ("/sono/morph", pytest.approx(1.0))
    # an unmapped NRPN is consumed, not sent anywhere
    outs = [m.handle(msg) for msg in nrpn(77, 10, 10)]
    assert outs == [[], [], [], []]
    # after an RPN selection, data entry is not ours: unmapped
    m.handle(cc(101, 0))
    m.handle(cc(100, 0))
    assert m.handle(cc(6, 2)) == []
    assert m.ignored == {"unmapped": 1}


def test_data_entry_without_nrpn_mapping_is_unmapped():
    m = mapper("""
[[cc]]
cc = 1
address = "/sono/morph"
""")
    for msg in nrpn(300, 1, 2):
        assert m.handle(msg) == []
    assert m.ignored["unmapped"] == 4


def test_pitchbend_range_hits_both_ends_exactly():
    m = mapper("""
[pitchbend]
address = "/sono/latent/1"
range = 3
""")
    bend = lambda p: value(m.handle(mido.Message("pitchwheel", pitch=p)))[1]  # noqa: E731
    assert bend(-8192) == -3.0
    assert bend(0) == 0.0
    assert bend(8191) == 3.0
    assert bend(4096) == pytest.approx(3 * 4096 / 8191)
    assert bend(-4096) == pytest.approx(-1.5)
    assert bend_to_unit(-8192) == -1 and bend_to_unit(8191) == 1


def test_pitchbend_min_max():
    m = mapper("""
[pitchbend]
address = "/sono/position"
min = 0
max = 1
""")
    p = lambda v: value(m.handle(mido.Message("pitchwheel", pitch=v)))[1]  # noqa: E731
    assert p(-8192) == 0.0
    assert p(0) == 0.5
    assert p(8191) == 1.0


def test_pitchbend_adds_to_the_held_key_transpose():
    m = mapper("""
[notes]
mode = "play"
root = 60
[pitchbend]
range = 2
""")
    assert m.handle(on(62)) == [("/sono/transpose", (2.0,)), ("/sono/play", (pytest.approx(100 / 127),))]
    assert m.handle(mido.Message("pitchwheel", pitch=8191)) == [("/sono/transpose", (4.0,))]
    assert m.handle(on(65)) == [("/sono/transpose", (7.0,))]
    assert m.handle(mido.Message("pitchwheel", pitch=-8192)) == [("/sono/transpose", (3.0,))]
    assert m.handle(off(65)) == [("/sono/transpose", (0.0,))]


# -- notes: legato, last-note priority


NOTES = """
[notes]
mode = "play"
root = 60
"""


def addresses(out):
    return [a for a, _ in out]


def test_legato_last_note_priority():
    m = mapper(NOTES)
    out = m.handle(on(64, 127))
    assert out == [("/sono/transpose", (4.0,)), ("/sono/play", (1.0,))]
    # second key while the first is held: transpose only, no retrigger
    assert m.handle(on(67)) == [("/sono/transpose", (7.0,))]
    assert m.handle(on(55)) == [("/sono/transpose", (-5.0,))]
    # releasing a key that is not the newest changes nothing
    assert m.handle(off(67)) == []
    # releasing the newest falls back to the newest still held
    assert m.handle(off(55)) == [("/sono/transpose", (4.0,))]
    # releasing the last key stops
    assert m.handle(off(64)) == [("/sono/stop", ())]
    # a stray note-off does nothing
    assert m.handle(off(64)) == []
    # note-on with velocity 0 is a note-off
    m.handle(on(60))
    assert m.handle(on(60, 0)) == [("/sono/stop", ())]
    assert m.ignored == {}


def test_retrigger_and_velocity_modes():
    m = mapper("""
[notes]
mode = "play"
root = 48
retrigger = true
velocity = "gain"
velocity_min = 0.2
velocity_max = 0.8
""")
    assert m.handle(on(48, 127)) == [("/sono/transpose", (0.0,)), ("/sono/gain", (pytest.approx(0.8),)),
                                     ("/sono/play", ())]
    out = m.handle(on(50, 0 + 1))
    assert addresses(out) == ["/sono/transpose", "/sono/gain", "/sono/play"]
    assert out[1][1][0] == pytest.approx(0.2 + 0.6 / 127)
    m2 = mapper("""
[notes]
mode = "play"
velocity = "off"
transpose = false
""")
    assert m2.handle(on(70)) == [("/sono/play", ())]
    assert m2.handle(off(70)) == [("/sono/stop", ())]


def test_same_key_twice_then_release_stops():
    m = mapper(NOTES)
    m.handle(on(60))
    m.handle(on(60))  # repeated note-on of a held key (some keyboards do that)
    assert m.handle(off(60)) == [("/sono/stop", ())]


def test_sustain_pedal_holds_the_stop():
    m = mapper(NOTES)
    m.handle(on(60))
    assert m.handle(cc(64, 127)) == []
    assert m.handle(off(60)) == []  # pedal down: still sounding
    assert m.handle(on(62)) == [("/sono/transpose", (2.0,))]  # legato on top of it
    assert m.handle(off(62)) == []
    assert m.handle(cc(64, 0)) == [("/sono/stop", ())]
    assert m.ignored == {}


def test_sustain_release_falls_back_to_a_held_key():
    m = mapper(NOTES)
    m.handle(on(60))
    m.handle(cc(64, 127))
    m.handle(on(67))
    m.handle(off(67))  # 67 sustained, 60 still down
    assert m.handle(cc(64, 0)) == [("/sono/transpose", (0.0,))]
    assert m.handle(off(60)) == [("/sono/stop", ())]


def test_all_notes_off_and_panic():
    m = mapper(NOTES)
    m.handle(on(60))
    m.handle(on(64))
    assert m.handle(cc(123, 0)) == [("/sono/stop", ())]
    assert m.handle(off(64)) == []
    m.handle(on(61))
    assert m.panic() == [("/sono/stop", ())]
    assert m.panic() == []


def test_notes_channel_filter_and_unmapped_notes():
    m = mapper("""
[notes]
mode = "play"
channel = 10
""")
    assert m.handle(on(60, channel=0)) == []
    assert addresses(m.handle(on(60, channel=9))) == ["/sono/transpose", "/sono/play"]
    assert m.ignored["unmapped"] == 1
    m2 = mapper("[[cc]]\ncc = 1\naddress = \"/sono/morph\"\n")
    assert m2.handle(on(60)) == []
    assert m2.ignored["unmapped"] == 1


# -- program change, aftertouch, ignored things


def test_program_change_list_and_table():
    m = mapper("""
[program]
patches = ["pad", "", "bells"]
""")
    assert m.handle(mido.Message("program_change", program=0)) == [("/sono/patch/load", ("pad",))]
    assert m.handle(mido.Message("program_change", program=2)) == [("/sono/patch/load", ("bells",))]
    assert m.handle(mido.Message("program_change", program=1)) == []  # "" leaves it unmapped
    assert m.handle(mido.Message("program_change", program=100)) == []
    assert m.ignored["unmapped"] == 2
    m2 = mapper("""
[program]
address = "/sono/patch/load"
channel = 1
[program.patches]
10 = "choir"
127 = "noise"
""")
    assert m2.handle(mido.Message("program_change", program=127)) == [("/sono/patch/load", ("noise",))]
    assert m2.handle(mido.Message("program_change", program=10, channel=3)) == []


def test_aftertouch_channel_and_poly():
    m = mapper("""
[[aftertouch]]
address = "/sono/latent/0"
min = 0
max = 3
[[aftertouch]]
type = "poly"
note = 60
address = "/sono/morph"
curve = "exp"
""")
    assert value(m.handle(mido.Message("aftertouch", value=127))) == ("/sono/latent/0", 3.0)
    out = value(m.handle(mido.Message("polytouch", note=60, value=64)))
    assert out == ("/sono/morph", pytest.approx(apply_curve(64 / 127, "exp")))
    assert m.handle(mido.Message("polytouch", note=61, value=64)) == []
    assert m.ignored["unmapped"] == 1


def test_sysex_realtime_and_unmapped_are_counted():
    m = mapper(NOTES)
    assert m.handle(mido.Message("sysex", data=[1, 2, 3])) == []
    assert m.handle(mido.Message("clock")) == []
    assert m.handle(mido.Message("active_sensing")) == []
    assert m.handle(mido.Message("songpos", pos=3)) == []
    assert m.handle(mido.Message("pitchwheel", pitch=5)) == []
    assert m.handle(cc(1, 1)) == []
    assert m.ignored == {"sysex": 1, "realtime": 2, "unmapped": 3}


# -- MIDI learn (pure)


def test_learn_binds_the_next_cc_with_the_address_range():
    m = mapper(NOTES)
    learned = []
    m.on_learn = lambda mapping, what: learned.append((mapping, what))
    m.arm_learn("/sono/latent/4")
    assert addresses(m.handle(on(60))) == ["/sono/transpose", "/sono/play"]  # keys do not bind
    out = m.handle(cc(74, 127, channel=2))
    assert learned and learned[0][1] == "CC 74 on channel 3 -> /sono/latent/4"
    entry = learned[0][0].cc[-1]
    assert (entry.cc, entry.channel, entry.min, entry.max) == (74, 3, -3.0, 3.0)
    assert out == [("/sono/latent/4", (3.0,))]  # the moving control already drives it
    assert not m.learner.armed
    assert m.handle(cc(74, 0, channel=2)) == [("/sono/latent/4", (-3.0,))]


def test_learn_replaces_an_existing_binding_and_upgrades_to_14bit():
    m = mapper("""
[[cc]]
cc = 1
address = "/sono/morph"
[[cc]]
cc = 2
address = "/sono/gain"
""")
    m.arm_learn("/sono/position")
    m.handle(cc(1, 10))
    assert [(c.cc, c.address) for c in m.mapping.cc] == [(2, "/sono/gain"), (1, "/sono/position")]
    assert m.handle(cc(33, 5)) == [("/sono/position", (pytest.approx(((10 << 7) | 5) / 16383),))]
    assert m.mapping.cc[-1].lsb == 33


def test_learn_nrpn_pitchbend_aftertouch():
    m = mapper(NOTES)
    m.arm_learn("/sono/latent/9/norm")
    for msg in nrpn(1000, 64, 0, channel=4):
        m.handle(msg)
    n = m.mapping.nrpn[-1]
    assert (n.param, n.channel, n.min, n.max, n.address) == (1000, 5, 0.0, 1.0, "/sono/latent/9/norm")
    m.arm_learn("/sono/transpose")
    assert m.handle(mido.Message("pitchwheel", pitch=8191)) == [("/sono/transpose", (2.0,))]
    assert m.mapping.pitchbend.range == 2.0
    m.arm_learn("/sono/morph")
    m.handle(mido.Message("aftertouch", value=127))
    a = m.mapping.aftertouch[-1]
    assert (a.type, a.address, a.min, a.max, a.channel) == ("channel", "/sono/morph", 0.0, 1.0, 1)


@pytest.mark.parametrize("address", ["/sono/play", "/sono/xy", "/sono/weights", "/sono/quit", "/sono/latent",
                                     "/sono/slot/2/load", "morph", "/sono//x", ""])
def test_learn_refuses_addresses_that_take_no_single_number(address):
    m = mapper(NOTES)
    with pytest.raises(ConfigError, match="MIDI learn"):
        m.arm_learn(address)
