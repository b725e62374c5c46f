"""The bridge's own OSC control port (default 127.0.0.1:9001).

Understood messages (anything else is counted and dropped):

- ``/sono/midi/learn ADDRESS``: bind the next control that moves to ADDRESS
  and save the mapping file; replies ``/sono/midi/learn/armed ADDRESS`` at
  once and ``/sono/midi/learned ADDRESS DESCRIPTION`` when bound (or
  ``/sono/midi/error TEXT``).
- ``/sono/midi/learn/cancel``: replies ``/sono/midi/learn/cancelled``.
- ``/sono/midi/ping``: replies ``/sono/midi/pong``.

Replies go to the sender's address. Bundles are unpacked and applied at
once (their time tags are not waited for). Malformed packets (including
ones that are not UTF-8, which python-osc does not catch) are counted in
``bad_packets``, never raised.
"""

from __future__ import annotations

import queue
import socket
import struct
import threading

from pythonosc.osc_packet import OscPacket, ParseError

from ..errors import SonolatentError
from .osc_out import build_message

LEARN = "/sono/midi/learn"
LEARN_CANCEL = "/sono/midi/learn/cancel"
PING = "/sono/midi/ping"


class ControlServer:
    """Receives control messages on a thread and puts ``(kind, arg, sender)`` on ``requests``."""

    def __init__(self, host: str, port: int, requests: queue.SimpleQueue):
        self.requests = requests
        self.bad_packets = 0
        self.unknown = 0
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.bind((host, port))
        except socket.gaierror as e:
            raise SonolatentError(f"--control {host}:{port}: unknown host ({e.strerror})") from None
        except OSError as e:
            raise SonolatentError(f"--control {host}:{port}: cannot listen ({e.strerror or e}); "
                                  "another bridge running? pick another with --control HOST:PORT") from None
        self.sock.settimeout(0.2)
        self.host, self.port = self.sock.getsockname()[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="midi-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                dgram, sender = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            self.handle_datagram(dgram, sender)

    def handle_datagram(self, dgram: bytes, sender) -> None:
        try:
            messages = [t.message for t in OscPacket(dgram).messages]
        except (ParseError, UnicodeDecodeError, ValueError, IndexError, struct.error):
            self.bad_packets += 1
            return
        for m in messages:
            params = list(m.params)
            if m.address == LEARN and len(params) == 1 and isinstance(params[0], str):
                self.requests.put(("learn", params[0], sender))
            elif m.address == LEARN_CANCEL:
                self.requests.put(("cancel", None, sender))
            elif m.address == PING:
                self.reply(sender, "/sono/midi/pong")
            else:
                self.unknown += 1

    def reply(self, to, address: str, *args) -> None:
        if to is None:
            return
        try:
            self.sock.sendto(build_message(address, args), to)
        except OSError:
            pass  # the asker went away; nothing to tell

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)
        self.sock.close()
