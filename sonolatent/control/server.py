"""The OSC/UDP control server: receive, check, convert, hand over, answer.

One thread receives datagrams on a plain UDP socket (raised ``SO_RCVBUF``,
0.1 s timeout so :meth:`OscServer.stop` is prompt). For each datagram, in
this order:

1. the sender's address is checked against the allowlist (default: loopback
   only) -> ``dropped_not_allowed``;
2. its size against ``max_packet`` -> ``dropped_size``;
3. the sender's token bucket (``rate`` messages/s) -> ``dropped_rate``;
4. it is parsed (bundle framing checked here, messages by python-osc's
   ``OscMessage``) inside a catch-all -> ``dropped_malformed`` (never a traceback; at most one log line
   per 5 s);
5. every message is then answered (queries, info, status, ping, subscribe),
   refused (``/sono/error address reason``, ``errors``) or converted; the
   changes of one packet (all messages of a bundle, nested ones too) go to
   ``target.submit`` together (``applied`` counts those messages).

Bundle timetags: immediate (1) or past -> ``at=None``; future -> ``at`` (a
``time.time()`` value, the latest timetag of the bundle and its nested
bundles), never slept on; further ahead than ``max_future`` -> refused.

Replies leave from the receiving socket, so they reach the sender's port.
A second thread pushes value changes to subscribers (``/sono/subscribe``).
"""

from __future__ import annotations

import ipaddress
import logging
import numbers
import os
import selectors
import socket
import struct
import threading
import time

from pythonosc import osc_message
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

from ..errors import ConfigError
from .convert import OscValueError, convert, is_pattern, match, to_norm
from .target import ControlTarget, Sender

log = logging.getLogger("sonolatent.control")

DEFAULT_PORT = 9000
DEFAULT_MAX_PACKET = 65536
DEFAULT_RATE = 5000.0
DEFAULT_MAX_FUTURE = 4.0
DEFAULT_RCVBUF = 4 << 20
MAX_SUBSCRIBERS = 8
LOOPBACK = ("127.0.0.0/8", "::1/128")
MAX_BUNDLE_DEPTH = 16
_BUNDLE = b"#bundle\0"
# type tags python-osc decodes; anything else it skips with a warning, shifting the arguments
_KNOWN_TAGS = frozenset("ihfdsbrmtTFN[]")
_SERVER_ADDRESSES = frozenset({"/sono/ping", "/sono/info", "/sono/status", "/sono/subscribe", "/sono/unsubscribe"})

COUNTERS = ("received", "parsed", "dropped_not_allowed", "dropped_size", "dropped_rate", "dropped_malformed",
            "messages", "applied", "answered", "errors", "submits", "replies", "reply_failed", "late_errors")


class _PythonOscLogFilter(logging.Filter):
    """Silences python-osc's own ``logging.warning`` calls (unknown type tags...): one per bad packet otherwise."""

    _pkg = os.path.dirname(osc_message.__file__)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.startswith(self._pkg)


_FILTER = _PythonOscLogFilter()


def quiet_python_osc() -> None:
    """Install the filter on the root logger (python-osc logs through it). Idempotent."""
    root = logging.getLogger()
    if _FILTER not in root.filters:
        root.addFilter(_FILTER)


class Throttle:
    """At most one log line per ``interval`` seconds per kind, counting what it held back."""

    def __init__(self, interval: float = 5.0):
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, kind: str, msg: str) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) >= self.interval:
            held = self._held.pop(kind, 0)
            self._last[kind] = now
            log.warning("%s%s", msg, f" (+{held} similar in the last {self.interval:g} s)" if held else "")
        else:
            self._held[kind] = self._held.get(kind, 0) + 1


def parse_allow(allow) -> list:
    """CIDR strings (or single addresses) -> ip_network list; ``None`` or empty -> loopback only."""
    nets = []
    for a in (allow or LOOPBACK):
        try:
            nets.append(ipaddress.ip_network(str(a).strip(), strict=False))
        except ValueError:
            raise ConfigError(f"--allow: {a!r} is not an IP address or CIDR network (e.g. 192.168.1.0/24)") from None
    return nets


