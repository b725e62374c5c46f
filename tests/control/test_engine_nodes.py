"""The read-only nodes the engine fills for the surface: the latent map, the meters, the sample list.

Deterministic: the engine runs freewheel (no clock) with the tiny test model and real WAV files.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sonolatent.engine.runtime import Engine
from sonolatent.engine.slots import list_samples
from sonolatent.models.synth import StreamingSynth

from .conftest import write_sounds


@pytest.fixture(scope="module")
def bundle(tiny_bundle_dir):
    import torch

    from sonolatent.models import load_bundle

    torch.set_num_threads(1)
    return load_bundle(tiny_bundle_dir)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = write_sounds(tmp_path_factory.mktemp("samples"), **{"saw.flac": np.zeros(1000)})   # saw twice: listed once
    (d / "notes.txt").write_text("not a sound")
    (d / "bad name.wav").write_bytes(b"")
    (d / "sub").mkdir()
    sf.write(d / "sub" / "deep.wav", np.zeros(1000, np.float32), 44100)
    return d


def test_sample_list_is_what_a_slot_load_accepts(samples, bundle):
    assert list_samples(samples) == ["saw", "sine"]
    assert list_samples(samples / "nothing") == []
    e = Engine(StreamingSynth(bundle), samples_dir=samples, mode="freewheel", duration=0.1)
    assert e.choices("/sono/slot/3/load") == ("saw", "sine")
    assert e.choices("/sono/gain") is None
    e.close()


def test_map_points_are_pca_coordinates_0_and_1_in_sd(samples, bundle):
    e = Engine(StreamingSynth(bundle), samples_dir=samples, mode="freewheel", duration=0.3)
    e.preload({0: "sine", 2: "saw"}, [("/sono/smooth", (0.0,)), ("/sono/position", (0.25,)), ("/sono/rate", (0.0,)),
                                       ("/sono/xy", (0.0, 1.0))])   # all weight on slot 2, the playhead frozen
    core = e.core
    core.render_block()
    core.render_block()           # the first block still carries the glide of the loads
    proj = core.pca_comp[:2] / core.pca_std[:2, None]
    for k in (0, 2):
        want = proj @ (core.slots[k].column(core.playhead.position) - core.pca_mean)
        assert np.allclose(e.value(f"/sono/slot/{k}/map"), want)
    assert np.allclose(e.value("/sono/map"), e.value("/sono/slot/2/map"))   # the sound is slot 2's
    assert e.value("/sono/slot/1/map") == (0.0, 0.0)                          # empty: the default
    core.apply([("/sono/free", (1,)), ("/sono/latent", (1.5, -0.5) + (0.0,) * (core.D - 2))])
    core.render_block()
    core.render_block()
    assert np.allclose(e.value("/sono/map"), (1.5, -0.5))                     # free mode: the offsets in sd
    e.close()


def test_meters_follow_the_output(samples, bundle):
    e = Engine(StreamingSynth(bundle), samples_dir=samples, mode="freewheel", duration=1.0)
    e.preload({0: "sine"}, [("/sono/gain", (1.0,))])
    e.start()
    assert e.wait(60)
    e.close()
    assert e.value("/sono/meter/level") == (0.0,)                             # never played: silence
    assert 0.0 < e.value("/sono/meter/cpu")[0] and e.value("/sono/meter/underflows") == (0,)

    e = Engine(StreamingSynth(bundle), samples_dir=samples, mode="freewheel", duration=1.0)
    e.preload({0: "sine"}, [("/sono/gain", (1.0,)), ("/sono/play", (1.0,)), ("/sono/attack", (0.001,))])
    e.start()
    assert e.wait(60)
    e.close()
    assert e.value("/sono/meter/level")[0] > 1e-4                            # the held peak of what played
