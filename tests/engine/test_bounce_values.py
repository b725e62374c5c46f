"""A performance log is checked where it enters (``bounce``), as a patch is: values clamped, bad ones refused."""

import json

import numpy as np
import pytest

from sonolatent.engine.bounce import bounce
from sonolatent.engine.runtime import LOG_FORMAT, LOG_VERSION
from sonolatent.errors import ConfigError
from sonolatent.models.synth import StreamingSynth


def write_log(path, bundle, samples_dir, changes):
    lines = [{"format": LOG_FORMAT, "version": LOG_VERSION, "model_rate": bundle.sample_rate,
              "output_rate": bundle.sample_rate, "hop": bundle.mel_config.hop_length, "samples": str(samples_dir)},
             {"block": 0, "changes": changes}, {"end": 8}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_logged_values_are_clamped_like_osc_values(bundle, samples_dir, tmp_path):
    play = [["/sono/free", [1]], ["/sono/attack", [0.001]], ["/sono/play", [1.0]]]
    loud = bounce(write_log(tmp_path / "a.jsonl", bundle, samples_dir, play + [["/sono/gain", [50.0]]]),
                  StreamingSynth(bundle))
    top = bounce(write_log(tmp_path / "b.jsonl", bundle, samples_dir, play + [["/sono/gain", [2.0]]]),
                 StreamingSynth(bundle))
    assert np.abs(top).max() > 0 and np.array_equal(loud, top)     # 50 is clamped to the range's 2


@pytest.mark.parametrize("change,message", [
    (["/sono/gain", ["loud"]], r"x\.jsonl: block 0: /sono/gain: value 1 must be a finite number"),
    (["/sono/xy", [0.5]], r"x\.jsonl: block 0: /sono/xy: expects 2 value\(s\), got 1"),
    (["/sono/nope", [1.0]], r"x\.jsonl: block 0: /sono/nope: no such address"),
    ("/sono/gain", r"x\.jsonl: block 0: expected \[address, values\]"),
])
def test_a_bad_logged_value_is_one_line_naming_the_block(bundle, samples_dir, tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        bounce(write_log(tmp_path / "x.jsonl", bundle, samples_dir, [change]), StreamingSynth(bundle))
