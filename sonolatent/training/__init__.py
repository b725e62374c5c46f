"""Training loops for the VAE and the vocoder. Imported by the CLI only."""
