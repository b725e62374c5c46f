"""User-facing errors.

Every problem a user can cause (a bad file, a bad option, a broken checkpoint)
raises :class:`SonolatentError` with one clear line naming the file or option
and the problem. The CLI prints that line and exits non-zero; it never shows a
traceback for these.
"""


class SonolatentError(Exception):
    """A problem with the user's input, reported as one line."""


class AudioFileError(SonolatentError):
    """An audio file cannot be used (unreadable, empty, silent, NaN...)."""


class CheckpointError(SonolatentError):
    """A checkpoint folder is missing pieces, corrupted or mismatched."""


class ConfigError(SonolatentError):
    """A configuration, patch, score or mapping file is invalid."""
