"""Small utilities shared by the training stages (tokenizer, pretraining).

The API is deliberately small (the device: :func:`cortexscale.models.device.setup_device`):

- :func:`set_seed` seeds Python, NumPy and torch (CPU and CUDA).
- :func:`autocast_context` is a no-op for ``fp32`` and ``torch.autocast`` for ``bf16``/``fp16``.
- :func:`grad_scaler` is a ``torch.amp.GradScaler`` that is enabled only for ``fp16``.
- :func:`reset_peak_memory` / :func:`peak_memory_mb` measure peak memory (CUDA allocator on a
  GPU, the process's max RSS on CPU).
- :func:`rng_state` / :func:`set_rng_state` capture and restore every RNG as plain tensors and
  ints, so a checkpoint holding them loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import random
import resource
import sys
from typing import Any

import numpy as np
import torch

from cortexscale.errors import InputError

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and all CUDA devices).

    Parameters
    ----------
    seed : int
        Non-negative seed.
    """
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, found {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 -- legacy global RNG, for third-party code
    torch.manual_seed(seed)  # also seeds every CUDA device


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, found {precision!r}")


def precision_dtype(precision: str) -> torch.dtype:
    """Return the torch dtype of a precision name (``fp32``, ``bf16``, ``fp16``)."""
    _check_precision(precision)
    return _DTYPES[precision]


def autocast_context(
    precision: str, device: str | torch.device
) -> contextlib.AbstractContextManager[Any]:
    """Return the mixed-precision context for a forward pass.

    Parameters
    ----------
    precision : {"fp32", "bf16", "fp16"}
        ``fp32`` gives a no-op context; ``bf16``/``fp16`` give ``torch.autocast`` with that
        dtype (supported on CPU and CUDA).
    device : str or torch.device
        Device the forward pass runs on; its type selects the autocast backend.

    Returns
    -------
    ctx : context manager
    """
    _check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: str | torch.device) -> torch.amp.GradScaler:
    """Return a ``GradScaler`` that is enabled only for ``fp16`` (a no-op otherwise).

    fp16 gradients underflow without loss scaling on any device, so the scaler is on for
    fp16 on CPU as on CUDA; bf16 has float32's exponent range and needs none. Its
    ``scale``/``step``/``update``/``unscale_`` and ``state_dict`` work in every case, so
    the training loop is the same for all precisions.
    """
    _check_precision(precision)
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def reset_peak_memory(device: str | torch.device) -> None:
    """Reset the CUDA peak-memory counter (no-op on CPU, where max RSS cannot be reset)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_memory_mb(device: str | torch.device) -> float:
    """Return peak memory in MiB: CUDA max allocated on a GPU, process max RSS on CPU.

    On CPU the value is the whole process's high-water mark since it started (it includes
    Python, torch and data), so compare it only between runs in fresh processes.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def rng_state() -> dict[str, Any]:
    """Capture the Python, NumPy, torch CPU and CUDA RNG states.

    Returns
    -------
    state : dict
        Only tensors, lists, ints, floats and strings, so it can be stored in a checkpoint
        that loads with ``torch.load(..., weights_only=True)``. Restore with
        :func:`set_rng_state`.
    """
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states captured by :func:`rng_state`."""
    for key in ("python", "numpy", "torch"):
        if key not in state:
            raise InputError(f"rng state: missing key {key!r}; found {sorted(state)}")
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
