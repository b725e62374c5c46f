"""Audio I/O and features: reading/writing sound files and the one mel definition.

``sonolatent.audio.io`` is torch-free; the mel (``sonolatent.audio.mel``) needs
torch: import it from there.
"""

from .io import SUPPORTED_EXTENSIONS, AudioInfo, read_audio, write_audio

__all__ = ["read_audio", "write_audio", "AudioInfo", "SUPPORTED_EXTENSIONS"]
