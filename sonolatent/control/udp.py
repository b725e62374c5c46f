"""One UDP listening port, fair under floods: the daemon's OSC port and the bridge's control port.

A flood fills a socket's kernel queue, and the kernel then drops whatever
arrives, whoever sent it: a second client on the same host loses most of its
packets however fast the receiver reads. So a sender that has been served
(its packet passed the allow-list, the budget and the parser) gets a *lane*
of its own (Linux): a second UDP socket bound to the same address and port
with ``SO_REUSEPORT`` and connected to that sender. The kernel delivers a
datagram to the connected socket that matches its source exactly, so that
sender's packets queue apart from everyone else's. The receive loop reads at
most :data:`BATCH` datagrams from each ready socket per round, so neither a
flood on the shared socket nor one on a lane can starve the others.

- A lane is read only after the shared socket has been drained once (or
  :data:`LANE_READY_S` has passed), so what the sender sent just before it got
  the lane is handled first: a client's packets keep their order.
- At most :data:`MAX_LANES` lanes; when all are taken, a new one replaces the
  one idle longest, and only if it has been idle at least
  :data:`LANE_EVICT_IDLE_S` (a flooder rotating its source ports can't push
  out a client that is playing). A lane idle for :data:`LANE_IDLE_S` closes,
  and one whose sender has gone (an ICMP error after a reply) at once.
- A sender over its message budget is ignored for :data:`PENALTY_S` without
  any parsing (one dictionary lookup per datagram), so a flood drains fast.
- Binding: the port is first taken by a plain probe socket, so a port in use
  (another daemon, another bridge) is still an error, and ``port=0`` picks a
  port nobody holds.

Replies to a sender with a lane leave through it (the same address and port
as the shared socket), so an ICMP error about a sender that has gone closes its
lane; others' leave through the shared socket.
"""

from __future__ import annotations

import selectors
import socket
import sys
import threading
import time
from typing import Callable

BATCH = 64               # datagrams read from one ready socket per round
MAX_LANES = 32
LANE_IDLE_S = 30.0       # a lane with nothing for this long is closed
LANE_EVICT_IDLE_S = 1.0  # when every lane is taken, one idle at least this long may be replaced
LANE_READY_S = 0.1       # a new lane is read at the latest this long after it opened
LANE_RCVBUF = 256 << 10
PENALTY_S = 0.01         # a sender over its message budget is ignored this long

# what a handler says about a datagram
SERVED = "served"        # the sender is in good standing: it may get a lane
OVER_BUDGET = "over"     # the sender ran out of budget: ignore it for PENALTY_S

_LANES_SUPPORTED = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            return
        except OSError:
            continue


class _Lane:
    __slots__ = ("sock", "sender", "opened", "last", "ready")

    def __init__(self, sock: socket.socket, sender, now: float):
        self.sock, self.sender, self.opened, self.last, self.ready = sock, sender, now, now, False


