"""The live engine without a sound card: freewheel and headless clocks, scheduling, loads, log and bounce."""

import json
import time

import numpy as np
import pytest
import soundfile as sf

from sonolatent.engine.bounce import bounce, read_log
from sonolatent.engine.runtime import Engine
from sonolatent.errors import ConfigError
from sonolatent.models.synth import StreamingSynth

from .conftest import Replies




def wait_for(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return False


T0 = 1_000_000.0   # the injected wall clock of the freewheel tests: it stands still


def test_freewheel_record_equals_bounce_of_its_log(bundle, samples_dir, tmp_path):
    rec, log = tmp_path / "take.wav", tmp_path / "take.jsonl"
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", device_rate=48000, record=rec,
               log_osc=log, duration=1.5, clock=lambda: T0)
    replies = Replies()
    e.attach_replier(replies)
    e.preload({0: "sine", 1: "saw"}, [("/sono/play", (1.0,)), ("/sono/attack", (0.02,))])
    e.start()
    e.submit([("/sono/morph", (0.6,)), ("/sono/transpose", (3.0,))], None, ("127.0.0.1", 1))
    e.submit([("/sono/slot/2/load", ("chirp",))], None, ("127.0.0.1", 1))
    e.submit([("/sono/xy", (0.7, 0.7)), ("/sono/latent/1", (1.5,))], T0 + 0.4, ("127.0.0.1", 1))
    e.submit([("/sono/slot/3/load", ("../escape",))], None, ("127.0.0.1", 2))
    assert e.wait(30)
    e.close()
    assert replies.errors and replies.errors[0][0] == ("127.0.0.1", 2) and "slot/3" in replies.errors[0][1]
    live, sr = sf.read(rec, dtype="float32")
    assert sr == 48000 and len(live) > 1.5 * 48000 and np.abs(live).max() > 1e-3
    header, events, end = read_log(log)
    blocks = {a: ev["block"] for ev in events for a, _ in ev["changes"]}
    assert blocks["/sono/morph"] == blocks["/sono/transpose"]          # one packet, one block
    assert blocks["/sono/slot/2/load"] >= blocks["/sono/morph"]
    assert blocks["/sono/xy"] == blocks["/sono/latent/1"] == int(np.ceil(0.4 / e.core.dt))   # its time tag
    assert end == e.core.block and header["output_rate"] == 48000
    replay = bounce(log, StreamingSynth(bundle))
    assert replay.shape == live.shape
    assert np.array_equal(replay, live)


def test_scheduled_changes_apply_at_the_block_whose_time_reaches_them(bundle, samples_dir, tmp_path):
    """On an injected clock that stands still at T0, block b is due at T0 + b frames: a change tagged
    T0 + s applies at block ceil(s / frame), however slowly the machine starts or renders."""
    log = tmp_path / "s.jsonl"
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", log_osc=log, duration=2.0,
               clock=lambda: T0)
    at1, at2 = T0 + 0.8, T0 + 0.5
    e.submit([("/sono/gain", (0.1,)), ("/sono/rate", (0.5,))], at1, None)   # a bundle with a timetag
    e.submit([("/sono/gain", (0.3,))], at2, None)
    e.submit([("/sono/gain", (0.2,))], T0 - 5.0, None)                      # a time tag in the past: now
    e.start()
    assert e.wait(30)
    e.close()
    _, events, _ = read_log(log)
    got = [(ev["block"], [[a, v] for a, v in ev["changes"]]) for ev in events
           if ev["changes"][0][0] != "/sono/quit"]
    dt = bundle.mel_config.hop_length / bundle.sample_rate
    assert e.core.dt == pytest.approx(dt)
    assert got == [(0, [["/sono/gain", [pytest.approx(0.2)]]]),
                   (int(np.ceil(0.5 / dt)), [["/sono/gain", [pytest.approx(0.3)]]]),
                   (int(np.ceil(0.8 / dt)), [["/sono/gain", [pytest.approx(0.1)]], ["/sono/rate", [0.5]]])]


def test_slot_loads_happen_off_the_audio_path_and_errors_are_answered(bundle, samples_dir):
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless")
    r = Replies()
    e.attach_replier(r)
    e.start()
    e.submit([("/sono/slot/5/load", ("noise",))], None, ("h", 1))
    e.submit([("/sono/slot/6/load", ("does-not-exist",))], None, ("h", 2))
    e.submit([("/sono/playing", (1,))], None, ("h", 3))
    assert wait_for(lambda: e.value("/sono/slot/5/name") == ("noise",))
    assert wait_for(lambda: len(r.errors) == 2)
    assert {s for s, _, _ in r.errors} == {("h", 2), ("h", 3)}
    e.submit([("/sono/slot/5/clear", ())], None, None)
    assert wait_for(lambda: e.value("/sono/slot/5/name") == ("",))
    e.request_quit()
    e.wait(10)
    e.close()
    info, st = e.info(), e.status()
    assert info["latent_dim"] == bundle.vae.latent_dim and info["model_rate"] == 44100
    assert st["load_errors"] == 1 and st["blocks"] > 0 and st["render_ms_max"] > 0


