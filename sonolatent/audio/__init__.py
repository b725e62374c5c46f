"""Audio I/O and features: reading/writing sound files and the one mel definition.

``sonolatent.audio.io`` is torch-free; the mel (``sonolatent.audio.mel``) needs
torch and is imported only when asked for.
"""

from .io import SUPPORTED_EXTENSIONS, AudioInfo, read_audio, write_audio

__all__ = ["read_audio", "write_audio", "AudioInfo", "SUPPORTED_EXTENSIONS", "MelConfig", "MelSpectrogram"]


def __getattr__(name):
    if name in ("MelConfig", "MelSpectrogram"):
        from . import mel

        return getattr(mel, name)
    raise AttributeError(name)
