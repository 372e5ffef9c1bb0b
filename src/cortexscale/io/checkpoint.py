"""Loading torch checkpoints with errors that name the file.

``torch.load`` reports a truncated or foreign file as "PytorchStreamReader failed reading zip
archive", an ``EOFError`` or an unpickling error, none of which says which file; every
checkpoint is read through :func:`load_checkpoint`, which names the path and what was expected.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_checkpoint"]


def load_checkpoint(path: str | os.PathLike, expected: str,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``torch.load(..., weights_only=True)``.

    Parameters
    ----------
    path : path-like
    expected : str
        What the file should be, for the error message (e.g. "a GPT model.pt").
    map_location : str or torch.device, optional

    Returns
    -------
    ckpt : dict

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is truncated, corrupt, not a torch file, holds objects that
        ``weights_only`` refuses, or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected {expected}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            OSError) as err:
        if isinstance(err, PermissionError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path} is not a readable torch checkpoint (truncated or corrupt? "
            f"{path.stat().st_size} bytes); expected {expected}; torch says: {first}"
        ) from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected {expected} (a dict), found {type(ckpt).__name__}")
    return ckpt
