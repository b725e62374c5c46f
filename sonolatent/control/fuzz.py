"""A deterministic corpus of hostile OSC packets (for the tests and ``benchmarks/hostile.py``).

:func:`hostile_packets` yields ``n`` datagrams from a seed: valid messages and
bundles of the daemon's and the bridge's addresses, and mutations of them
(bit flips, overwritten bytes, truncations, extensions, random bundle element
sizes, deep nesting, many elements, NULs and control characters in names)
plus the reproducers of issue 16. The same seed gives the same packets.
"""

from __future__ import annotations

import random
import struct
import time
from typing import Iterator

from ..params.namespace import build_namespace
from .wire import BUNDLE_TAG, encode, encode_bundle

# reproducers from issue 16 (hex UDP payloads)
NEGATIVE_ELEMENT_BUNDLE = bytes.fromhex("2362756e646c65000000000000000001fffffffc")
TRUNCATED_FLOAT_GAIN = bytes.fromhex("2f736f6e6f2f6761696e00002c660000")
QUERY_BOMB = BUNDLE_TAG + struct.pack(">Q", 1) + bytes.fromhex("0000000c2f736f6e6f2f2a2f2a000000") * 4000
NUL_IN_NAME = b"/sono/slot/0/load\0\0\0,s\0\0piano_c4\0/../..\0\0\0\0"[:40]


def pattern_change_bomb(copies: int = 2031) -> bytes:
    """``copies`` × ``/sono/latent/[0-9]* f 0.1`` in one bundle."""
    m = encode("/sono/latent/[0-9]*", (0.1,), "f")
    return encode_bundle([m] * copies)


def _args(rng: random.Random, n: int) -> tuple[tuple, str]:
    vals, types = [], []
    for _ in range(n):
        t = rng.choice("iffffdsTFN")
        types.append(t)
        if t == "i":
            vals.append(rng.randint(-5, 200))
        elif t in "fd":
            vals.append(rng.choice([rng.uniform(-2, 2), rng.uniform(-1e6, 1e6), 0.0, 1.0]))
        elif t == "s":
            vals.append(rng.choice(["sine", "kick_01", "a", "x" * 70, "..", "piano_c4", "/sono/gain"]))
        else:
            vals.append({"T": True, "F": False, "N": None}[t])
    return tuple(vals), "".join(types)


def valid_messages(rng: random.Random, addresses: list[str]) -> Iterator[bytes]:
    while True:
        a = rng.choice(addresses)
        n = rng.choice([0, 1, 1, 1, 1, 2, 3])
        vals, types = _args(rng, n)
        yield encode(a, vals, types)


def _mutate(rng: random.Random, p: bytes) -> bytes:
    b = bytearray(p)
    k = rng.randrange(8)
    if k == 0 and b:                                   # bit flips
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif k == 1 and b:                                 # overwritten bytes (NULs, control characters, 0xff)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.choice([0, 1, 0x1F, 0x7F, 0xFF, 0x2C, 0x2F, rng.randrange(256)])
    elif k == 2 and len(b) > 1:                        # truncation
        del b[rng.randrange(1, len(b)):]
    elif k == 3:                                       # extension
        b += rng.randbytes(rng.choice([1, 2, 3, 4, 8, 13]))
    elif k == 4 and len(b) >= 8:                       # a 32-bit field set to something hostile
        i = rng.randrange(0, len(b) - 3) & ~3
        b[i:i + 4] = struct.pack(">i", rng.choice([-4, -1, 0, 3, 2**31 - 1, -2**31, len(b), len(b) + 4]))
    elif k == 5:                                       # random bytes after a valid prefix
        cut = rng.randrange(len(b) + 1)
        b = b[:cut] + bytearray(rng.randbytes(rng.randint(0, 40)))
    elif k == 6:                                       # wrapped in a bundle with a lying size
        body = bytes(b)
        b = bytearray(BUNDLE_TAG + struct.pack(">Q", 1) + struct.pack(">i", len(body) + rng.choice([-8, -4, 4, 8, -len(body) - 4]))
                      + body)
    else:                                              # type tag string replaced
        b = bytearray(encode("/sono/gain", ()) [:12] + bytes(b",") + rng.randbytes(rng.randint(0, 7)) + b"\0" * 4
                      + rng.randbytes(rng.choice([0, 4, 8])))
    return bytes(b)


def hostile_packets(seed: int, n: int, addresses: list[str] | None = None) -> Iterator[bytes]:
    """``n`` datagrams, deterministic in ``seed`` (see the module docstring)."""
    rng = random.Random(seed)
    if addresses is None:
        ns = build_namespace(latent_dim=16)
        addresses = [a for a in ns if a not in ("/sono/quit", "/sono/patch/save", "/sono/patch/load")]
        addresses += ["/sono/latent/?", "/sono/xy/{x,y}", "/sono/latent/[0-9]/scale", "/sono/gain/norm",
                      "/sono/midi/learn", "/sono/midi/ping", "/sono/midi/learn/cancel", "/sono/nothing"]
    valid = valid_messages(rng, addresses)
    specials = [NEGATIVE_ELEMENT_BUNDLE, TRUNCATED_FLOAT_GAIN, NUL_IN_NAME, QUERY_BOMB, pattern_change_bomb(600),
                b"", b"#bundle\0", b"#bundle\0" + b"\0" * 7, b"/", b"/\0\0\0", b"/sono\0\0\0,\0\0\0"]
    past = time.time() - 10.0
    for i in range(n):
        k = rng.randrange(1000)
        if k < 200:
            yield next(valid)
        elif k < 270:                                  # a valid bundle, sometimes nested, sometimes late
            parts = [next(valid) for _ in range(rng.randint(1, 4))]
            if rng.random() < 0.3:
                parts.append(encode_bundle([next(valid) for _ in range(rng.randint(1, 2))]))
            yield encode_bundle(parts, rng.choice([None, past]))
        elif k < 290:                                  # nesting, deep or too deep
            p = next(valid)
            for _ in range(rng.randint(1, 12)):
                p = encode_bundle([p])
            yield p
        elif k < 291:                                  # many elements
            yield encode_bundle([encode("/sono/ping", ())] * rng.choice([100, 512, 513, 2000]))
        elif k < 293:
            yield specials[i % len(specials)]
        elif k < 340:
            yield rng.randbytes(rng.randint(0, 96))
        else:
            p = next(valid)
            if rng.random() < 0.25:
                p = encode_bundle([p, next(valid)])
            yield _mutate(rng, p)
