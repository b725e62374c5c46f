"""The interface between the OSC control surface and whatever it controls.

The control surface (:mod:`sonolatent.control.server`, :mod:`.oscquery`)
parses OSC, converts and checks values against the namespace
(:mod:`sonolatent.params.namespace`) and hands the result to a :class:`ControlTarget`. The
real-time engine implements :class:`ControlTarget`; :class:`RecordingTarget`
is a small in-memory implementation for tests and ``--no-audio`` dry runs.

Rules for implementers
----------------------
- ``submit`` never blocks (no locks held across audio work, no I/O): the
  server's receive thread calls it for every packet. ``changes`` are the
  ``(address, values)`` pairs of ONE packet or bundle, already converted to
  the parameter's types (floats for ``f``, ints for ``i``, ``str`` for ``s``)
  and clamped to range; apply them together, in one audio block. ``/norm``
  forms arrive already mapped to the base address. ``at`` is a wall-clock
  time (``time.time()`` base) to apply at, or ``None`` for as soon as
  possible; it is at most ``max_future`` seconds ahead. Actions
  (``action=True`` params: ``/sono/play``, ``/sono/stop``, slot loads, patch
  save/load, ``/sono/quit``) are submitted the same way; an action sent
  without arguments arrives with its default (``/sono/play`` -> ``(1.0,)``,
  ``/sono/stop`` -> ``()``).
- The server handles ``/sono/info``, ``/sono/status``, ``/sono/ping``,
  ``/sono/subscribe`` and ``/sono/unsubscribe`` itself: they are never
  submitted.
- ``value`` must not block either: read a snapshot (a dict replaced or
  updated under the GIL is fine). Return ``None`` for an address without a
  stored value (actions).
- ``info`` and ``status`` return flat dicts of str/int/float values.
- Errors found later (a slot load failing on the producer thread) are
  answered through the :class:`Replier` given to ``attach_replier``:
  ``replier.reply_error(sender, address, reason)``. ``sender`` is the one
  passed to ``submit`` (it may be ``None``: then there is no one to tell).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Protocol

from .. import __version__
from ..params.namespace import Param, build_namespace
from ..params.values import initial_values, linked_values

Sender = tuple  # (host, port) or an IPv6 (host, port, flow, scope) tuple, as socket.recvfrom gives it
Change = tuple  # (address: str, values: tuple)


class Replier(Protocol):
    """Sends OSC messages back to a client (the server implements this)."""

    def reply(self, sender: Sender | None, address: str, values: tuple, types: str | None = None) -> None:
        """Send ``address values`` to ``sender``. ``types`` (e.g. ``"fi"``) fixes the OSC types; thread-safe, never blocks."""

    def reply_error(self, sender: Sender | None, address: str, reason: str) -> None:
        """Send ``/sono/error address reason`` to ``sender`` and count it. Thread-safe, never blocks."""


class ControlTarget(Protocol):
    """What the control surface drives (the engine, or :class:`RecordingTarget`)."""

    namespace: dict[str, Param]

    def submit(self, changes: list[Change], at: float | None, sender: Sender | None) -> None:
        """Apply ``changes`` (from one packet/bundle) together, at wall-clock ``at`` or as soon as possible."""

    def value(self, address: str) -> tuple | None:
        """The current value of ``address`` (a snapshot read; never blocks)."""

    def info(self) -> dict:
        """version, latent_dim, model_rate, device_rate, block_size, delay_samples."""

    def status(self) -> dict:
        """Counters: underflows, blocks, render time, buffer depth..."""

    def attach_replier(self, replier: Replier | None) -> None:
        """Called by the server on start (and with ``None`` on stop) so the target can answer later."""


class RecordingTarget:
    """An in-memory :class:`ControlTarget`: stores the latest values and every submit.

    Changes are applied at once (``at`` is only recorded). Actions have simple
    effects so a dry run answers sensibly: play/stop set ``/sono/playing``,
    slot load/clear set ``/sono/slot/K/name``. Thread-safe.
    """

    def __init__(self, namespace: dict[str, Param] | None = None, info: dict | None = None, history: int = 100_000):
        self.namespace = namespace if namespace is not None else build_namespace()
        self._values = initial_values(self.namespace)
        self._cond = threading.Condition()
        self.history: deque = deque(maxlen=history)   # (changes, at, sender, time received)
        self.actions: deque = deque(maxlen=history)   # (address, values, at, sender)
        self.n_submits = 0
        self.n_changes = 0
        self.replier: Replier | None = None
        self.quit_event = threading.Event()   # set by /sono/quit
        latent_dim = len(self.namespace["/sono/latent"].types) if "/sono/latent" in self.namespace else 0
        self._info = {"version": __version__, "engine": "recording", "latent_dim": latent_dim,
                      "model_rate": 44100, "device_rate": 44100, "block_size": 512, "delay_samples": 0}
        self._info.update(info or {})

    # -- ControlTarget
    def submit(self, changes: list[Change], at: float | None, sender: Sender | None) -> None:
        with self._cond:
            self.history.append((list(changes), at, sender, time.time()))
            self.n_submits += 1
            for address, values in changes:
                self.n_changes += 1
                p = self.namespace.get(address)
                if p is not None and p.action:
                    self.actions.append((address, values, at, sender))
                    self._act(address, values)
                else:
                    self._values.update(linked_values(address, tuple(values), self._values.get))
            self._cond.notify_all()

    def value(self, address: str) -> tuple | None:
        return self._values.get(address)

    def info(self) -> dict:
        return dict(self._info)

    def status(self) -> dict:
        return {"submits": self.n_submits, "changes": self.n_changes}

    def attach_replier(self, replier: Replier | None) -> None:
        self.replier = replier

    # -- helpers
    def _act(self, address: str, values: tuple) -> None:
        if address == "/sono/quit":
            self.quit_event.set()
        elif address == "/sono/play":
            self._values["/sono/playing"] = (1,)
        elif address == "/sono/stop":
            self._values["/sono/playing"] = (0,)
        elif address.startswith("/sono/slot/") and address.endswith("/load"):
            self._values[address[: -len("load")] + "name"] = (values[0],)
        elif address.startswith("/sono/slot/") and address.endswith("/clear"):
            self._values[address[: -len("clear")] + "name"] = ("",)

    def wait_for(self, predicate: Callable[["RecordingTarget"], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate(self)`` is true (re-checked after every submit); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)
