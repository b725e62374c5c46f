"""The running bridge: MIDI in (port or file) -> parser -> mapper -> OSC out.

Threads: rtmidi's callback only queues raw bytes; the control server only
queues requests; one thread (the caller of :meth:`Bridge.run_live` or
:meth:`Bridge.play_file`) parses, maps, sends and saves, so the mapper needs
no locks. Torch is never imported here.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import mido

from ..errors import SonolatentError
from .control import ControlServer
from .mapper import Mapper
from .learn import save_learned
from .mapping import Mapping
from .osc_out import OscSender
from .parser import MidiParser
from .player import load_midi_events, play_events


def stderr_log(text: str) -> None:
    print(f"sonolatent bridge: {text}", file=sys.stderr, flush=True)


@dataclass
class BridgeOptions:
    mapping_path: Path | None
    destinations: list[tuple[str, int]]
    control: tuple[str, int] | None = None
    allow: list[str] | None = None      # --allow: networks the control port accepts besides loopback
    loopback: bool = True               # --no-loopback: not loopback itself
    learn: str | None = None
    verbose: bool = False
    probe_interval: float = 0.5
    log: Callable[[str], None] = field(default=stderr_log)


class Bridge:
    """One bridge session. Use :meth:`run_live` (with a port) or :meth:`play_file`."""

    def __init__(self, mapping: Mapping, options: BridgeOptions):
        self.options = options
        self.log = options.log
        self.mapper = Mapper(mapping)
        self.mapper.on_learn = self._learned
        self.parser = MidiParser()
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.midi_in = 0
        self.stopping = threading.Event()
        self._learn_asker = None
        self.sender = OscSender(options.destinations, self.log, options.probe_interval)
        self.control: ControlServer | None = None
        try:
            if options.control is not None:
                self.control = ControlServer(*options.control, self.requests, allow=options.allow,
                                             loopback=options.loopback)
            if options.learn:
                self.mapper.arm_learn(options.learn)
        except SonolatentError:
            self.sender.close()
            raise

    # -- per message work (one thread)

    def handle_message(self, msg: mido.Message) -> None:
        self.midi_in += 1
        out = self.mapper.handle(msg)
        if len(out) > 1 and self.mapper.together:   # MPE: a note-on and its expression in one bundle
            self.sender.send_together(out)
        else:
            for address, args in out:
                self.sender.send(address, args)
        if self.options.verbose:
            shown = "; ".join(f"{a} {' '.join(map(_fmt, args))}".rstrip() for a, args in out) or "(nothing)"
            self.log(f"{_describe(msg)} -> {shown}")

    def handle_bytes(self, data) -> None:
        for msg in self.parser.feed_event(data):
            self.handle_message(msg)

    def _learned(self, mapping: Mapping, description: str) -> None:
        where = ""
        path = self.options.mapping_path
        if path is not None:
            try:
                backup = save_learned(mapping, path)
                where = f"; saved {path}" + (f" (previous: {backup.name})" if backup else "")
            except SonolatentError as e:
                where = f"; NOT saved: {e}"
        self.log(f"learned {description}{where}")
        if self.control is not None and self._learn_asker is not None:
            asker, address = self._learn_asker
            self.control.reply(asker, "/sono/midi/learned", address, description)

    def _handle_request(self, kind: str, arg, sender) -> None:
        if kind == "learn":
            try:
                self.mapper.arm_learn(arg)
            except SonolatentError as e:
                self.log(str(e))
                if self.control is not None:
                    self.control.reply(sender, "/sono/midi/error", str(e))
                return
            self._learn_asker = (sender, arg)
            self.log(f"MIDI learn: move a control to bind it to {arg}")
            if self.control is not None:
                self.control.reply(sender, "/sono/midi/learn/armed", arg)
        elif kind == "cancel":
            self.mapper.learner.cancel()
            if self.control is not None:
                self.control.reply(sender, "/sono/midi/learn/cancelled")

    def _drain(self, timeout: float | None = None) -> None:
        """Handle queued MIDI bytes and control requests; wait up to ``timeout`` for the first."""
        try:
            item = self.requests.get(timeout=timeout) if timeout else self.requests.get_nowait()
        except queue.Empty:
            return
        while True:
            if item[0] == "midi":
                self.handle_bytes(item[1])
            else:
                self._handle_request(*item)
            try:
                item = self.requests.get_nowait()
            except queue.Empty:
                return

    # -- running

    def _start(self) -> None:
        self.sender.start()
        if self.control is not None:
            self.control.start()

    def _finish(self) -> None:
        for address, args in self.mapper.panic():
            self.sender.send(address, args)
        if self.control is not None:
            self.control.close()
        self.sender.close()
        self.log(self.stats_line())

    def _control_text(self) -> str:
        if self.control is None:
            return ""
        return f"; control on {self.control.host}:{self.control.port}"

    def _dest_text(self) -> str:
        return ", ".join(d.label for d in self.sender.destinations)

    def run_live(self, open_input: Callable[[Callable], object]) -> int:
        """Open the input with ``open_input(on_bytes)`` and run until SIGINT/SIGTERM."""
        midi = open_input(lambda data: self.requests.put(("midi", list(data))))
        old = _install_stop_handlers(self.stopping)
        try:
            self._start()
            self.log(f"MIDI in {midi.description} -> OSC {self._dest_text()}{self._control_text()}; "
                     "Ctrl-C stops")
            while not self.stopping.is_set():
                self._drain(timeout=0.1)
        except KeyboardInterrupt:
            pass
        finally:
            midi.close()
            self._drain()
            _restore_handlers(old)
            self._finish()
        return 0

    def play_file(self, path: Path, freewheel: bool = False) -> int:
        """Play ``path`` through the mapping; 0 when it played to the end.

        A file is a finite job: cut short by SIGTERM it returns 143 (128 + 15);
        Ctrl-C's ``KeyboardInterrupt`` goes on to the caller (the CLI exits 130).
        Either way held keys get their ``/sono/stop`` and the summary is logged.
        """
        events = load_midi_events(path)
        old = _install_stop_handlers(self.stopping)
        try:
            self._start()
            length = events[-1][0] if events else 0.0
            self.log(f"playing {path} ({len(events)} events, {length:.2f} s"
                     f"{', freewheel' if freewheel else ''}) -> OSC {self._dest_text()}{self._control_text()}")

            def idle() -> bool:
                self._drain()
                return self.stopping.is_set()

            played = play_events(events, self.handle_message, freewheel=freewheel, idle=idle)
        finally:
            _restore_handlers(old)
            self._finish()
        return 128 + signal.SIGTERM if played < len(events) else 0

    def stats_line(self) -> str:
        ignored = Counter(self.mapper.ignored) + Counter(self.parser.ignored)
        text = f"{self.midi_in} MIDI messages in, {self.sender.sent} OSC messages out"
        if ignored:
            text += "; ignored: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(ignored.items()))
        lost = sum(d.lost for d in self.sender.destinations)
        if lost:
            text += f"; {lost} datagrams not delivered"
        return text


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)


def _describe(msg: mido.Message) -> str:
    if msg.type == "sysex":
        return f"sysex ({len(msg.data)} bytes)"
    return str(msg.copy(time=0)).replace(" time=0", "") if hasattr(msg, "channel") else msg.type


def _install_stop_handlers(event: threading.Event):
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        event.set()

    return signal.signal(signal.SIGTERM, stop)


def _restore_handlers(old) -> None:
    if old is not None:
        signal.signal(signal.SIGTERM, old)