def test_patch_save_then_load_by_name(bundle, samples_dir, tmp_path):
    patches = tmp_path / "patches"
    patches.mkdir()
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless", patches_dir=patches)
    r = Replies()
    e.attach_replier(r)
    e.preload({0: "sine", 2: "saw"}, [("/sono/morph/pair", (0, 2)), ("/sono/morph", (0.4,)), ("/sono/gain", (0.5,))])
    e.start()
    e.submit([("/sono/patch/save", ("mine",))], None, None)
    assert wait_for(lambda: (patches / "mine.toml").exists())
    e.submit([("/sono/slot/0/clear", ()), ("/sono/gain", (1.0,)), ("/sono/xy", (1.0, 1.0))], None, None)
    assert wait_for(lambda: e.value("/sono/gain") == (1.0,))
    e.submit([("/sono/patch/load", ("mine",))], None, None)
    e.submit([("/sono/patch/load", ("../etc",))], None, ("h", 9))
    assert wait_for(lambda: e.value("/sono/slot/0/name") == ("sine",))
    assert e.value("/sono/gain") == (0.5,) and e.core.blend_source == "morph"
    assert e.value("/sono/slot/2/name") == ("saw",)
    assert wait_for(lambda: any(s == ("h", 9) for s, _, _ in r.errors))
    e.request_quit()
    e.wait(10)
    e.close()


def test_bad_logs_are_one_line_errors(tmp_path, bundle):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"format": "sonolatent-performance", "version": 1}\n{"block": 3, "changes": []}\n{"block": 1\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:3"):
        read_log(p)
    p.write_text(json.dumps({"format": "other"}) + "\n")
    with pytest.raises(ConfigError, match="not a sonolatent performance log"):
        bounce(p, StreamingSynth(bundle))
    with pytest.raises(ConfigError, match="is a folder, not a performance log"):
        read_log(tmp_path)


class _Flags:
    """What sounddevice passes as ``status``: only ``output_underflow`` is read."""

    def __init__(self, underflow):
        self.output_underflow = underflow


def _alloc_growth(fn, n, rounds=1):
    """(bytes still held after, highest bytes held during) ``n`` calls of ``fn``, as tracemalloc sees them
    (Python objects and numpy buffers alike); with ``rounds`` > 1, the least of each over that many runs.

    tracemalloc sees every thread, and numpy lets go of the GIL while it copies a block, so a thread left
    over from another test can allocate inside a run now and then. What the callback itself allocates
    shows in every run; a stray thread's allocation does not, hence the least over several runs."""
    import gc
    import sys
    import tracemalloc
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)   # keep other threads from being handed the GIL meanwhile
    gc_was_on = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(200):   # warm-up: first-call caches are not the callback's doing
            fn()
        held, peak = [], []
        for _ in range(rounds):
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            for _ in range(n):
                fn()
            now, top = tracemalloc.get_traced_memory()
            held.append(now - base)
            peak.append(top - base)
    finally:
        tracemalloc.stop()
        if gc_was_on:
            gc.enable()
        sys.setswitchinterval(switch)
    return min(held), min(peak)


def test_the_audio_callback_allocates_nothing_per_call(bundle, samples_dir):
    """The sound card's callback, run as the device runs it (stereo blocks into a preallocated buffer; a
    full ring, a short ring, the underflow flag): no memory growth, and no per-call buffer: a temporary
    of one block (8 KiB here) would show in the peak, as the control case shows."""
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless", block_size=1024)
    try:
        frames = 1024
        out = np.zeros((frames, 2), np.float32)
        block = np.linspace(-0.5, 0.5, frames, dtype=np.float32)
        flags = (_Flags(False), _Flags(True))
        i = [0]

        def one_callback():
            k = i[0] = i[0] + 1
            if k % 7 and e.ring.space() >= frames:   # the producer's side, between callbacks
                e.ring.push(block)
            e._callback(out, frames, None, flags[k % 97 == 0])

        held, peak = _alloc_growth(one_callback, 10_000, rounds=4)
        assert e.callbacks > 40_000 and e.ring_underruns > 0 and e.underflows > 0
        assert held < 512 and peak < 2048, (held, peak)
        # the control: the same loop with one block-sized temporary per call is seen in every round
        _, peak_copy = _alloc_growth(lambda: (one_callback(), out.copy()), 1_000, rounds=4)
        assert peak_copy > frames * 2 * 4, peak_copy
        # and so is a leak of one small object every 20 calls (10,000 calls: 500 objects)
        kept = []
        held_leak, _ = _alloc_growth(lambda: (one_callback(), i[0] % 20 or kept.append(object())), 10_000, rounds=4)
        assert held_leak > 512, held_leak
    finally:
        e.close()


