"""sonolatent: an audio latent-synthesis instrument.

WAV -> mel -> VAE encoder -> latent trajectory -> (morph / OSC / MIDI control)
-> VAE decoder -> mel -> vocoder -> audio.
"""

__version__ = "0.1.0"
