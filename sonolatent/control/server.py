"""The OSC/UDP control server: receive, check, convert, hand over, answer.

One thread receives datagrams on a :class:`.udp.UdpPort` (raised
``SO_RCVBUF``; a sender that has been served gets a socket of its own, so a
flood from someone else can't crowd its packets out of the kernel's queue;
the stop flag is looked at every 0.1 s). For each datagram, in this order:

1. the sender's address is checked against the allowlist (loopback plus
   ``--allow``) -> ``dropped_not_allowed``;
2. its size against ``max_packet`` -> ``dropped_size``;
3. the sender's and the global *message* budget (one message taken before
   parsing, the rest of a bundle's after) -> ``dropped_rate``; a sender
   (address and port) that runs out is then ignored for ``udp.PENALTY_S`` by
   the receive loop without any further work, so a flood drains fast;
4. it is parsed by :mod:`.wire` (strict: lengths, padding, names, bundle
   sizes) -> ``dropped_malformed``, or ``dropped_limits`` for a packet over a
   cap (bundle depth, messages per packet); never a traceback, at most one log
   line per 5 s;
5. every message is then answered (queries, info, status, ping, subscribe),
   refused (``/sono/error address reason``, ``errors``) or converted; the
   changes of one packet (all messages of a bundle, nested ones too) go to
   ``target.submit`` together (``applied`` counts those messages). A wildcard
   pattern is matched on a tree of path segments (:class:`.convert.PatternIndex`)
   and pays its work (nodes looked at + addresses matched) from the *match*
   budget; a sender in debt gets no more patterns matched (``limited``); every
   reply, pushed values included, takes one from the receiver's *reply* budget
   (``dropped_replies``).

Bundle timetags: immediate (1) or past -> ``at=None``; future -> ``at`` (a
``time.time()`` value, the latest timetag of the bundle and its nested
bundles), never slept on; further ahead than ``max_future`` -> refused.

Replies leave from the port that received (the sender's lane when it has one).
A second thread pushes value changes to subscribers (``/sono/subscribe``):
a lease lasts at most ``max_lease`` seconds (renew it), and one host holds at
most ``max_subscribers_per_host`` of the ``max_subscribers`` slots.
"""

from __future__ import annotations

import numbers
import threading
import time

from ..errors import ConfigError, SonolatentError
from .convert import OscValueError, PatternIndex, convert, is_pattern, to_norm
from .guard import LOOPBACK, AllowList, Budgets, RateLimiter, Throttle, parse_allow  # noqa: F401 (re-exported)
from .target import ControlTarget, Sender
from .udp import OVER_BUDGET, SERVED, UdpPort
from .wire import MAX_BUNDLE_DEPTH, WireError, WireLimitError, encode, parse_packet  # noqa: F401 (re-exported)

DEFAULT_PORT = 9000
DEFAULT_MAX_PACKET = 65536
DEFAULT_RATE = 5000.0
DEFAULT_MAX_FUTURE = 4.0
DEFAULT_RCVBUF = 4 << 20
MAX_SUBSCRIBERS = 8
MAX_LEASE = 60.0
# type tags a parameter may be sent; others (S c I ...) parse but are refused with an answer
_KNOWN_TAGS = frozenset("ihfdsbrmtTFN[]")
_SERVER_ADDRESSES = frozenset({"/sono/ping", "/sono/info", "/sono/status", "/sono/subscribe", "/sono/unsubscribe"})

COUNTERS = ("received", "parsed", "dropped_not_allowed", "dropped_size", "dropped_rate", "dropped_malformed",
            "dropped_limits", "messages", "applied", "answered", "errors", "limited", "submits", "replies",
            "dropped_replies", "reply_failed", "late_errors")


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


class _WorkLimit(Exception):
    """A message dropped for the sender's (or everyone's) match budget."""


