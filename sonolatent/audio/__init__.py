"""Audio I/O and features: reading/writing sound files and the one mel definition."""

from .io import read_audio, write_audio, AudioInfo, SUPPORTED_EXTENSIONS
from .mel import MelConfig, MelSpectrogram

__all__ = ["read_audio", "write_audio", "AudioInfo", "SUPPORTED_EXTENSIONS", "MelConfig", "MelSpectrogram"]
