"""Reading HDF5 files with errors that name the file.

h5py reports a truncated or corrupt file as a bare ``OSError`` ("Unable to synchronously open
file (truncated file: eof = ...)") that does not say which file; every stage opens its HDF5
inputs through :func:`open_h5` so that the message names the path and what was expected.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import h5py

from cortexscale.errors import InputError, MissingInputError

__all__ = ["open_h5"]


@contextlib.contextmanager
def open_h5(path: str | os.PathLike, expected: str = "an HDF5 file") -> Iterator[h5py.File]:
    """Open an HDF5 file for reading; a truncated or corrupt file names itself.

    h5py reports a damaged file as a bare ``OSError`` that does not name the file; this
    raises a ``ValueError`` naming ``path``, what was expected and the HDF5 message,
    also for errors raised while reading datasets inside the ``with`` block.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist; expected {expected}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(
            f"{path} is not a readable HDF5 file (truncated or corrupt? {path.stat().st_size} "
            f"bytes); expected {expected}; HDF5 says: {err}"
        ) from err
    try:
        yield f
    except OSError as err:
        if type(err) is not OSError:  # e.g. FileNotFoundError of another file: not ours
            raise
        raise InputError(
            f"{path}: reading failed (truncated or corrupt file?); expected {expected}; "
            f"HDF5 says: {err}"
        ) from err
    finally:
        f.close()
