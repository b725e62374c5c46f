"""The one OSC 1.0 parser and encoder of the package (daemon, bridge, tests and benchmarks use it).

Strict where python-osc is lenient, because the daemon and the bridge both
take packets from anyone who can reach a UDP port:

- every length is checked before it is read: a truncated number, string or
  blob is an error (python-osc pads a truncated float with zeros);
- padding must be NUL bytes and a message must end exactly after its last
  argument (``piano_c4\\0/../..`` is not the string ``piano_c4``);
- addresses are printable ASCII (``!``..``~``) starting with ``/``; strings
  are UTF-8 without control characters (a NUL or a control character
  anywhere is an error);
- bundle elements must have a positive size, a multiple of 4, that fits
  (a negative size loops python-osc 1.10 forever); nesting is capped at
  :data:`MAX_BUNDLE_DEPTH`, the messages of one packet at
  :data:`MAX_BUNDLE_MESSAGES`, arguments of one message at :data:`MAX_ARGS`.

Every problem raises :class:`WireError` (a ``ValueError``) with a short
reason; callers count it and drop the packet, never log it per packet.

Type tags decoded: ``i h f d s S b T F N I t c m r [ ]`` (to ``int``,
``float``, ``str``, ``bytes``, ``True``/``False``/``None``, ``float('inf')``
for ``I``, seconds for ``t``, one-character ``str`` for ``c``, 4-tuples for
``m``, ``int`` for ``r``, nested lists for arrays). Whether a value type is
*accepted* for a parameter is the dispatcher's business, not the parser's.
"""

from __future__ import annotations

import math
import re
import struct

BUNDLE_TAG = b"#bundle\0"
MAX_BUNDLE_DEPTH = 8          # bundles inside bundles
MAX_BUNDLE_MESSAGES = 512     # messages in one packet, nested bundles included
MAX_ARGS = 1024               # arguments of one message (array contents included)
MAX_ARRAY_DEPTH = 4
NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
IMMEDIATELY = 1               # the timetag that means "now"

_I = struct.Struct(">i")
_Q = struct.Struct(">q")
_F = struct.Struct(">f")
_D = struct.Struct(">d")
_U = struct.Struct(">Q")
_FIXED = {"i": 4, "f": 4, "c": 4, "r": 4, "m": 4, "h": 8, "d": 8, "t": 8}
_NO_DATA = {"T": True, "F": False, "N": None, "I": math.inf}
_ADDRESS_CHARS = bytes(range(0x21, 0x7F))
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class WireError(ValueError):
    """A malformed OSC packet (the message says what is wrong, in a few words)."""


class WireLimitError(WireError):
    """A well-formed packet over a cap (nesting depth, messages per packet, arguments per message)."""


class Message:
    """One parsed OSC message: ``address`` (str), ``params`` (list), ``types`` (the type tags, no comma)."""

    __slots__ = ("address", "params", "types")

    def __init__(self, address: str, params: list, types: str):
        self.address, self.params, self.types = address, params, types

    def __repr__(self) -> str:
        return f"Message({self.address!r}, {self.params!r}, {self.types!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Message) and (self.address, self.params, self.types) == \
            (other.address, other.params, other.types)


# -- reading -----------------------------------------------------------------

def _check_address(raw: bytes) -> str:
    if not raw or raw[0] != 0x2F:
        raise WireError("address does not start with '/'")
    if raw.translate(None, _ADDRESS_CHARS):
        raise WireError("address has a control, space or non-ASCII character")
    return raw.decode("ascii")


