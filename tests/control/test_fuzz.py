"""Blast 100,000+ malformed packets at a real daemon process; it must keep serving, quietly.

The server runs as ``python -m sonolatent.control`` (its own process, like the
daemon), so its stderr can be checked for tracebacks. UDP may drop some of the
blast: assertions use what the server says it received (/sono/status).
"""

import math
import os
import random
import struct
import subprocess
import sys
import time

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder

from sonolatent.params.namespace import build_namespace
from sonolatent.control.server import encode

from .conftest import Client

N_PACKETS = 100_000      # malformed packets the server must have received
ROUND = 10_000


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def _bundle(timetag, *dgrams) -> bytes:
    out = b"#bundle\0" + (struct.pack(">Q", 1) if timetag is None else timetag)
    for d in dgrams:
        out += struct.pack(">i", len(d)) + d
    return out


def malformed_packets(rng: random.Random) -> list[bytes]:
    """A few thousand distinct bad packets of every kind (cycled to N_PACKETS by the sender)."""
    ns = [a for a in build_namespace() if a != "/sono/quit"]   # a real quit would end the run
    valid = [encode(a, (rng.uniform(-10, 10),)) for a in ns[:40]] + [encode("/sono/latent", (0.5,) * 16)]
    out: list[bytes] = []
    for _ in range(600):
        out.append(rng.randbytes(rng.randint(1, 200)))                               # random bytes
        out.append(b"/" + rng.randbytes(rng.randint(0, 120)))                          # random after a slash
        v = rng.choice(valid)
        out.append(v[: rng.randint(1, len(v) - 1)])                                    # truncated valid packet
        flipped = bytearray(v)
        for _ in range(rng.randint(1, 4)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        out.append(bytes(flipped))                                                     # bit flips
        out.append(_pad(b"/sono/" + bytes([rng.randint(0x80, 0xFF)]) + b"\xfe") + _pad(b",f") + struct.pack(">f", 0.5))  # non-UTF-8 address
        out.append(_pad(b"/sono/gain") + _pad(b"," + bytes(rng.choice(b"xyzSIcQ") for _ in range(rng.randint(1, 5)))) + rng.randbytes(8))  # unknown tags
        out.append(_pad(b"/sono/gain") + _pad(b"ff") + struct.pack(">ff", 1, 2))     # tag without comma
        out.append(_pad(b"/sono/gain") + _pad(b",ffff"))                               # tags without data
        out.append(_pad(b"/sono/gain") + _pad(b",s") + b"\xff\xfe\xfd\0")              # non-UTF-8 string argument
        out.append(_pad(b"/sono/gain") + _pad(b",[[[" ))                              # unclosed arrays
        out.append(encode("/sono/gain", (rng.choice([math.nan, math.inf, -math.inf]),), "f"))  # NaN / inf
        out.append(encode("/sono/latent", (math.nan,) * 16, "d" * 16))
        out.append(encode(rng.choice(ns), (rng.uniform(-1e30, 1e30),) * rng.randint(0, 3)))  # out of range, wrong arity
        out.append(encode(f"/sono/{rng.randbytes(6).hex()}", (1.0,)))                  # unknown address
        out.append(encode("/sono/slot/0/load", (rng.choice(["../x", "a/b", "", "x" * 80, "..", "ok"]),)))
        out.append(_bundle(rng.randbytes(8), rng.randbytes(rng.randint(0, 40))))      # bundle with garbage content
        out.append(b"#bundle\0" + struct.pack(">Q", 1) + struct.pack(">i", rng.randint(-2**31, 2**31 - 1)) + rng.randbytes(20))  # bad size
        out.append(b"#bundle\0" + rng.randbytes(rng.randint(0, 7)))                    # truncated timetag
    huge = _pad(b"/sono/latent") + _pad(b",[" + b"f" * 4000 + b"]") + b"\0\0\0\0" * 4000
    deep = encode("/sono/gain", (0.5,))
    for _ in range(40):
        deep = _bundle(None, deep)
    out += [huge, deep, _bundle(struct.pack(">Q", 2**64 - 1), encode("/sono/gain", (0.1,)))]  # huge array, deep nesting, far future
    return out


def status(c: Client, deadline: float) -> dict:
    """/sono/status, asked again while the server's queue is full enough to drop the question."""
    while True:
        c.drain(0.01)
        c.send("/sono/status")
        try:
            while True:
                addr, vals = c.recv(timeout=1.0)
                if addr == "/sono/status":
                    return dict(zip(vals[::2], vals[1::2]))
        except TimeoutError:
            assert time.monotonic() < deadline, "the server stopped answering /sono/status"


def test_fuzz_blast_then_still_serving():
    proc = subprocess.Popen([sys.executable, "-m", "sonolatent.control", "--port", "0", "--oscquery-port", "-1",
                             "--osc-rate", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "default"})
    try:
        line = proc.stdout.readline()
        assert "OSC on udp 127.0.0.1:" in line, line + proc.stderr.read()
        port = int(line.split("udp 127.0.0.1:")[1].split()[0].rstrip(","))
        probe = Client(("127.0.0.1", port))
        assert probe.ask("/sono/ping") == ("/sono/pong", [])

        packets = malformed_packets(random.Random(1234))
        blaster = Client(("127.0.0.1", port))
        blaster.sock.setblocking(False)
        sent, rounds = 0, 0
        t0 = time.monotonic()
        deadline = t0 + 60
        st = status(probe, deadline)
        # rounds of ROUND packets sent as fast as the socket takes them, each followed by a wait until the
        # server has worked through its queue, until the server itself has seen N_PACKETS of them
        while st["osc_received"] < N_PACKETS:
            for k in range(ROUND):
                try:
                    blaster.sock.sendto(packets[(sent + k) % len(packets)], blaster.server)
                except BlockingIOError:
                    time.sleep(0.0005)
            sent += ROUND
            rounds += 1
            last, st = -10, status(probe, deadline)
            while st["osc_received"] > last + 1:      # +1: the /sono/status question itself
                assert time.monotonic() < deadline, "the server never caught up"
                last = st["osc_received"]
                time.sleep(0.1)
                st = status(probe, deadline)
        blast_s = time.monotonic() - t0

        assert probe.ask("/sono/ping") == ("/sono/pong", [])
        probe.send("/sono/gain", 1.25)
        assert probe.ask("/sono/gain") == ("/sono/gain", [1.25])
        st = status(probe, time.monotonic() + 5)
        got = st["osc_received"]
        drops = sum(st[f"osc_dropped_{k}"] for k in ("not_allowed", "size", "rate", "malformed", "limits"))
        assert got == st["osc_parsed"] + drops                                    # every packet accounted for once
        assert st["osc_messages"] == st["osc_applied"] + st["osc_answered"] + st["osc_errors"] + st["osc_limited"]
        assert N_PACKETS <= got <= sent + 2 * rounds + 20
        assert st["osc_dropped_malformed"] > got // 10 and st["osc_errors"] > got // 10
        assert st["osc_dropped_not_allowed"] == st["osc_dropped_rate"] == st["osc_dropped_size"] == 0
        print(f"sent {sent} in {rounds} rounds, {blast_s:.1f} s; server received {got}: {st}")

        probe.send("/sono/quit")
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert "Traceback" not in err, err[:2000]
    assert len(err.splitlines()) <= 30, err[:2000]
