"""Data-parallel training with ``torch.distributed`` (DDP), launched by torchrun.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` reads them and joins
the process group (NCCL on GPUs, gloo on the CPU). Without them (or with ``WORLD_SIZE=1``)
every function here is a no-op, so the training loop is the same for one process.

How the batch is split: every process draws the same seeded stream of clip indices and
keeps its own contiguous slice of each micro-batch, so ``W`` processes with micro-batch
``m`` see exactly the clips one process sees with micro-batch ``W * m``; DDP averages the
gradients, which then equal the one-process gradients up to floating-point summation order.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "any_flag", "barrier", "mean", "no_sync", "setup", "teardown", "wrap"]


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and the device string of this process."""

    rank: int
    world: int
    device: str


def _env_int(key: str, default: int) -> int:
    raw = os.environ.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"environment variable {key}: expected an int, found {raw!r}") from err


def setup(device: str) -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1.

    Parameters
    ----------
    device : str
        The requested device; ``"cuda"`` becomes ``cuda:LOCAL_RANK`` under torchrun.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo(0, 1, device)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = torch.device(device)
    if dev.type == "cuda":
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, device)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def wrap(model: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` on ``dev``."""
    ids = [dev.index] if dev.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def no_sync(model: torch.nn.Module, skip: bool) -> contextlib.AbstractContextManager[Any]:
    """Skip the gradient all-reduce of a micro-step that is not the last of a step."""
    if skip and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def any_flag(flag: bool, dev: torch.device) -> bool:
    """True on every process if ``flag`` is true on any (e.g. a stop signal)."""
    if not active():
        return flag
    t = torch.tensor(int(flag), device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def mean(value: float, dev: torch.device) -> float:
    """Mean of ``value`` over the processes."""
    if not active():
        return value
    t = torch.tensor(value, dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def barrier() -> None:
    if active():
        dist.barrier()


def teardown() -> None:
    """Leave the process group (idempotent)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
