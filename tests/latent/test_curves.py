import numpy as np
import pytest

from sonolatent.errors import SonolatentError
from sonolatent.latent import CURVES, constant, curve_positions, get_curve, morph_weights, parse_keyframes


def test_builtin_curves_endpoints_and_shape():
    t = curve_positions(101)
    assert t[0] == 0.0 and t[-1] == 1.0
    for name, c in CURVES.items():
        y = c(t)
        assert y.shape == t.shape, name
        assert y[0] == 0.0 and y[-1] == 1.0, name
        assert np.all(np.diff(y) >= 0), name


def test_linear_ease_hold_values():
    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(get_curve("linear")(t), t)
    np.testing.assert_allclose(get_curve("ease")(t), [0, 0.15625, 0.5, 0.84375, 1])
    np.testing.assert_array_equal(get_curve("hold")(np.array([0.0, 0.499, 0.5, 1.0])), [0, 0, 1, 1])
    # ease is flat at both ends
    e = get_curve("ease")
    assert e(np.array([0.01]))[0] < 0.01 * 0.5 and e(np.array([0.99]))[0] > 1 - 0.01 * 0.5


def test_unknown_curve_is_one_line_error():
    with pytest.raises(SonolatentError, match=r"--curve: unknown curve 'wobble' \(choose from linear, ease, hold\)"):
        get_curve("wobble")


def test_keyframes_interpolate_and_hold_outside():
    k = parse_keyframes("0:0,0.5:0.8,1:1")
    np.testing.assert_allclose(k(np.array([0, 0.25, 0.5, 0.75, 1])), [0, 0.4, 0.8, 0.9, 1])
    k2 = parse_keyframes(" 0.2:0.3 , 0.6:0.9 ")
    np.testing.assert_allclose(k2(np.array([0.0, 0.2, 0.4, 0.6, 1.0])), [0.3, 0.3, 0.6, 0.9, 0.9])
    assert str(k) == "0:0,0.5:0.8,1:1"
    single = parse_keyframes("0.5:0.25")
    np.testing.assert_allclose(single(np.array([0, 1])), [0.25, 0.25])


@pytest.mark.parametrize("text,msg", [
    ("", "no keyframes"),
    ("0:0,,1:1", "empty item"),
    ("0:0,0.5", r"'0.5' is not time:value"),
    ("0:0:1", r"'0:0:1' is not time:value"),
    ("0:a,1:1", "two numbers"),
    ("1.5:0", r"time 1.5 .* outside 0..1"),
    ("0:1.2", r"value 1.2 .* outside 0..1"),
    ("0:0,0.5:1,0.5:0", r"times must increase \(0.5 comes after 0.5\)"),
    ("0:nan", "finite"),
])
def test_malformed_keyframes(text, msg):
    with pytest.raises(SonolatentError, match="^--keyframes: .*" + msg):
        parse_keyframes(text)


def test_constant_and_morph_weights():
    w = morph_weights(constant(0.3), 5)
    np.testing.assert_allclose(w, [[0.7] * 5, [0.3] * 5])
    w = morph_weights(get_curve("linear"), 3)
    np.testing.assert_allclose(w, [[1, 0.5, 0], [0, 0.5, 1]])
    assert curve_positions(1).tolist() == [0.0]