class OscServer:
    """UDP OSC server driving a :class:`ControlTarget`. Also the :class:`Replier` the target is given."""

    def __init__(self, target: ControlTarget, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 allow=None, loopback: bool = True, max_packet: int = DEFAULT_MAX_PACKET,
                 rate: float = DEFAULT_RATE, burst: float | None = None, budgets: Budgets | None = None,
                 max_future: float = DEFAULT_MAX_FUTURE, rcvbuf: int = DEFAULT_RCVBUF,
                 max_subscribers: int = MAX_SUBSCRIBERS, max_subscribers_per_host: int | None = None,
                 max_lease: float = MAX_LEASE, push_interval: float = 0.05, log_interval: float = 5.0):
        if max_packet < 16:
            raise ConfigError(f"--max-packet: {max_packet} is too small (at least 16 bytes)")
        if max_future < 0:
            raise ConfigError(f"--max-future: {max_future} must be >= 0 seconds")
        self.target = target
        self.namespace = target.namespace
        self.host, self._want_port = host, int(port)
        self.allow = AllowList(allow, loopback)
        self.max_packet = int(max_packet)
        # ``rate``: messages per second per sender (0 = no budgets at all, as before)
        self.budgets = budgets if budgets is not None else (
            Budgets(rate, burst=burst) if rate > 0 else Budgets(0, 0, 0))
        self.max_future = float(max_future)
        self.rcvbuf = int(rcvbuf)
        self.max_subscribers = int(max_subscribers)
        self.max_per_host = int(max_subscribers_per_host) if max_subscribers_per_host else max(1, self.max_subscribers // 2)
        self.max_lease = float(max_lease)
        self.push_interval = float(push_interval)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.throttle = Throttle(log_interval)
        self._subs: dict = {}          # sender -> [expiry (monotonic), fresh]
        self._subs_lock = threading.Lock()
        self._streams: dict = {}       # sender -> deliver(bytes): clients on a stream (the OSCQuery WebSocket)
        self._readable = [a for a, p in self.namespace.items() if not p.action and p.access & 1]
        self.patterns = PatternIndex(self.namespace)
        self._port: UdpPort | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.actual_rcvbuf = 0

    # -- lifecycle ----------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port.address[1] if self._port else self._want_port

    @property
    def address(self) -> tuple[str, int]:
        return (self._port.address[0] if self._port else self.host), self.port

    def start(self) -> "OscServer":
        try:
            port = UdpPort(self.host, self._want_port, rcvbuf=self.rcvbuf, max_packet=self.max_packet)
        except UnicodeError as e:
            raise ConfigError(f"cannot listen for OSC on {self.host}:{self._want_port}: {e}") from None
        except OSError as e:
            raise ConfigError(f"cannot listen for OSC on {self.host}:{self._want_port}: {e.strerror or e}") from None
        self.actual_rcvbuf = port.actual_rcvbuf
        self._port = port
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
        if self._port is not None:
            self._port.close()
            self._port = None

    def __enter__(self) -> "OscServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> dict:
        s = dict(self.counters)
        s["subscribers"] = len(self._subs)
        s.update({f"budget_{k}": v for k, v in self.budgets.rates().items()})
        s["rcvbuf"] = self.actual_rcvbuf
        s["lanes"] = self._port.lanes if self._port is not None else 0
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
        if sender is None or self._port is None:
            return
        if not self.budgets.take("replies", sender):
            self.counters["dropped_replies"] += 1
            return
        try:
            data = encode(address, values, types)
            deliver = self._streams.get(sender) if self._streams else None
            if deliver is not None:
                deliver(data)
            elif len(sender) == 3:   # a stream client that has gone: nobody to answer
                return
            else:
                self._port.sendto(data, sender)
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
        c = self.counters

        def unread() -> None:   # a datagram of a sender serving its penalty (udp.PENALTY_S), dropped unread
            c["received"] += 1
            c["dropped_rate"] += 1

        def handle(data, sender):
            try:
                return self.handle_datagram(data, sender)
            except Exception as e:  # never let a bug in one packet stop the server
                c["errors"] += 1
                self.throttle.warn("internal", f"OSC: internal error on a packet from {sender[0]}: {type(e).__name__}: {e}")
                return None

        self._port.serve(handle, self._stop, on_error=lambda e: self.throttle.warn("recv", f"OSC: receive error: {e}"),
                         on_penalty=unread)

    def handle_datagram(self, data: bytes | None, sender: Sender) -> str | None:
        """Process one datagram from ``sender`` (``data`` None: it was larger than ``max_packet``); returns
        :data:`~.udp.SERVED` when it was parsed and dispatched, :data:`~.udp.OVER_BUDGET` when the sender ran
        out of its message budget, None when it was dropped otherwise."""
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
        budgets = self.budgets
        if not budgets.take("messages", sender):
            c["dropped_rate"] += 1
            self.throttle.warn("rate", f"OSC: {host} sends more than its budget of messages/s; dropping")
            return OVER_BUDGET
        try:
            messages, timetag = parse_packet(data)
        except WireLimitError as e:
            c["dropped_limits"] += 1
            self.throttle.warn("limits", f"OSC: dropped a packet from {host}: {e}")
            return
        except WireError as e:
            c["dropped_malformed"] += 1
            self.throttle.warn("malformed", f"OSC: dropped a malformed packet from {host}: {e}")
            return
        if len(messages) > 1 and not budgets.take("messages", sender, len(messages) - 1):
            c["dropped_rate"] += 1
            self.throttle.warn("rate", f"OSC: {host} sends more than its budget of messages/s; dropping")
            return OVER_BUDGET
        c["parsed"] += 1
        self._dispatch(messages, timetag, sender)
        return SERVED

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
            except _WorkLimit:
                del changes[n_before:]
                c["messages"] += 1
                c["limited"] += 1
                continue
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
                self._error(sender, changes[0][0], str(e) if isinstance(e, SonolatentError)
                            else f"internal error: {type(e).__name__}")
                return
            c["submits"] += 1
            c["applied"] += applied

    def _message(self, m, sender: Sender, changes: list) -> None:
        """Handle one message: append its changes to ``changes`` or answer it. Raises OscValueError."""
        address = m.address
        bad = set(m.types) - _KNOWN_TAGS
        if bad:
            raise OscValueError(f"unsupported OSC type tag '{sorted(bad)[0]}' (use i h f d T F s)")
        args = m.params
        if address in _SERVER_ADDRESSES:
            self._server_message(address, args, sender)
            return
        if is_pattern(address):
            # the work of matching is paid after it is done (tree nodes looked at + targets), so a sender
            # in debt is refused before any: a pattern costs at most one overshoot of the budget
            if not self.budgets.has("matches", sender):
                self.throttle.warn("matches", f"OSC: {sender[0]} matches more addresses than its budget; dropping")
                raise _WorkLimit
            found, cost = self.patterns.match(address)
            self.budgets.charge("matches", sender, cost)
            targets = [(p, norm) for p, norm in found if not p.action]
        else:
            targets = self.patterns.match(address)[0]
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
            seconds = min(float(seconds), self.max_lease)
            with self._subs_lock:
                if sender not in self._subs:
                    self._expire_locked()
                    if len(self._subs) >= self.max_subscribers:
                        raise OscValueError(f"too many subscribers (at most {self.max_subscribers})")
                    if sum(1 for s in self._subs if s[0] == sender[0]) >= self.max_per_host:
                        raise OscValueError(f"too many subscribers from {sender[0]} (at most {self.max_per_host}"
                                            " per host)")
                entry = self._subs.get(sender)
                self._subs[sender] = [time.monotonic() + seconds, entry is None or entry[1]]
                # answered before the lock lets the push thread see the new subscriber: the answer
                # always comes before the first pushed value
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
