"""Sending OSC over UDP, and noticing (quietly) when nobody listens.

Each destination has its own *connected* UDP socket: on Linux, only a
connected socket hears about the ICMP "port unreachable" a closed port
answers with; it raises ConnectionRefusedError on the next send (that
datagram is not sent, so it is sent once more). The first refusal prints
one line, ``no daemon answering at HOST:PORT; will keep sending``; after
that the sender keeps sending and, every ``probe_interval`` seconds, sends
``/sono/ping`` and watches for a refusal. When a probe stays unrefused (or
anything answers), it prints once that the daemon answers again.
Nothing is printed per message.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable

from ..control.wire import encode, encode_bundle
from ..errors import SonolatentError

PING_ADDRESS = "/sono/ping"


def build_message(address: str, args: tuple = ()) -> bytes:
    """OSC datagram (the shared :func:`sonolatent.control.wire.encode`): floats as ``f``, ints as ``i``,
    strings as ``s``, bools as ``T``/``F``; anything else is a TypeError."""
    for a in args:
        if not isinstance(a, (bool, int, float, str)):
            raise TypeError(f"cannot send {type(a).__name__} over OSC")
    return encode(address, args)


def parse_hostport(text: str, what: str = "--to") -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT`` for 127.0.0.1) -> (host, port); SonolatentError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise SonolatentError(f"{what}: expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise SonolatentError(f"{what}: port must be a number, got {port!r}") from None
    if not 0 <= p <= 65535:
        raise SonolatentError(f"{what}: port must be 0..65535, got {p}")
    return host, p


class Destination:
    """One OSC receiver (host, port) behind a connected UDP socket."""

    def __init__(self, host: str, port: int, log: Callable[[str], None]):
        self.host, self.port = host, port
        self.label = f"{host}:{port}"
        self.log = log
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except socket.gaierror as e:
            raise SonolatentError(f"OSC destination {self.label}: unknown host ({e.strerror})") from None
        infos.sort(key=lambda info: info[0] != socket.AF_INET)  # "localhost": 127.0.0.1, where daemons bind
        family, _, _, _, addr = infos[0]
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        except OSError:
            pass
        try:
            self.sock.connect(addr)
        except OSError as e:
            self.sock.close()
            raise SonolatentError(f"OSC destination {self.label}: {e.strerror or e}") from None
        self.sock.setblocking(False)
        self.lock = threading.Lock()
        self.up: bool | None = None  # None: not known yet
        self.sent = 0
        self.lost = 0
        self._last_refused = 0.0

    def _refused(self) -> None:
        self._last_refused = time.monotonic()
        if self.up is not False:
            self.up = False
            self.log(f"no daemon answering at {self.label}; will keep sending")

    def _answering(self) -> None:
        if self.up is False:
            self.log(f"daemon answering at {self.label} again")
        self.up = True

    def send(self, dgram: bytes) -> None:
        with self.lock:
            for attempt in (0, 1):
                try:
                    self.sock.send(dgram)
                    self.sent += 1
                    return
                except ConnectionRefusedError:
                    self._refused()  # that was the previous datagram's ICMP; this one was not sent
                except (BlockingIOError, InterruptedError):
                    self.lost += 1  # socket buffer full: drop, never block the MIDI thread
                    return
                except OSError:
                    self.lost += 1  # network unreachable and the like: keep going
                    return
            self.lost += 1

    def probe(self, ping: bytes, wait: float = 0.05) -> bool | None:
        """Send a ping; afterwards the state is refused (False) or answering (True)."""
        with self.lock:
            self._drain()
            t = time.monotonic()
            try:
                self.sock.send(ping)
            except ConnectionRefusedError:
                self._refused()
                return self.up
            except OSError:
                return self.up
        time.sleep(wait)
        with self.lock:
            answered = self._drain()
            if self._last_refused >= t and not answered:
                self._refused()
            else:
                self._answering()
            return self.up

    def _drain(self) -> bool:
        """Read whatever came back (replies, refusals); True if any datagram arrived."""
        got = False
        for _ in range(1000):
            try:
                self.sock.recv(65536)
                got = True
            except ConnectionRefusedError:
                self._last_refused = time.monotonic()
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
        return got

    def close(self) -> None:
        self.sock.close()


class OscSender:
    """Sends each message to every destination; a background thread re-probes the silent ones."""

    def __init__(self, destinations: list[tuple[str, int]], log: Callable[[str], None],
                 probe_interval: float = 0.5):
        self.destinations = [Destination(h, p, log) for h, p in destinations]
        self.probe_interval = probe_interval
        self._ping = build_message(PING_ADDRESS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def start(self) -> None:
        """Probe once now (so a missing daemon is reported at start), then keep watching."""
        for d in self.destinations:
            d.probe(self._ping)
        self._thread = threading.Thread(target=self._watch, name="osc-probe", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.probe_interval):
            for d in self.destinations:
                if d.up is False:
                    d.probe(self._ping)

    def send(self, address: str, args: tuple = ()) -> None:
        dgram = build_message(address, args)
        for d in self.destinations:
            d.send(dgram)
        self.sent += 1

    def send_together(self, messages: list[tuple[str, tuple]]) -> None:
        """Several messages in one datagram (an immediate bundle): the daemon applies them together."""
        dgram = encode_bundle([build_message(a, args) for a, args in messages])
        for d in self.destinations:
            d.send(dgram)
        self.sent += len(messages)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for d in self.destinations:
            d.close()
