"""The errors a user can act on: a bad config, a bad input file, a run that cannot go on.

Every user-facing error derives from :class:`CortexscaleError`; the CLI catches that base
alone, prints its message on one line and exits 2. Anything else is a bug and keeps its
traceback. The subclasses also derive from the built-in exception a caller would expect
(``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so library callers that catch
those keep working.

Messages follow one wording: what (the file or the key), what was expected, what was found,
e.g. ``"frames.h5: attribute fps: expected a positive number, found 0"``.
"""

from __future__ import annotations

__all__ = [
    "CortexscaleError",
    "ConfigError",
    "InputError",
    "MissingInputError",
    "TrainingError",
]


class CortexscaleError(Exception):
    """Base of the errors the CLI reports as a one-line message with exit status 2."""


class ConfigError(CortexscaleError, ValueError):
    """A study configuration that cannot be run; the message says why and where."""


class InputError(CortexscaleError, ValueError):
    """An input file (dataset, cache, checkpoint, table) that cannot be used as it is."""


class MissingInputError(CortexscaleError, FileNotFoundError):
    """An input file or folder that is not there."""


class TrainingError(CortexscaleError, RuntimeError):
    """A run that cannot go on: NaN loss, out of memory, incompatible checkpoint."""
