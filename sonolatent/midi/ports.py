"""MIDI input ports through python-rtmidi, delivering raw bytes.

mido's rtmidi backend parses bytes itself and silently drops what it cannot
parse; the bridge wants the raw bytes (to count garbage), so it talks to
python-rtmidi directly, with the same API choice mido offers
(``mido.Backend('mido.backends.rtmidi/UNIX_JACK')`` is API_UNIX_JACK here).
The callback runs on rtmidi's thread (for JACK: the JACK process thread), so
it only queues the bytes; parsing and sending happen elsewhere.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable

from ..errors import SonolatentError

APIS = ("alsa", "jack")
CLIENT_NAME = "sonolatent-bridge"


def default_api() -> str | None:
    """ALSA on Linux; elsewhere rtmidi's own default (CoreMIDI, WinMM)."""
    return "alsa" if sys.platform.startswith("linux") else None


def _rtmidi():
    try:
        import rtmidi
    except ImportError as e:  # pragma: no cover - a dependency
        raise SonolatentError(f"python-rtmidi is not installed ({e})") from None
    return rtmidi


def _api_id(api: str | None) -> int:
    rtmidi = _rtmidi()
    if api is None:
        return rtmidi.API_UNSPECIFIED
    ident = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK}[api]
    if ident not in rtmidi.get_compiled_api():
        raise SonolatentError(f"--api {api}: this python-rtmidi was built without {api.upper()} support")
    return ident


def _hint(api: str | None) -> str:
    if api == "jack":
        return "start a JACK server first (jackd, or qjackctl)"
    if api == "alsa":
        return "the ALSA sequencer (/dev/snd/seq, kernel module snd-seq) is missing here; try --api jack"
    return "no MIDI system available"


def _api_label(api: str | None) -> str:
    return {"alsa": "ALSA", "jack": "JACK"}.get(api or "", "the")


@contextmanager
def quiet_stderr(enabled: bool = True):
    """Send what C libraries print on fd 2 (libasound, libjack chatter) to /dev/null for a moment.

    Only used while opening ports, before the bridge starts other threads; our
    own one-line error says what went wrong.
    """
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def open_midi_in(api: str | None, client_name: str = CLIENT_NAME, quiet: bool = True):
    """An rtmidi.MidiIn for ``api`` (alsa, jack or None), or one SonolatentError line."""
    rtmidi = _rtmidi()
    try:
        with quiet_stderr(quiet):
            midi_in = rtmidi.MidiIn(rtapi=_api_id(api), name=client_name, queue_size_limit=4096)
    except rtmidi.RtMidiError as e:
        raise SonolatentError(f"cannot open {_api_label(api)} MIDI: {str(e).rstrip('.')}; {_hint(api)}") from None
    midi_in.ignore_types(sysex=False, timing=False, active_sense=True)
    return midi_in


def list_inputs(api: str | None, quiet: bool = True) -> list[str]:
    midi_in = open_midi_in(api, client_name=CLIENT_NAME + "-list", quiet=quiet)
    try:
        return list(midi_in.get_ports())
    finally:
        midi_in.delete()


def resolve_port(wanted: str, available: list[str]) -> int:
    """Index of ``wanted``: an exact name, else the one name containing it (case-insensitive)."""
    if wanted in available:
        return available.index(wanted)
    low = wanted.lower()
    hits = [i for i, name in enumerate(available) if low in name.lower()]
    if len(hits) == 1:
        return hits[0]
    shown = ", ".join(repr(n) for n in available) or "none"
    if len(hits) > 1:
        raise SonolatentError(f"--in {wanted!r} matches several MIDI inputs: "
                              + ", ".join(repr(available[i]) for i in hits))
    raise SonolatentError(f"--in {wanted!r}: no such MIDI input; available: {shown}")


class MidiInput:
    """An open input port calling ``on_bytes(list_of_ints)`` for every event."""

    def __init__(self, api: str | None, port: str | None, virtual: bool,
                 on_bytes: Callable[[list[int]], None], client_name: str = CLIENT_NAME,
                 virtual_name: str = "midi_in", quiet: bool = True):
        self.api = api
        self._in = open_midi_in(api, client_name, quiet)
        self._in.set_callback(lambda event, _data: on_bytes(event[0]))
        rtmidi = _rtmidi()
        try:
            self._open(port, virtual, client_name, virtual_name, quiet)
        except rtmidi.RtMidiError as e:
            self.close()
            raise SonolatentError(f"cannot open MIDI input: {str(e).rstrip('.')}; {_hint(api)}") from None
        except SonolatentError:
            self.close()
            raise

    def _open(self, port: str | None, virtual: bool, client_name: str, virtual_name: str, quiet: bool) -> None:
        api = self.api
        with quiet_stderr(quiet):
            if virtual:
                self._in.open_virtual_port(virtual_name)
                self.name = f"{client_name}:{virtual_name}"
                self.description = f"virtual port {self.name!r}"
            else:
                available = list(self._in.get_ports())
                if port is None:
                    usable = [i for i, n in enumerate(available) if "midi through" not in n.lower()]
                    if not usable:
                        raise SonolatentError(f"no MIDI input to listen to ({api or 'default'} API found: "
                                              f"{', '.join(map(repr, available)) or 'none'}); "
                                              "use --in PORT, or --virtual to make a port others connect to")
                    index = usable[0]
                else:
                    index = resolve_port(port, available)
                self._in.open_port(index, name=virtual_name)
                self.name = available[index]
                self.description = f"{self.name!r}"

    def close(self) -> None:
        rtmidi = _rtmidi()
        try:
            self._in.cancel_callback()
            self._in.close_port()
            self._in.delete()
        except rtmidi.RtMidiError:
            pass  # closing a port the MIDI system already dropped
