"""Who may talk, and how much work they may cause: allow-lists, work budgets, quiet logging.

Shared by the daemon's OSC server and the MIDI bridge's control port.

- :class:`AllowList`: loopback plus ``--allow`` networks (``loopback=False``
  for ``--no-loopback``).
- :class:`Budgets`: token buckets counted in *work*, not packets: messages,
  wildcard matches and replies per second, each per sender ``(ip, port)`` and
  for everyone together. Whatever is over budget is dropped and counted by the
  caller; a flooder empties its own buckets (and at worst the global ones, set
  well above one sender's), so another client keeps being answered.
- :class:`Throttle`: at most one log line per kind per interval; a bad packet
  is a counter increment, never a log line of its own.
"""

from __future__ import annotations

import ipaddress
import logging
import time

from ..errors import ConfigError

LOOPBACK = ("127.0.0.0/8", "::1/128")
MAX_KEYS = 4096   # senders remembered per bucket table (forgotten all at once beyond: a spoofing flood costs memory, not time)

# defaults: per sender / for everyone, per second (the bucket holds one second's worth)
SENDER_MESSAGES = 5000.0
GLOBAL_MESSAGES = 20000.0
SENDER_MATCHES = 8000.0
GLOBAL_MATCHES = 32000.0
SENDER_REPLIES = 2000.0
GLOBAL_REPLIES = 10000.0

log = logging.getLogger("sonolatent.control")


def parse_allow(allow, loopback: bool = True) -> list:
    """CIDR strings (or single addresses) -> ``ip_network`` list, loopback first unless ``loopback`` is False."""
    nets = []
    for a in (list(LOOPBACK) if loopback else []) + list(allow or ()):
        try:
            nets.append(ipaddress.ip_network(str(a).strip(), strict=False))
        except ValueError:
            raise ConfigError(f"--allow: {a!r} is not an IP address or CIDR network (e.g. 192.168.1.0/24)") from None
    if not nets:
        raise ConfigError("--no-loopback without --allow would refuse everyone: give --allow CIDR")
    return nets


class AllowList:
    """``allow(host) -> bool``: loopback (unless ``loopback=False``) plus the ``allow`` networks."""

    def __init__(self, allow=None, loopback: bool = True):
        self.networks = parse_allow(allow, loopback)
        self.loopback_only = loopback and not allow
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
            if len(self._cache) > MAX_KEYS:
                self._cache.clear()
            self._cache[host] = ok
        return ok


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens/s, holding up to ``burst``. ``rate <= 0``: unlimited.

    ``clock`` is injectable (tests); the default is ``time.monotonic``.
    """

    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic):
        self.rate = float(rate)
        self.burst = float(burst) if burst else max(self.rate, 1.0)
        self.clock = clock
        self._b: dict = {}

    def take(self, key, n: float = 1.0) -> bool:
        """Take ``n`` tokens from ``key``'s bucket; False (and nothing taken) when it holds fewer."""
        if self.rate <= 0:
            return True
        b = self._refill(key)
        if b[0] >= n:
            b[0] -= n
            return True
        return False

    def _refill(self, key) -> list:
        now = self.clock()
        b = self._b.get(key)
        if b is None:
            if len(self._b) > MAX_KEYS:
                self._b.clear()
            b = self._b[key] = [self.burst, now]
        b[0] = min(self.burst, b[0] + (now - b[1]) * self.rate)
        b[1] = now
        return b

    def has(self, key) -> bool:
        """Whether ``key``'s bucket holds anything (it may be in debt after :meth:`charge`)."""
        return self.rate <= 0 or self._refill(key)[0] > 0

    def charge(self, key, n: float) -> None:
        """Take ``n`` tokens whatever the bucket holds: work already done is paid back over time."""
        if self.rate > 0:
            self._refill(key)[0] -= n

    def give_back(self, key, n: float) -> None:
        b = self._b.get(key)
        if b is not None:
            b[0] = min(self.burst, b[0] + n)


# the packet-counting limiter of earlier versions, kept as a name (one bucket per key)
RateLimiter = TokenBuckets


class Budgets:
    """Work budgets per sender ``(ip, port)`` and for everyone, for one server.

    ``messages``, ``matches`` and ``replies`` are per-sender rates (per second);
    the global rates default to several senders' worth. A rate of 0 turns that
    budget off. ``take_*`` return False when either the sender's or the global
    bucket is short (then nothing is taken from either).
    """

    KINDS = ("messages", "matches", "replies")

    def __init__(self, messages: float = SENDER_MESSAGES, matches: float = SENDER_MATCHES,
                 replies: float = SENDER_REPLIES, *, global_messages: float | None = None,
                 global_matches: float | None = None, global_replies: float | None = None,
                 burst: float | None = None, clock=time.monotonic):
        def g(v, default_global, per_sender):
            if v is not None:
                return v
            return 0.0 if per_sender <= 0 else max(default_global, 4 * per_sender)
        self.sender = {
            "messages": TokenBuckets(messages, burst, clock),
            "matches": TokenBuckets(matches, None, clock),
            "replies": TokenBuckets(replies, None, clock),
        }
        self.everyone = {
            "messages": TokenBuckets(g(global_messages, GLOBAL_MESSAGES, messages), None, clock),
            "matches": TokenBuckets(g(global_matches, GLOBAL_MATCHES, matches), None, clock),
            "replies": TokenBuckets(g(global_replies, GLOBAL_REPLIES, replies), None, clock),
        }

    def take(self, kind: str, sender, n: float = 1.0) -> bool:
        key = sender[:2] if sender is not None else None
        if not self.sender[kind].take(key, n):
            return False
        if not self.everyone[kind].take(None, n):
            self.sender[kind].give_back(key, n)
            return False
        return True

    def has(self, kind: str, sender) -> bool:
        """Whether both the sender's and the global bucket of ``kind`` hold anything."""
        return self.sender[kind].has(sender[:2] if sender is not None else None) and self.everyone[kind].has(None)

    def charge(self, kind: str, sender, n: float) -> None:
        """Pay for work measured after it was done (both buckets may go into debt)."""
        self.sender[kind].charge(sender[:2] if sender is not None else None, n)
        self.everyone[kind].charge(None, n)

    def rates(self) -> dict:
        return {f"{k}_per_sender": self.sender[k].rate for k in self.KINDS} | \
               {f"{k}_global": self.everyone[k].rate for k in self.KINDS}


class Throttle:
    """At most one log line per ``interval`` seconds per kind, counting what it held back."""

    def __init__(self, interval: float = 5.0, logger: logging.Logger | None = None, clock=time.monotonic):
        self.interval = interval
        self.log = logger or log
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, kind: str, msg: str) -> None:
        now = self.clock()
        if now - self._last.get(kind, -1e9) >= self.interval:
            held = self._held.pop(kind, 0)
            self._last[kind] = now
            self.log.warning("%s%s", msg, f" (+{held} similar in the last {self.interval:g} s)" if held else "")
        else:
            self._held[kind] = self._held.get(kind, 0) + 1
