"""The parameter model: one rule for ranges and rounding, whichever door a value comes in by."""

import math

import pytest

from sonolatent.control.convert import OscValueError, convert
from sonolatent.errors import SonolatentError
from sonolatent.params.namespace import build_namespace
from sonolatent.params.values import coerce, initial_values, linked_values

NS = build_namespace(latent_dim=3, n_slots=8)
NUMERIC = [p for p in NS.values() if p.numeric and not p.action]


@pytest.mark.parametrize("x", [-1e9, -4.5, -0.5, 0.0, 0.49, 0.5, 1.5, 2.5, 3.7, 1e9])
def test_a_patch_value_and_an_osc_value_land_on_the_same_number(x):
    for p in NUMERIC:
        args = [x] * len(p.types)
        assert coerce(p, args) == convert(p, args), p.address


def test_integers_round_half_up_and_clamp():
    mode = NS["/sono/loop/mode"]
    assert coerce(mode, 0.5) == (1,) and coerce(mode, 1.5) == (2,) and coerce(mode, 9) == (2,)
    assert isinstance(coerce(mode, 1.0)[0], int)
    assert coerce(NS["/sono/gain"], [True]) == (1.0,)


def test_bad_values_are_one_line_errors_naming_the_address():
    with pytest.raises(SonolatentError, match=r"^/sono/gain: value 1 must be a finite number, got nan$"):
        coerce(NS["/sono/gain"], [math.nan])
    with pytest.raises(SonolatentError, match=r"^/sono/xy: expects 2 value\(s\), got 1$"):
        coerce(NS["/sono/xy"], [0.5])
    with pytest.raises(SonolatentError, match="must be a string"):
        coerce(NS["/sono/slot/0/load"], [3])
    with pytest.raises(OscValueError, match="NaN"):
        convert(NS["/sono/gain"], [math.nan])


def test_every_stored_parameter_starts_at_its_default_and_mirrors_are_derived():
    v = initial_values(NS)
    assert v["/sono/gain"] == (0.8,) and v["/sono/slot/3/name"] == ("",) and "/sono/play" not in v
    assert linked_values("/sono/latent/1", (2.0,), v.get) == {"/sono/latent/1": (2.0,), "/sono/latent": (0.0, 2.0, 0.0)}
    xy = linked_values("/sono/xy", (0.3, 0.7), v.get)
    weights = xy.pop("/sono/weights")   # the blend in effect: the four corners, bilinear
    assert xy == {"/sono/xy": (0.3, 0.7), "/sono/xy/x": (0.3,), "/sono/xy/y": (0.7,)}
    assert [round(w, 6) for w in weights[:4]] == [0.21, 0.09, 0.49, 0.21] and not any(weights[4:])
