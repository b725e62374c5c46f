"""The real-time engine: control state -> latents -> StreamingSynth, a producer thread, a lock-free ring, a device callback."""

from .core import EngineCore
from .ring import SPSCRing
from .playhead import Playhead, LOOP_OFF, LOOP, PING_PONG
from .slots import SlotSound, SampleCache, resolve_sample

__all__ = ["EngineCore", "SPSCRing", "Playhead", "LOOP_OFF", "LOOP", "PING_PONG", "SlotSound",
           "SampleCache", "resolve_sample"]