class UdpPort:
    """A bound UDP port (``host``, ``port``; 0 picks one) with per-sender lanes; raises ``OSError`` when it
    cannot bind (``socket.gaierror`` for an unknown host), for the caller to word."""

    def __init__(self, host: str, port: int, *, rcvbuf: int = 4 << 20, max_packet: int = 65536,
                 lanes: bool = True, max_lanes: int = MAX_LANES, clock: Callable[[], float] = time.monotonic):
        self.max_packet = int(max_packet)
        self.max_lanes = int(max_lanes) if lanes and _LANES_SUPPORTED else 0
        self.clock = clock
        family, _, _, _, addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
        self.family = family
        # a plain probe first: the port is free (or picked free) for everyone, not only for our own group
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.bind(addr)
            addr = probe.getsockname()
        finally:
            probe.close()
        self.sock = self._socket(addr, rcvbuf)
        self.address = self.sock.getsockname()
        self.actual_rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._lanes: dict = {}          # sender -> _Lane; changed by the serving thread only
        self.lanes_opened = 0
        self._sel: selectors.BaseSelector | None = None

    def _socket(self, addr, rcvbuf: int) -> socket.socket:
        s = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            if self.max_lanes:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _set_rcvbuf(s, rcvbuf)
            s.bind(addr)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s

    @property
    def lanes(self) -> int:
        return len(self._lanes)

    def sendto(self, data: bytes, to) -> None:
        """Send to ``to``: through its lane when it has one (an ICMP error then closes the lane)."""
        lane = self._lanes.get(to)
        if lane is not None:
            try:
                lane.sock.send(data)
                return
            except OSError:    # closed under us, or the sender has gone: the shared socket says so
                pass
        self.sock.sendto(data, to)

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.sock.close()
        self._lanes.clear()
        self.sock.close()

    # -- lanes -------------------------------------------------------------------------------------
    def _open_lane(self, sender, now: float) -> None:
        lanes = self._lanes
        if len(lanes) >= self.max_lanes:
            oldest = min(lanes.values(), key=lambda ln: ln.last)
            if now - oldest.last < LANE_EVICT_IDLE_S:
                return
            self._close_lane(oldest)
        try:
            s = self._socket(self.address, LANE_RCVBUF)
            s.connect(sender[:2] if self.family == socket.AF_INET else sender)
        except OSError:
            return
        lanes[sender] = _Lane(s, sender, now)
        self.lanes_opened += 1

    def _close_lane(self, lane: _Lane) -> None:
        if lane.ready and self._sel is not None:
            try:
                self._sel.unregister(lane.sock)
            except (KeyError, ValueError):
                pass
        self._lanes.pop(lane.sender, None)
        lane.sock.close()

    # -- the receive loop --------------------------------------------------------------------------
    def serve(self, handle: Callable[[bytes | None, tuple], str | None], stop: threading.Event,
              on_error: Callable[[OSError], None] | None = None, on_penalty: Callable[[], None] | None = None) -> None:
        """Receive until ``stop`` is set (looked at every 0.1 s at least): ``handle(data, sender)`` for each
        datagram (``data`` None: longer than ``max_packet``), which answers :data:`SERVED`,
        :data:`OVER_BUDGET` or anything else. ``on_penalty()`` counts a datagram dropped unread from a
        sender serving its penalty; ``on_error`` sees a receive error of the shared socket."""
        buf = bytearray(self.max_packet + 1)
        view = memoryview(buf)
        clock = self.clock
        boxed: dict = {}     # sender -> time until which its datagrams are dropped unread
        next_sweep = clock() + 1.0
        with selectors.DefaultSelector() as sel:
            self._sel = sel
            sel.register(self.sock, selectors.EVENT_READ, None)
            while not stop.is_set():
                events = sel.select(0.1)
                main_drained = True   # nothing waiting on the shared socket (the new lanes may be read)
                for key, _ in events:
                    lane = key.data
                    if lane is None:
                        main_drained = False
                    recv = key.fileobj.recvfrom_into
                    for _ in range(BATCH):
                        try:
                            n, sender = recv(buf)
                        except (BlockingIOError, InterruptedError):
                            if lane is None:
                                main_drained = True
                            break
                        except OSError as e:
                            if lane is not None:    # its sender has gone (ICMP port unreachable)
                                self._close_lane(lane)
                            elif on_error is not None:
                                on_error(e)
                            break
                        until = boxed.get(sender)
                        if until is not None:
                            if clock() < until:
                                if on_penalty is not None:
                                    on_penalty()
                                continue
                            del boxed[sender]
                        verdict = handle(bytes(view[:n]) if n <= self.max_packet else None, sender)
                        now = clock()
                        if verdict == OVER_BUDGET:
                            if len(boxed) > 4096:
                                boxed.clear()
                            boxed[sender] = now + PENALTY_S
                        elif verdict == SERVED:
                            if lane is not None:
                                lane.last = now
                            elif self.max_lanes:
                                known = self._lanes.get(sender)
                                if known is not None:
                                    known.last = now
                                else:
                                    self._open_lane(sender, now)
                now = clock()
                for lane in list(self._lanes.values()):
                    if not lane.ready and (main_drained or now - lane.opened >= LANE_READY_S):
                        lane.ready = True
                        sel.register(lane.sock, selectors.EVENT_READ, lane)
                if now >= next_sweep:
                    next_sweep = now + 1.0
                    for lane in list(self._lanes.values()):
                        if now - lane.last >= LANE_IDLE_S:
                            self._close_lane(lane)
            self._sel = None
