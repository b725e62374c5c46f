"""The engine's own limits (issue 16): changes per block carried over in order, bounded loader queue.

Freewheel mode: blocks are counted, not timed, so the assertions are exact.
"""

import time

import numpy as np
import soundfile as sf

from sonolatent.engine.bounce import bounce, read_log
from sonolatent.engine.runtime import MAX_CHANGES_PER_BLOCK, MAX_LOADER_JOBS, Engine
from sonolatent.models.synth import StreamingSynth

from .conftest import Replies




def test_changes_over_the_block_cap_carry_over_in_order_and_bounce_exactly(bundle, samples_dir, tmp_path):
    rec, log = tmp_path / "take.wav", tmp_path / "take.jsonl"
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", record=rec, log_osc=log, duration=1.0)
    d = e.core.D
    e.preload({0: "sine", 1: "saw"}, [("/sono/play", (1.0,))])
    # one bundle of 700 changes (a pattern bomb), then 40 bundles for the same instant, then one more change
    bomb = [(f"/sono/latent/{k % d}", (((k % 7) - 3) / 10.0,)) for k in range(700)]
    e.submit(bomb, None, ("127.0.0.1", 1))
    at = time.time() - 1.0
    for j in range(40):
        e.submit([("/sono/morph", (j / 40,)), ("/sono/gain", (0.5 + j / 100,))], at, ("127.0.0.1", 2))
    e.submit([("/sono/transpose", (2.0,))], None, ("127.0.0.1", 3))
    e.start()
    assert e.wait(60)
    e.close()
    _, events, _ = read_log(log)
    records = [ev for ev in events if not any(a in ("/sono/play", "/sono/quit") or a.endswith("/load")
                                              for a, _ in ev["changes"])]
    applied = [a for ev in records for a, _ in ev["changes"]]
    want = [a for a, _ in bomb] + ["/sono/morph", "/sono/gain"] * 40 + ["/sono/transpose"]
    assert applied == want                                   # everything once, in the order it came
    sizes = [len(ev["changes"]) for ev in records]
    assert sizes == [MAX_CHANGES_PER_BLOCK] * 3 + [len(want) - 3 * MAX_CHANGES_PER_BLOCK]
    first = records[0]["block"]
    assert [ev["block"] for ev in records] == [first, first + 1, first + 2, first + 3]   # one block after another
    morphs = [v for ev in records for a, v in ev["changes"] if a == "/sono/morph"]
    assert morphs == [[j / 40] for j in range(40)]
    assert e.status()["carried"] == (444 + 81) + (188 + 81) + 13     # each change counted per block it waited
    live, _ = sf.read(rec, dtype="float32")
    assert np.array_equal(bounce(log, StreamingSynth(bundle)), live)          # carried changes bounce sample-exactly


def test_a_flood_of_patch_saves_is_refused_beyond_the_loader_queue(bundle, samples_dir, tmp_path):
    patches = tmp_path / "patches"
    patches.mkdir()
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", patches_dir=patches, duration=0.5)
    replies = Replies()
    e.attach_replier(replies)
    e.submit([("/sono/patch/save", (f"p{k}",)) for k in range(200)], None, ("127.0.0.1", 9))
    e.start()
    assert e.wait(60)
    e.close()
    busy = [r for r in replies.errors if "busy" in r[2]]
    saved = sorted(p.name for p in patches.glob("*.toml"))
    assert len(busy) >= 200 - MAX_LOADER_JOBS - 1 and 1 <= len(saved) <= MAX_LOADER_JOBS + 1
    assert not list(patches.glob("*.part")) and not list(patches.glob(".*"))
