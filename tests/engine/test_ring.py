"""SPSCRing: order, wrap-around, zero fill on underrun, and a real two-thread stress run."""

import threading
import time

import numpy as np

from sonolatent.engine.ring import SPSCRing


def test_capacity_is_power_of_two_and_wraps_in_order():
    r = SPSCRing(100)
    assert r.capacity == 128
    out = np.zeros((50, 2), np.float32)
    seq = np.arange(10_000, dtype=np.float32)
    got, i = [], 0
    while i < len(seq) or r.fill():
        i += r.push(seq[i:i + 37])
        if r.fill() >= 50 or i >= len(seq):
            n = min(50, r.fill())
            missing = r.pop_into(out[:n])
            assert missing == 0
            assert np.array_equal(out[:n, 0], out[:n, 1])  # one column broadcast to every channel
            got.append(out[:n, 0].copy())
    assert np.array_equal(np.concatenate(got), seq)


def test_push_never_overwrites_unread_samples():
    r = SPSCRing(16)
    assert r.push(np.ones(20, np.float32)) == 16
    assert r.push(np.ones(5, np.float32)) == 0
    assert r.space() == 0


def test_underrun_zero_fills_and_reports_missing():
    r = SPSCRing(64)
    r.push(np.full(10, 0.5, np.float32))
    out = np.full((16, 1), 9.0, np.float32)
    assert r.pop_into(out) == 6
    assert np.all(out[:10] == 0.5) and np.all(out[10:] == 0.0)
    assert r.pop_into(out) == 16 and np.all(out == 0.0)
    assert r.read == r.write == 10


def test_two_threads_deliver_every_sample_once_in_order():
    r = SPSCRing(256)
    total = 200_000
    seq = np.arange(total, dtype=np.float32) % 65536
    got = []
    rng = np.random.default_rng(0)

    def produce():
        i = 0
        sizes = rng.integers(1, 200, 10_000)
        k = 0
        while i < total:
            i += r.push(seq[i:i + sizes[k % len(sizes)]])
            k += 1
            if k % 7 == 0:
                time.sleep(0)

    def consume():
        n = 0
        out = np.zeros((64, 1), np.float32)
        while n < total:
            m = min(64, total - n)
            missing = r.pop_into(out[:m])
            got.append(out[:m - missing, 0].copy())
            n += m - missing
            if missing:
                time.sleep(0)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert np.array_equal(np.concatenate(got), seq)
