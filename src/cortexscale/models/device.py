"""The torch device of a stage: validated, with its CPU thread count set.

Shared by training (:mod:`cortexscale.train`) and feature extraction
(:mod:`cortexscale.features`), which are independent of each other.
"""

from __future__ import annotations

import torch

__all__ = ["setup_device"]


def setup_device(device: str = "cpu", threads: int = 1) -> torch.device:
    """Validate ``device``, set torch's intra-op thread count, and return the device.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    threads : int
        Number of CPU threads torch may use (``torch.set_num_threads``), >= 1.

    Returns
    -------
    device : torch.device
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads: expected an int >= 1, found {threads!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', found {device!r}") from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', found {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device: {device!r} requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible"
            )
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.set_num_threads(threads)
    return dev
