"""The bridge's own OSC control port (default 127.0.0.1:9001), on the daemon's guarded wire.

Understood messages (anything else is counted and dropped):

- ``/sono/midi/learn ADDRESS``: bind the next control that moves to ADDRESS
  and save the mapping file; replies ``/sono/midi/learn/armed ADDRESS`` at
  once and ``/sono/midi/learned ADDRESS DESCRIPTION`` when bound (or
  ``/sono/midi/error TEXT``). ADDRESS must be one the daemon's namespace
  knows (see :func:`sonolatent.midi.learn.learn_range`).
- ``/sono/midi/learn/cancel``: replies ``/sono/midi/learn/cancelled``.
- ``/sono/midi/ping``: replies ``/sono/midi/pong``.
- ``/sono/midi/status``: replies ``/sono/midi/status`` with the counters as
  name, value pairs.

The same port and guards as the daemon's OSC port (:mod:`sonolatent.control.udp`
with its per-client lanes, :mod:`sonolatent.control.guard`,
:mod:`sonolatent.control.wire`): the allow-list (loopback plus ``--allow``,
unless ``--no-loopback``), message and reply budgets per sender and for
everyone, the strict parser with its bundle caps. Replies go to the sender's
address. Bundles are unpacked and applied at once (their time tags are not
waited for). Every dropped packet is one counter increment (``bad_packets``,
``not_allowed``, ``over_budget``), never a log line.
"""

from __future__ import annotations

import queue
import socket
import threading

from ..control.guard import AllowList, Budgets
from ..control.udp import OVER_BUDGET, SERVED, UdpPort
from ..control.wire import WireError, parse_packet
from ..errors import SonolatentError
from .osc_out import build_message

LEARN = "/sono/midi/learn"
LEARN_CANCEL = "/sono/midi/learn/cancel"
PING = "/sono/midi/ping"
STATUS = "/sono/midi/status"
MAX_PACKET = 65536
# a person drives this port: a few messages a second is plenty
MESSAGES_PER_SENDER = 200.0
REPLIES_PER_SENDER = 200.0
MAX_PENDING = 1024    # queued items (MIDI bytes included) beyond which learn/cancel requests are dropped


class ControlServer:
    """Receives control messages on a thread and puts ``(kind, arg, sender)`` on ``requests``."""

    COUNTERS = ("received", "bad_packets", "not_allowed", "over_budget", "unknown", "requests", "replies",
                "replies_dropped")

    def __init__(self, host: str, port: int, requests: queue.SimpleQueue, *, allow=None, loopback: bool = True,
                 budgets: Budgets | None = None):
        self.requests = requests
        self.allow = allow if isinstance(allow, AllowList) else AllowList(allow, loopback)
        self.budgets = budgets or Budgets(MESSAGES_PER_SENDER, MESSAGES_PER_SENDER, REPLIES_PER_SENDER)
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        try:
            self._udp = UdpPort(host, port, rcvbuf=1 << 20, max_packet=MAX_PACKET)
        except socket.gaierror as e:
            raise SonolatentError(f"--control {host}:{port}: unknown host ({e.strerror})") from None
        except OSError as e:
            raise SonolatentError(f"--control {host}:{port}: cannot listen ({e.strerror or e}); "
                                  "another bridge running? pick another with --control HOST:PORT") from None
        self.host, self.port = self._udp.address[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="midi-control", daemon=True)

    # older names of two counters
    @property
    def bad_packets(self) -> int:
        return self.counters["bad_packets"]

    @property
    def unknown(self) -> int:
        return self.counters["unknown"]

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        def handle(dgram, sender):
            try:
                return self.handle_datagram(dgram, sender)
            except Exception:   # never let one packet stop the port (and never a log line per packet)
                self.counters["bad_packets"] += 1
                return None

        def unread() -> None:   # a sender serving its penalty: dropped unread
            self.counters["received"] += 1
            self.counters["over_budget"] += 1

        self._udp.serve(handle, self._stop, on_penalty=unread)

    def handle_datagram(self, dgram: bytes | None, sender) -> str | None:
        """One datagram (None: longer than the limit); returns the verdict :meth:`UdpPort.serve` wants."""
        c = self.counters
        c["received"] += 1
        if not self.allow(sender[0]):
            c["not_allowed"] += 1
            return
        if dgram is None or len(dgram) > MAX_PACKET:
            c["bad_packets"] += 1
            return
        if not self.budgets.take("messages", sender):
            c["over_budget"] += 1
            return OVER_BUDGET
        try:
            messages, _ = parse_packet(dgram)
        except WireError:
            c["bad_packets"] += 1
            return
        if len(messages) > 1 and not self.budgets.take("messages", sender, len(messages) - 1):
            c["over_budget"] += 1
            return OVER_BUDGET
        for m in messages:
            params = m.params
            if m.address == LEARN and len(params) == 1 and isinstance(params[0], str):
                self._request(("learn", params[0], sender))
            elif m.address == LEARN_CANCEL:
                self._request(("cancel", None, sender))
            elif m.address == PING:
                self.reply(sender, "/sono/midi/pong")
            elif m.address == STATUS:
                self.reply(sender, STATUS, *[x for k, v in self.counters.items() for x in (k, v)])
            else:
                c["unknown"] += 1
        return SERVED

    def _request(self, item) -> None:
        if self.requests.qsize() >= MAX_PENDING:
            self.counters["over_budget"] += 1
            return
        self.counters["requests"] += 1
        self.requests.put(item)

    def reply(self, to, address: str, *args) -> None:
        if to is None:
            return
        if not self.budgets.take("replies", to):
            self.counters["replies_dropped"] += 1
            return
        try:
            self._udp.sendto(build_message(address, args), to)
            self.counters["replies"] += 1
        except (OSError, TypeError, ValueError):
            pass  # the asker went away; nothing to tell

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)
        self._udp.close()
