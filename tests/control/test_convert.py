"""Conversion of raw OSC arguments into parameter values (pure functions)."""

import math

import pytest

from sonolatent.control.convert import (
    OscValueError, convert, has_norm, is_pattern, match, number, resolve, to_norm, validate_name,
)
from sonolatent.params.namespace import build_namespace
from sonolatent.errors import SonolatentError

NS = build_namespace(latent_dim=16, n_slots=8)
GAIN = NS["/sono/gain"]          # f 0..2
MODE = NS["/sono/loop/mode"]     # i 0..2, values (0, 1, 2)
PAIR = NS["/sono/morph/pair"]    # ii 0..7
LATENT = NS["/sono/latent"]      # 16 f -4..4
WEIGHTS = NS["/sono/weights"]    # 8 f 0..1


@pytest.mark.parametrize("arg, expected", [
    (1, 1.0),            # i
    (2**40, 2.0),        # h (python-osc gives an int), clamped
    (0.25, 0.25),        # f
    (1.0000000001, 1.0000000001),  # d keeps double precision
    (True, 1.0),         # T
    (False, 0.0),        # F
])
def test_every_numeric_type_tag(arg, expected):
    assert convert(GAIN, [arg]) == (pytest.approx(expected),)
    assert isinstance(convert(GAIN, [arg])[0], float)


@pytest.mark.parametrize("bad, reason", [
    (float("nan"), "NaN"), (float("inf"), "infinite"), (float("-inf"), "infinite"),
    ("loud", "number"), (b"\x00\x01", "number"), (None, "number"), ((1, 2, 3, 4), "number"),
])
def test_rejects_nan_inf_and_non_numbers(bad, reason):
    with pytest.raises(OscValueError, match=reason):
        convert(GAIN, [bad])


def test_error_is_a_sonolatent_error_with_one_line():
    with pytest.raises(SonolatentError) as e:
        convert(LATENT, [0.0] * 3)
    assert "\n" not in str(e.value) and "16" in str(e.value) and "3" in str(e.value)


def test_clamps_to_range():
    assert convert(GAIN, [5.0]) == (2.0,)
    assert convert(GAIN, [-1]) == (0.0,)
    assert convert(GAIN, [-(2**63)]) == (0.0,)
    assert convert(NS["/sono/transpose"], [-100.0]) == (-24.0,)


def test_int_params_round_and_clamp():
    assert convert(MODE, [1.6]) == (2,)
    assert convert(MODE, [0.4]) == (0,)
    assert convert(MODE, [True]) == (1,)
    assert convert(MODE, [99]) == (2,)
    assert isinstance(convert(MODE, [1.0])[0], int)
    assert convert(PAIR, [3, 9.0]) == (3, 7)


def test_arity():
    with pytest.raises(OscValueError, match="expects 2 numbers, got 1"):
        convert(PAIR, [1])
    with pytest.raises(OscValueError, match="got 2 values"):
        convert(GAIN, [1.0, 2.0])
    with pytest.raises(OscValueError, match="takes no arguments"):
        convert(NS["/sono/stop"], [1])
    with pytest.raises(OscValueError, match="expects one number"):
        convert(GAIN, [])   # a query is the caller's business: convert refuses it


def test_actions_without_arguments_get_their_default():
    assert convert(NS["/sono/play"], []) == (1.0,)
    assert convert(NS["/sono/play"], [0.5]) == (0.5,)
    assert convert(NS["/sono/stop"], []) == ()
    assert convert(NS["/sono/subscribe"], []) == (10.0,)
    assert convert(NS["/sono/subscribe"], [1e9]) == (3600.0,)
    with pytest.raises(OscValueError, match="expects a name"):
        convert(NS["/sono/slot/0/load"], [])