def test_a_running_engine_hands_the_gil_over_quickly_and_restores_it(bundle, samples_dir):
    """The callback must not wait Python's default 5 ms (a whole 256-frame period) for the GIL."""
    import sys
    before = sys.getswitchinterval()
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless", device_rate=48000, duration=0.3)
    e.start()
    try:
        assert sys.getswitchinterval() <= 0.0005 < before
    finally:
        assert e.wait(30)
        e.close()
    assert sys.getswitchinterval() == before


def _fifo_allowed() -> bool:
    """Whether this process may run a thread SCHED_FIFO (root, CAP_SYS_NICE or an rtprio limit)."""
    import os
    import threading

    from sonolatent.engine.runtime import realtime_thread

    got = []
    t = threading.Thread(target=lambda: got.append(realtime_thread(1)))
    t.start()
    t.join()
    return got[0] == 1 and os.sched_getscheduler(0) == os.SCHED_OTHER   # the caller's own thread is untouched


def test_the_producer_runs_first_in_first_out_when_allowed_and_says_so(bundle, samples_dir):
    import os
    import threading

    allowed = _fifo_allowed()
    policies = {}
    for prio in (7, 0):
        e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless", rt_priority=prio)
        e.start()
        producer = next(t for t in threading.enumerate() if t.name == "sonolatent-producer")
        loader = next(t for t in threading.enumerate() if t.name == "sonolatent-loader")
        assert wait_for(lambda: e.core.block > 2)
        policies[prio] = (os.sched_getscheduler(producer.native_id), os.sched_getparam(producer.native_id).sched_priority)
        helper = (os.sched_getscheduler(loader.native_id), os.sched_getparam(loader.native_id).sched_priority)
        granted = e.info()["rt_priority"]
        e.request_quit()
        e.wait(10)
        e.close()
        assert e.status()["rt_priority"] == granted
        if prio and allowed:   # the helpers one below: never preempted while holding the lock it needs
            assert granted == 7 and policies[prio] == (os.SCHED_FIFO, 7) and helper == (os.SCHED_FIFO, 6)
        else:   # off, or not allowed: normal scheduling, reported as 0
            assert granted == 0 and policies[prio][0] == os.SCHED_OTHER and helper[0] == os.SCHED_OTHER
    assert os.sched_getscheduler(0) == os.SCHED_OTHER   # the caller's thread never changes


def test_freewheel_never_asks_for_real_time_priority(bundle, samples_dir):
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="freewheel", duration=0.2, clock=lambda: T0,
               rt_priority=50)
    e.start()
    e.wait(30)
    e.close()
    assert e.info()["rt_priority"] == 0


def test_a_priority_out_of_range_is_refused(bundle, samples_dir):
    from sonolatent.errors import SonolatentError

    with pytest.raises(SonolatentError, match="--rt-priority 100"):
        Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless", rt_priority=100)


def test_buffer_auto_follows_the_frames_render_time(bundle, samples_dir):
    """--buffer-ms auto: the margin covers the slowest recent frame plus 1 ms, 3..40 ms, releasing slowly."""
    from sonolatent.engine import runtime as rt

    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless", device_rate=48000, block_size=256)
    ms = lambda: (e.target - 256) / 48.0   # noqa: E731
    assert e.buffer_auto and e.info()["buffer_auto"] == 1
    assert ms() == pytest.approx(rt.AUTO_START_MS, abs=32 / 48)
    e._follow_render_time(0.005)                   # eight voices' frame: 5 ms -> 6 ms of margin
    assert 6.0 <= ms() < 6.0 + 32 / 48 and (e.target - 256) % 32 == 0
    for _ in range(rt.AUTO_RELEASE):              # fast frames: the peak halves in AUTO_RELEASE frames
        e._follow_render_time(0.0005)
    assert 3.5 <= ms() < 3.5 + 32 / 48
    for _ in range(10 * rt.AUTO_RELEASE):
        e._follow_render_time(0.0005)
    assert ms() == pytest.approx(rt.AUTO_MIN_MS, abs=32 / 48)   # never below the floor
    e._follow_render_time(0.5)                     # a stall: capped, and the ring has room for it
    assert ms() == pytest.approx(rt.AUTO_MAX_MS, abs=32 / 48)
    assert e.ring.capacity >= e.target + 2 * 557 + 256
    e.close()


def test_a_fixed_buffer_never_moves(bundle, samples_dir):
    e = Engine(StreamingSynth(bundle), samples_dir=samples_dir, mode="headless", device_rate=48000, block_size=256,
               safety_ms=6.0)
    assert not e.buffer_auto and e.target == 256 + 288
    e.start()
    assert wait_for(lambda: e.core.block > 5)
    e.request_quit()
    e.wait(10)
    e.close()
    assert e.target == 256 + 288 and e.info()["buffer_auto"] == 0
