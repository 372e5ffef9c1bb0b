"""Loading torch checkpoints with errors that name the file.

``torch.load`` reports a truncated or foreign file as "PytorchStreamReader failed reading zip
archive", an ``EOFError`` or an unpickling error, none of which says which file; every
checkpoint is read through :func:`load_checkpoint`, which names the path and what was expected.
A file that ``weights_only=True`` refuses because it pickles objects other than tensors and
plain containers (a foreign or malicious pickle) is reported as refused, not as truncated;
:func:`refused_global` finds the refused object in torch's message.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

from cortexscale.errors import InputError, MissingInputError

__all__ = ["REFUSED", "load_checkpoint", "refused_global"]

#: The second half of the message about a pickle that ``weights_only=True`` refuses.
REFUSED = ("refused: it holds pickled objects other than tensors{what}; cortexscale loads "
           "only safetensors or weights-only torch checkpoints (torch.load(weights_only=True)) "
           "and never unpickles other objects")

_GLOBAL = re.compile(r"unsupported global:?\s*(?:GLOBAL\s+)?([\w.]+)", re.IGNORECASE)


def refused_global(err: BaseException) -> str | None:
    """The object a ``weights_only`` unpickler refused (``posix.system``), else ``None``.

    ``None`` also when the error is not such a refusal (truncated or corrupt data).
    """
    text = str(err)
    if "Weights only load failed" not in text:
        return None
    m = _GLOBAL.search(text)
    return m.group(1) if m else None


def _first_line(err: BaseException) -> str:
    """The informative line of torch's message (not its advice to set weights_only=False)."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    elif "Weights only load failed" in text:
        text = "not a weights-only torch checkpoint"
    return text.splitlines()[0] if text else type(err).__name__


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
        The file is truncated, corrupt, not a torch file, or not a dict; or it holds
        pickled objects that ``weights_only`` refuses (the message says "refused" and names
        the object).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist; expected {expected}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            OSError, struct.error) as err:
        if isinstance(err, PermissionError):
            raise
        refused = refused_global(err)
        if refused is not None:
            raise InputError(f"{path}: expected {expected}; "
                             + REFUSED.format(what=f" ({refused})")) from err
        first = _first_line(err)
        raise InputError(
            f"{path} is not a readable torch checkpoint (truncated or corrupt? "
            f"{path.stat().st_size} bytes); expected {expected}; torch says: {first}"
        ) from err
    if not isinstance(ckpt, dict):
        raise InputError(f"{path}: expected {expected} (a dict), found {type(ckpt).__name__}")
    return ckpt