class AllowList:
    def __init__(self, allow=None):
        self.loopback_only = not allow
        self.networks = parse_allow(allow)
        self._cache: dict[str, bool] = {}

    def __call__(self, host: str) -> bool:
        ok = self._cache.get(host)
        if ok is None:
            try:
                ip = ipaddress.ip_address(host.split("%", 1)[0])
                if getattr(ip, "ipv4_mapped", None):
                    ip = ip.ipv4_mapped
                ok = any(ip in n for n in self.networks if n.version == ip.version)
            except ValueError:
                ok = False
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[host] = ok
        return ok


class RateLimiter:
    """Token bucket per sender host: ``rate`` tokens/s, up to ``burst``. ``rate <= 0``: unlimited."""

    def __init__(self, rate: float = DEFAULT_RATE, burst: float | None = None):
        self.rate = float(rate)
        self.burst = float(burst) if burst else max(self.rate, 1.0)
        self._b: dict[str, list] = {}

    def take(self, host: str, n: float = 1.0) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        b = self._b.get(host)
        if b is None:
            if len(self._b) > 4096:
                self._b.clear()
            b = self._b[host] = [self.burst, now]
        tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        if tokens >= n:
            b[0] = tokens - n
            return True
        b[0] = tokens
        return False


def _type_tag(dgram: bytes) -> str:
    """The type tag string of a message datagram ("" when absent)."""
    end = dgram.find(b"\0")
    start = (end // 4 + 1) * 4
    if start >= len(dgram) or dgram[start:start + 1] != b",":
        return ""
    stop = dgram.find(b"\0", start)
    return dgram[start + 1:stop if stop >= 0 else len(dgram)].decode("ascii", "replace")


def _walk_bundle(data: bytes, depth: int, out: list) -> float:
    """Append the messages of a bundle datagram (nested ones too) to ``out``; return its latest timetag (0 = immediate).

    Walked here rather than by python-osc's ``OscBundle``, which loops forever
    on a negative element size (python-osc 1.10). Element sizes must be
    positive multiples of 4 that fit the datagram.
    """
    if depth > MAX_BUNDLE_DEPTH:
        raise ValueError("bundles nested too deep")
    timetag, index = osc_types.get_date(data, len(_BUNDLE))
    latest = float(timetag or 0.0)
    n = len(data)
    while index < n:
        if n - index < 4:
            raise ValueError("truncated bundle element size")
        (size,) = struct.unpack_from(">i", data, index)
        index += 4
        if size <= 0 or size % 4 or index + size > n:
            raise ValueError("bad bundle element size")
        element = data[index:index + size]
        index += size
        if element.startswith(_BUNDLE):
            latest = max(latest, _walk_bundle(element, depth + 1, out))
        elif element[:1] == b"/":
            out.append(osc_message.OscMessage(element))
        else:
            raise ValueError("bundle element is neither a message nor a bundle")
    return latest


def parse_packet(data: bytes) -> tuple[list, float]:
    """``(messages, timetag)`` of a datagram; timetag 0 for a plain message or an immediate bundle.

    Raises anything on a malformed datagram (the caller catches everything).
    """
    if data.startswith(_BUNDLE):
        msgs: list = []
        return msgs, _walk_bundle(data, 0, msgs)
    if data[:1] == b"/":
        return [osc_message.OscMessage(data)], 0.0
    raise ValueError("not an OSC message or bundle")


def _infer_types(values) -> str:
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
        else:
            out.append("s")
    return "".join(out)


def encode(address: str, values=(), types: str | None = None) -> bytes:
    """One OSC message datagram (``types`` from the parameter, or inferred: int->i/h, float->f, str->s)."""
    values = tuple(values)
    types = types if types is not None and len(types) == len(values) else _infer_types(values)
    b = OscMessageBuilder(address)
    for v, t in zip(values, types):
        if t in "TFN":
            b.add_arg(v)
        else:
            b.add_arg(str(v) if t == "s" else (int(v) if t in "ih" else float(v)), t)
    return b.build().dgram


def _flat(d: dict) -> tuple:
    """A dict as key, value pairs for an OSC reply (numpy scalars become ints/floats; None and others are left out)."""
    out = []
    for k, v in d.items():
        if isinstance(v, (bool, str)):
            out += [str(k), v]
        elif isinstance(v, numbers.Integral):
            out += [str(k), int(v)]
        elif isinstance(v, numbers.Real):
            out += [str(k), float(v)]
    return tuple(out)


class OscServer:
    """UDP OSC server driving a :class:`ControlTarget`. Also the :class:`Replier` the target is given."""

    def __init__(self, target: ControlTarget, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 allow=None, max_packet: int = DEFAULT_MAX_PACKET, rate: float = DEFAULT_RATE,
                 burst: float | None = None, max_future: float = DEFAULT_MAX_FUTURE,
                 rcvbuf: int = DEFAULT_RCVBUF, max_subscribers: int = MAX_SUBSCRIBERS,
                 push_interval: float = 0.05, log_interval: float = 5.0):
        if max_packet < 16:
            raise ConfigError(f"--max-packet: {max_packet} is too small (at least 16 bytes)")
        if max_future < 0:
            raise ConfigError(f"--max-future: {max_future} must be >= 0 seconds")
        self.target = target
        self.namespace = target.namespace
        self.host, self._want_port = host, int(port)
        self.allow = AllowList(allow)
        self.max_packet = int(max_packet)
        self.limiter = RateLimiter(rate, burst)
        self.max_future = float(max_future)
        self.rcvbuf = int(rcvbuf)
        self.max_subscribers = int(max_subscribers)
        self.push_interval = float(push_interval)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.throttle = Throttle(log_interval)
        self._subs: dict = {}          # sender -> [expiry (monotonic), fresh]
        self._subs_lock = threading.Lock()
        self._streams: dict = {}       # sender -> deliver(bytes): clients on a stream (the OSCQuery WebSocket)
        self._readable = [a for a, p in self.namespace.items() if not p.action and p.access & 1]
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.actual_rcvbuf = 0

    # -- lifecycle ----------------------------------------------------------
    @property
    def port(self) -> int:
        return self._sock.getsockname()[1] if self._sock else self._want_port

    @property
    def address(self) -> tuple[str, int]:
        return (self._sock.getsockname()[0] if self._sock else self.host), self.port

    def start(self) -> "OscServer":
        quiet_python_osc()
        try:
            family, _, _, _, addr = socket.getaddrinfo(self.host, self._want_port, 0, socket.SOCK_DGRAM)[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except (OSError, UnicodeError) as e:
            raise ConfigError(f"cannot listen for OSC on {self.host}:{self._want_port}: {e}") from None
        for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if opt is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, self.rcvbuf)
                break
            except OSError:
                continue
        self.actual_rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        try:
            sock.bind(addr)
        except OSError as e:
            sock.close()
            raise ConfigError(f"cannot listen for OSC on {self.host}:{self._want_port}: {e.strerror or e}") from None
        sock.setblocking(False)  # receive after a 0.1 s select (prompt stop), replies never block
        self._sock = sock
        self._stop.clear()
        self.target.attach_replier(self)
        for name, fn in (("osc-receive", self._receive_loop), ("osc-push", self._push_loop)):
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads = []
        try:
            self.target.attach_replier(None)
        except Exception:
            pass
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "OscServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> dict:
        s = dict(self.counters)
        s["subscribers"] = len(self._subs)
        s["rcvbuf"] = self.actual_rcvbuf
        return s

    # -- streams (OSC over the OSCQuery WebSocket) ----------------------------
    def register_stream(self, sender: Sender, deliver) -> None:
        """Replies to ``sender`` go to ``deliver(datagram)`` (thread-safe, never blocks) instead of UDP."""
        self._streams[sender] = deliver

    def unregister_stream(self, sender: Sender) -> None:
        self._streams.pop(sender, None)
        with self._subs_lock:
            self._subs.pop(sender, None)

    # -- Replier ------------------------------------------------------------
    def reply(self, sender: Sender | None, address: str, values: tuple = (), types: str | None = None) -> None:
        if sender is None or self._sock is None:
            return
        try:
            data = encode(address, values, types)
            deliver = self._streams.get(sender) if self._streams else None
            if deliver is not None:
                deliver(data)
            elif len(sender) == 3:   # a stream client that has gone: nobody to answer
                return
            else:
                self._sock.sendto(data, sender)
            self.counters["replies"] += 1
        except Exception as e:  # a full send buffer, a vanished sender, an unencodable value
            self.counters["reply_failed"] += 1
            self.throttle.warn("reply", f"OSC: cannot answer {sender[0]}:{sender[1]} on {address}: {e}")

    def reply_error(self, sender: Sender | None, address: str, reason: str) -> None:
        """For the engine: an error found after the submit (counted as ``late_errors``)."""
        self.counters["late_errors"] += 1
        self._error(sender, address, reason)

    def _error(self, sender: Sender | None, address: str, reason: str) -> None:
        self.reply(sender, "/sono/error", (address[:200], reason[:300]), "ss")

    # -- receiving ----------------------------------------------------------
    def _receive_loop(self) -> None:
        buf = bytearray(self.max_packet + 1)
        view = memoryview(buf)
        sock = self._sock
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not sel.select(0.1):
                    continue
                for _ in range(10000):  # drain what is queued, then look at the stop flag again
                    try:
                        n, sender = sock.recvfrom_into(buf)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as e:  # e.g. an ICMP error reported on the socket
                        self.throttle.warn("recv", f"OSC: receive error: {e}")
                        break
                    try:
                        self.handle_datagram(bytes(view[:n]) if n <= self.max_packet else None, sender)
                    except Exception as e:  # never let a bug in one packet stop the server
                        self.counters["errors"] += 1
                        self.throttle.warn("internal", f"OSC: internal error on a packet from {sender[0]}: {type(e).__name__}: {e}")

    def handle_datagram(self, data: bytes | None, sender: Sender) -> None:
        """Process one datagram from ``sender`` (``data`` None: it was larger than ``max_packet``)."""
        c = self.counters
        c["received"] += 1
        host = sender[0]
        if not self.allow(host):
            c["dropped_not_allowed"] += 1
            self.throttle.warn("allow", f"OSC: ignoring packets from {host} (not in the allowlist; see --allow)")
            return
        if data is None or len(data) > self.max_packet:
            c["dropped_size"] += 1
            self.throttle.warn("size", f"OSC: dropped a packet from {host} over {self.max_packet} bytes")
            return
        if not self.limiter.take(host):
            c["dropped_rate"] += 1
            self.throttle.warn("rate", f"OSC: {host} sends faster than {self.limiter.rate:g} messages/s; dropping")
            return
        try:
            messages, timetag = parse_packet(data)
        except Exception as e:  # ParseError, UnicodeDecodeError, IndexError, struct.error, RecursionError...
            c["dropped_malformed"] += 1
            self.throttle.warn("malformed", f"OSC: dropped a malformed packet from {host} ({type(e).__name__})")
            return
        c["parsed"] += 1
        self._dispatch(messages, timetag, sender)

    def _dispatch(self, messages: list, timetag: float, sender: Sender) -> None:
        c = self.counters
        at = None
        if timetag:
            now = time.time()
            if timetag > now:
                if timetag - now > self.max_future:
                    c["messages"] += len(messages)
                    c["errors"] += len(messages)
                    self._error(sender, "#bundle", f"timetag {timetag - now:.1f} s ahead; at most {self.max_future:g} s")
                    return
                at = timetag
        changes: list = []
        applied = 0
        for m in messages:
            n_before = len(changes)
            try:
                self._message(m, sender, changes)
            except OscValueError as e:
                del changes[n_before:]
                c["messages"] += 1
                c["errors"] += 1
                self._error(sender, m.address, str(e))
                continue
            except Exception:
                c["messages"] += 1
                raise   # counted as an error by the receive loop
            c["messages"] += 1
            if len(changes) > n_before:
                applied += 1
            else:
                c["answered"] += 1
        if changes:
            try:
                self.target.submit(changes, at, sender)
            except Exception as e:
                c["errors"] += applied
                self.throttle.warn("submit", f"OSC: the engine refused a change: {type(e).__name__}: {e}")
                self._error(sender, changes[0][0], f"internal error: {type(e).__name__}")
                return
            c["submits"] += 1
            c["applied"] += applied

    def _message(self, m, sender: Sender, changes: list) -> None:
        """Handle one message: append its changes to ``changes`` or answer it. Raises OscValueError."""
        address = m.address
        bad = set(_type_tag(m.dgram)) - _KNOWN_TAGS
        if bad:
            raise OscValueError(f"unsupported OSC type tag '{sorted(bad)[0]}' (use i h f d T F s)")
        args = m.params
        if address in _SERVER_ADDRESSES:
            self._server_message(address, args, sender)
            return
        if is_pattern(address):
            targets = [(p, norm) for p, norm in match(self.namespace, address) if not p.action]
        else:
            targets = match(self.namespace, address)
        if not targets:
            raise OscValueError("no such address (see /sono/info or the OSCQuery tree)")
        for p, norm in targets:
            suffix = "/norm" if norm else ""
            if not args and not p.action:
                if not p.access & 1:
                    raise OscValueError("write only: cannot be queried")
                v = self.target.value(p.address)
                if v is None:
                    raise OscValueError("no value yet")
                self.reply(sender, p.address + suffix, to_norm(p, v) if norm else v, "f" * len(v) if norm else p.types)
                continue
            if not p.access & 2:
                raise OscValueError("read only")
            changes.append((p.address, convert(p, args, norm)))

    def _server_message(self, address: str, args: list, sender: Sender) -> None:
        if address == "/sono/ping":
            self.reply(sender, "/sono/pong", tuple(a for a in args if isinstance(a, (int, float, str)))[:8])
        elif address == "/sono/info":
            self.reply(sender, "/sono/info", _flat(self.target.info()))
        elif address == "/sono/status":
            st = dict(self.target.status())
            st.update({f"osc_{k}": v for k, v in self.stats().items()})
            self.reply(sender, "/sono/status", _flat(st))
        elif address == "/sono/subscribe":
            seconds = convert(self.namespace[address], args)[0] if address in self.namespace else 10.0
            with self._subs_lock:
                if sender not in self._subs and len(self._subs) >= self.max_subscribers:
                    self._expire_locked()
                    if len(self._subs) >= self.max_subscribers:
                        raise OscValueError(f"too many subscribers (at most {self.max_subscribers})")
                entry = self._subs.get(sender)
                self._subs[sender] = [time.monotonic() + seconds, entry is None or entry[1]]
            self.reply(sender, "/sono/subscribe", (float(seconds),), "f")
        elif address == "/sono/unsubscribe":
            with self._subs_lock:
                self._subs.pop(sender, None)

    # -- subscriptions ------------------------------------------------------
    def _expire_locked(self) -> None:
        now = time.monotonic()
        for s in [s for s, (exp, _) in self._subs.items() if exp <= now]:
            del self._subs[s]

    def subscribers(self) -> list:
        with self._subs_lock:
            self._expire_locked()
            return list(self._subs)

    def _snapshot(self) -> dict:
        out = {}
        for a in self._readable:
            try:
                out[a] = self.target.value(a)
            except Exception as e:
                self.throttle.warn("value", f"OSC: reading {a} failed: {type(e).__name__}: {e}")
        return out

    def _push_loop(self) -> None:
        last: dict | None = None
        while not self._stop.wait(self.push_interval):
            try:
                with self._subs_lock:
                    self._expire_locked()
                    subs = [(s, e[1]) for s, e in self._subs.items()]
                    for s, _ in subs:
                        self._subs[s][1] = False
                if not subs:
                    last = None
                    continue
                snap = self._snapshot()
                changed = [a for a, v in snap.items() if last is None or last.get(a) != v]
                last = snap
                for s, fresh in subs:
                    for a in (snap if fresh else changed):
                        v = snap[a]
                        if v is not None:
                            self.reply(s, a, v, self.namespace[a].types)
            except Exception as e:
                self.throttle.warn("push", f"OSC: pushing values failed: {type(e).__name__}: {e}")
