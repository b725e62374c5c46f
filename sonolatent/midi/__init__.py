"""MIDI-to-OSC bridge: play the daemon from MIDI controllers and MIDI files.

Never imports torch. The pieces, each usable alone:

- :mod:`.mapping` – TOML mapping files: :func:`load_mapping`, :func:`save_mapping`, :class:`Mapping`.
- :mod:`.mapper` – :class:`Mapper`: ``handle(mido.Message) -> [(address, args)]``, no I/O.
- :mod:`.parser` – :class:`MidiParser`: raw bytes -> messages, counting garbage.
- :mod:`.learn` – MIDI learn (:class:`Learner`, :func:`learn_range`).
- :mod:`.osc_out` – :class:`OscSender`: UDP out, reports a silent daemon once.
- :mod:`.player` – MIDI files in real time (absolute deadlines) or freewheeling.
- :mod:`.ports`, :mod:`.control`, :mod:`.bridge` – rtmidi input, the control port, the running bridge.
"""

from .learn import Learner, learn_range
from .mapper import Mapper, apply_curve, bend_to_unit, shape
from .mapping import (AftertouchMap, CCMap, Mapping, NotesConfig, NRPNMap, OscConfig, PitchbendConfig,
                      ProgramConfig, dumps_mapping, load_mapping, read_mapping_text, save_mapping)
from .parser import MidiParser
from .player import load_midi_events, play_events

__all__ = [
    "AftertouchMap", "CCMap", "Learner", "Mapper", "Mapping", "MidiParser", "NRPNMap", "NotesConfig",
    "OscConfig", "PitchbendConfig", "ProgramConfig", "apply_curve", "bend_to_unit", "dumps_mapping",
    "learn_range", "load_mapping", "load_midi_events", "play_events", "read_mapping_text", "save_mapping",
    "shape",
]