def _string(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """The NUL-terminated, NUL-padded string at ``pos``; returns (raw bytes, position after the padding)."""
    nul = data.find(b"\0", pos, end)
    if nul < 0:
        raise WireError("string without a terminating NUL")
    stop = (nul // 4 + 1) * 4  # positions are multiples of 4 from the message start (0)
    if stop > end:
        raise WireError("string padding runs past the end")
    if data.count(b"\0", nul, stop) != stop - nul:
        raise WireError("string padding is not NUL bytes")
    return data[pos:nul], stop


def _text(raw: bytes) -> str:
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("string is not UTF-8") from None
    if _CONTROL.search(s):
        raise WireError("string has a control character")
    return s


def parse_message(data: bytes) -> Message:
    """One message datagram (or bundle element) -> :class:`Message`; :class:`WireError` if malformed."""
    n = len(data)
    if n % 4:
        raise WireError("message size is not a multiple of 4")
    raw, pos = _string(data, 0, n)
    address = _check_address(raw)
    if pos == n:
        return Message(address, [], "")    # no type tag string: no arguments (OSC 1.0 allows it)
    if data[pos] != 0x2C:
        raise WireError("type tag string does not start with ','")
    raw, pos = _string(data, pos, n)
    try:
        tags = raw[1:].decode("ascii")
    except UnicodeDecodeError:
        raise WireError("type tag string is not ASCII") from None
    if len(tags) > MAX_ARGS:
        raise WireLimitError(f"more than {MAX_ARGS} arguments")
    top: list = []
    stack = [top]
    for t in tags:
        out = stack[-1]
        size = _FIXED.get(t)
        if size is not None:
            if pos + size > n:
                raise WireError(f"truncated '{t}' argument")
            if t == "i":
                out.append(_I.unpack_from(data, pos)[0])
            elif t == "f":
                out.append(_F.unpack_from(data, pos)[0])
            elif t == "h":
                out.append(_Q.unpack_from(data, pos)[0])
            elif t == "d":
                out.append(_D.unpack_from(data, pos)[0])
            elif t == "t":
                out.append(timetag_to_time(_U.unpack_from(data, pos)[0]))
            elif t == "c":
                code = _I.unpack_from(data, pos)[0]
                if not 0x20 <= code < 0x110000 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000:
                    raise WireError("char argument is not a printable character")
                out.append(chr(code))
            elif t == "r":
                out.append(_I.unpack_from(data, pos)[0] & 0xFFFFFFFF)
            else:  # m: MIDI port id, status, data1, data2
                out.append(tuple(data[pos:pos + 4]))
            pos += size
        elif t in "sS":
            raw, pos = _string(data, pos, n)
            out.append(_text(raw))
        elif t == "b":
            if pos + 4 > n:
                raise WireError("truncated blob size")
            size = _I.unpack_from(data, pos)[0]
            pos += 4
            stop = pos + size + (-size % 4)
            if size < 0 or stop > n:
                raise WireError("blob size does not fit the packet")
            if data.count(b"\0", pos + size, stop) != stop - pos - size:
                raise WireError("blob padding is not NUL bytes")
            out.append(bytes(data[pos:pos + size]))
            pos = stop
        elif t in _NO_DATA:
            out.append(_NO_DATA[t])
        elif t == "[":
            if len(stack) > MAX_ARRAY_DEPTH:
                raise WireLimitError("arrays nested too deep")
            inner: list = []
            out.append(inner)
            stack.append(inner)
        elif t == "]":
            if len(stack) == 1:
                raise WireError("']' without '['")
            stack.pop()
        else:
            raise WireError(f"unknown type tag {t!r}")
    if len(stack) != 1:
        raise WireError("'[' without ']'")
    if pos != n:
        raise WireError("bytes left over after the last argument")
    return Message(address, top, tags)


def timetag_to_time(tt: int) -> float:
    """An OSC (NTP) timetag -> ``time.time()`` seconds; 0.0 for 'immediately' (1) and 0."""
    if tt <= IMMEDIATELY:
        return 0.0
    return (tt >> 32) - NTP_UNIX_OFFSET + (tt & 0xFFFFFFFF) / 4294967296.0


def time_to_timetag(t: float | None) -> int:
    """``time.time()`` seconds -> OSC timetag; ``None`` or 0 -> immediately."""
    if not t:
        return IMMEDIATELY
    sec = int(math.floor(t))
    return ((sec + NTP_UNIX_OFFSET) << 32) | int((t - sec) * 4294967296.0)


def _walk(data: bytes, depth: int, out: list, max_messages: int) -> float:
    if depth > MAX_BUNDLE_DEPTH:
        raise WireLimitError(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    n = len(data)
    if n < 16 or n % 4:
        raise WireError("truncated bundle header")
    latest = timetag_to_time(_U.unpack_from(data, 8)[0])
    pos = 16
    while pos < n:
        if n - pos < 4:
            raise WireError("truncated bundle element size")
        size = _I.unpack_from(data, pos)[0]
        pos += 4
        if size <= 0 or size % 4 or pos + size > n:
            raise WireError("bad bundle element size")
        element = data[pos:pos + size]
        pos += size
        if element.startswith(BUNDLE_TAG):
            latest = max(latest, _walk(element, depth + 1, out, max_messages))
        else:
            if len(out) >= max_messages:
                raise WireLimitError(f"more than {max_messages} messages in one packet")
            out.append(parse_message(element))
    return latest


def parse_packet(data: bytes, max_messages: int = MAX_BUNDLE_MESSAGES) -> tuple[list[Message], float]:
    """``(messages, timetag)`` of a datagram; timetag 0.0 for a plain message or an immediate bundle.

    A bundle's timetag is the latest of it and its nested bundles (``time.time()`` seconds).
    Raises :class:`WireError` on anything malformed.
    """
    data = bytes(data)
    if data.startswith(BUNDLE_TAG):
        msgs: list = []
        return msgs, _walk(data, 0, msgs, max_messages)
    if data[:1] == b"/":
        return [parse_message(data)], 0.0
    raise WireError("not an OSC message or bundle")


# -- writing -----------------------------------------------------------------

def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def infer_types(values) -> str:
    """Type tags for plain Python values: bool T/F, int i (h beyond 32 bits), float f, str s, bytes b, None N."""
    out = []
    for v in values:
        if isinstance(v, bool):
            out.append("T" if v else "F")
        elif isinstance(v, int):
            out.append("i" if -2**31 <= v < 2**31 else "h")
        elif isinstance(v, float):
            out.append("f")
        elif v is None:
            out.append("N")
        elif isinstance(v, (bytes, bytearray)):
            out.append("b")
        elif isinstance(v, str):
            out.append("s")
        else:
            raise TypeError(f"cannot send {type(v).__name__} over OSC")
    return "".join(out)


def encode(address: str, values=(), types: str | None = None) -> bytes:
    """One OSC message datagram. ``types`` fixes the tags (``i h f d s T F N b``); else they are inferred.

    Numeric values are converted to the tag's type (``int`` for i/h, ``float`` for f/d); strings are
    checked like the parser checks them (no control characters), so what this writes parses back.
    """
    values = tuple(values)
    if types is None or len(types) != len(values):
        types = infer_types(values)
    addr = address.encode("ascii")
    _check_address(addr)
    out = [_pad(addr), _pad(b"," + types.encode("ascii"))]
    for v, t in zip(values, types):
        if t == "i":
            out.append(_I.pack(int(v)))
        elif t == "h":
            out.append(_Q.pack(int(v)))
        elif t == "f":
            out.append(_F.pack(float(v)))   # OverflowError beyond float32's range
        elif t == "d":
            out.append(_D.pack(float(v)))
        elif t in "sS":
            s = str(v)
            raw = s.encode("utf-8")
            _text(raw)
            out.append(_pad(raw))
        elif t == "b":
            raw = bytes(v)
            out.append(_I.pack(len(raw)) + raw + b"\0" * (-len(raw) % 4))
        elif t in "TFNI":
            continue
        else:
            raise TypeError(f"cannot encode OSC type tag {t!r}")
    return b"".join(out)


def encode_bundle(elements, timetag: float | None = None) -> bytes:
    """A bundle of already encoded messages or bundles, at ``timetag`` (``time.time()`` seconds; None: now)."""
    out = [BUNDLE_TAG, _U.pack(time_to_timetag(timetag))]
    for e in elements:
        out.append(_I.pack(len(e)))
        out.append(bytes(e))
    return b"".join(out)
