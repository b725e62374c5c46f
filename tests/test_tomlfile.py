"""The one TOML reader and writer: what it writes reads back, a NaN is refused (never written as 0.0)."""

import math

import pytest

from sonolatent.engine.patch import parse_patch, patch_text
from sonolatent.errors import ConfigError
from sonolatent.midi import Mapping, dumps_mapping, read_mapping_text
from sonolatent.params.namespace import build_namespace
from sonolatent.params.values import initial_values
from sonolatent.tomlfile import dumps, find_line, loads

NS = build_namespace(4)


def test_written_text_reads_back_with_the_header_first():
    doc = {"patch": {"name": "a \"quoted\" name\n", "description": "ü"}, "slots": {"0": "piano"},
           "params": {"/sono/gain": 0.8, "/sono/morph/pair": [0, 1], "/sono/latent": [0.0, -1.5, 2.0, 1e-300]}}
    text = dumps(doc, "# mine\n# two lines")
    assert text.startswith("# mine\n# two lines\n\n[patch]\n")
    assert loads(text, "x.toml") == doc


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused_with_its_key_and_nothing_is_written(bad):
    with pytest.raises(ConfigError, match=r"^patch p: params\./sono/latent\[1\] is not a finite number; nothing written$"):
        dumps({"params": {"/sono/gain": 0.8, "/sono/latent": [0.0, bad]}}, what="patch p")


def test_a_patch_holding_nan_is_refused_not_saved_as_zero():
    values = initial_values(NS)
    values["/sono/gain"] = (math.nan,)
    with pytest.raises(ConfigError, match=r"params\./sono/gain is not a finite number"):
        patch_text({0: "piano"}, values, NS, name="p")
    values["/sono/gain"] = (0.25,)
    text = patch_text({0: "piano"}, values, NS, name="p")
    assert dict(parse_patch(text, "p.toml", NS).changes)["/sono/gain"] == (0.25,)


def test_a_learned_mapping_names_the_line_of_a_bad_item():
    m = read_mapping_text('[[cc]]\ncc = 1\naddress = "/sono/morph"\n\n[[cc]]\ncc = 74\naddress = "/sono/latent/5"\n')
    text = dumps_mapping(m)
    assert read_mapping_text(text) == m
    bad = text.replace('"/sono/latent/5"', '"no-slash"')
    line = find_line(bad, ("cc", 1, "address"), lists=("cc",))
    assert "no-slash" in bad.splitlines()[line - 1]
    with pytest.raises(ConfigError, match=rf":{line}: "):
        read_mapping_text(bad, "m.toml")
    assert dumps_mapping(Mapping()) and read_mapping_text(dumps_mapping(Mapping())) == Mapping()
