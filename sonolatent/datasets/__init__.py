"""Dataset builders (soundfont renders, user folders) and the manifest format."""

from .manifest import load_manifest, load_summary

__all__ = ["load_manifest", "load_summary"]