def test_norm_maps_zero_one_over_the_range():
    assert convert(GAIN, [0.5], norm=True) == (1.0,)
    assert convert(NS["/sono/transpose"], [0.0], norm=True) == (-24.0,)
    assert convert(NS["/sono/transpose"], [1], norm=True) == (24.0,)
    assert convert(NS["/sono/transpose"], [7.0], norm=True) == (24.0,)   # clamped to 1 first
    assert convert(MODE, [0.5], norm=True) == (1,)
    assert convert(LATENT, [0.5] * 16, norm=True) == (0.0,) * 16
    assert to_norm(NS["/sono/transpose"], (12.0,)) == (0.75,)
    with pytest.raises(OscValueError, match="NaN"):
        convert(GAIN, [math.nan], norm=True)


def test_vectors_as_arguments_or_one_array():
    v = [0.1 * k - 0.8 for k in range(16)]
    assert convert(LATENT, v) == pytest.approx(tuple(v))
    assert convert(LATENT, [v]) == pytest.approx(tuple(v))          # OSC array [ffff...]
    assert convert(WEIGHTS, [[2, 0, 0, 0, 0, 0, 0, -1]]) == (1.0,) + (0.0,) * 7
    with pytest.raises(OscValueError, match="value 3 is NaN"):
        convert(LATENT, [0.0, 0.0, 0.0, math.nan] + [0.0] * 12)
    with pytest.raises(OscValueError, match="expects 8 numbers, got 9"):
        convert(WEIGHTS, [0.0] * 9)


@pytest.mark.parametrize("name", ["kick", "Kick_01.wav", "a-b.c", "x" * 64, "0"])
def test_good_names(name):
    assert validate_name(name) == name
    assert convert(NS["/sono/slot/3/load"], [name]) == (name,)


@pytest.mark.parametrize("name", ["", "x" * 65, "../etc/passwd", "a/b", "/abs", "..", "a..b", ".", "with space",
                                  "naïve", "a\x00b", "c:\\x", 5, 1.5, True, None])
def test_bad_names(name):
    with pytest.raises(OscValueError):
        validate_name(name)
    with pytest.raises(OscValueError):
        convert(NS["/sono/patch/save"], [name])


def test_numbers_refuse_strings_for_numeric_params_and_vice_versa():
    with pytest.raises(OscValueError, match="got a string"):
        number("1.0")
    with pytest.raises(OscValueError, match="got a number"):
        convert(NS["/sono/slot/0/load"], [3])


def test_resolve_and_norm_addresses():
    assert resolve(NS, "/sono/gain") == (GAIN, False)
    assert resolve(NS, "/sono/gain/norm") == (GAIN, True)
    assert resolve(NS, "/sono/latent/3/norm") == (NS["/sono/latent/3"], True)
    assert resolve(NS, "/sono/nope") is None
    assert resolve(NS, "/sono/playing/norm") is None      # read-only: no /norm
    assert resolve(NS, "/sono/play/norm") is None         # actions: no /norm
    assert resolve(NS, "/sono/slot/0/load/norm") is None  # strings: no /norm
    assert has_norm(WEIGHTS) and not has_norm(NS["/sono/ping"])


def test_patterns():
    assert not is_pattern("/sono/gain")
    scales = match(NS, "/sono/latent/*/scale")
    assert sorted(p.address for p, _ in scales) == sorted(f"/sono/latent/{k}/scale" for k in range(16))
    assert [p.address for p, n in match(NS, "/sono/xy/[xy]")] == ["/sono/xy/x", "/sono/xy/y"]
    assert {p.address for p, n in match(NS, "/sono/slot/{0,7}/clear")} == {"/sono/slot/0/clear", "/sono/slot/7/clear"}
    assert {p.address for p, n in match(NS, "/sono/latent/1?")} == {f"/sono/latent/{k}" for k in range(10, 16)}
    assert len(match(NS, "/sono/latent/[!0-9]")) == 0
    assert match(NS, "/sono/gain/nor?") == [(GAIN, True)]
    assert match(NS, "/sono/gain") == [(GAIN, False)]
    assert match(NS, "/sono/****************************/*") != []   # cheap however many stars
    for bad in ["/sono/[abc", "/sono/{a,b", "/sono/a]", "/sono/[z-a]", "/sono/[]", "/" + "*" * 300]:
        with pytest.raises(OscValueError):
            match(NS, bad)
