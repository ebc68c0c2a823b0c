"""Errors a user can fix. The CLI prints them as one line, without a traceback.

Every message names the argument, the value, and the fix (docs/design.md, "Conventions").
"""

from __future__ import annotations


class ImagicKitError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""


class InputImageError(ImagicKitError):
    """The input image cannot be read or is not acceptable."""


class ConfigError(ImagicKitError):
    """An unknown method, preset or config key, or a value out of range."""


class ModelNotAvailableError(ImagicKitError):
    """A model cannot be found locally and the hub cannot be reached."""


class ArtifactMismatchError(ImagicKitError):
    """Saved artifacts were made by another method, model, input or fit setting."""


class NonFiniteLossError(ImagicKitError):
    """An optimisation produced NaN or infinite loss."""


class NonFiniteOutputError(ImagicKitError):
    """Sampling produced NaN or infinite pixels (a black image would be written otherwise)."""


class OutOfMemoryError(ImagicKitError):
    """The device ran out of memory."""
