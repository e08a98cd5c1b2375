"""The exceptions the library raises on purpose.

Every problem a user can cause (a file we cannot read, a checkpoint that does not match its card)
surfaces as a subclass of :class:`MetaSegError` whose message says what was wrong and what is
accepted, so the apps can show it as-is instead of a decoder's traceback.
"""

from __future__ import annotations


class MetaSegError(Exception):
    """Base class of every error the library raises deliberately."""


class InputError(MetaSegError, ValueError):
    """An image, volume or array the library cannot use (wrong type, truncated, empty, too big)."""


class UnsupportedFormatError(InputError):
    """Content that is not any format the reader knows (detected from the bytes, not the name)."""


class TooLargeError(InputError):
    """A file, slice or volume over the configured :class:`~metaseg_viewer.io.ReadLimits`."""


class CheckpointError(MetaSegError):
    """Weights or a model card that are missing, corrupt, tampered with or inconsistent."""
