"""Stopping and resuming training runs: signals, exit codes, checkpoints.

- :class:`StopSignals` turns SIGTERM and SIGUSR2 into a flag that the training loop reads at
  the end of each optimizer step (the step in flight finishes, then the run checkpoints).
- :class:`Interrupted` is the ``SystemExit`` a checkpointed run raises; its code
  :data:`EXIT_REQUEUE` (75, ``EX_TEMPFAIL`` of ``sysexits.h``) tells a retry or requeue that
  the run stopped cleanly and will resume (docs/decisions.md, "Pretraining").
- :func:`save_checkpoint` writes the state of a run (its model, optimizer, scheduler and
  scaler, every RNG, and plain values) atomically; :func:`restore_checkpoint` loads it back
  into the same objects, after :func:`check_compatible` refused a checkpoint made for another
  configuration, naming every argument that differs.

torch is imported inside the functions: the CLI imports :class:`Interrupted` for every stage.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from cortexscale.errors import TrainingError

__all__ = ["EXIT_REQUEUE", "Interrupted", "StopSignals", "TrainingError", "check_compatible",
           "restore_checkpoint", "save_checkpoint"]

#: Exit status of a run that checkpointed on SIGTERM/SIGUSR2 and can resume (EX_TEMPFAIL).
EXIT_REQUEUE = 75
SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class Interrupted(SystemExit):
    """Raised after a signal-triggered checkpoint; exits with :data:`EXIT_REQUEUE`."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_REQUEUE)
        self.message = message

    def __str__(self) -> str:
        return self.message


class StopSignals:
    """Context manager: SIGTERM/SIGUSR2 set :attr:`received` instead of killing the process.

    On exit the previous handlers come back. :meth:`forward` calls the handler that was
    installed before (e.g. submitit's checkpoint-and-requeue handler), if it was a Python
    function, and returns whether it did.
    Handlers can only be installed from the main thread; elsewhere this is a no-op.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def forward(self) -> bool:
        """Restore the old handlers and call the old one of the received signal."""
        sig = self.received
        old = self._old.get(sig) if sig is not None else None
        self.__exit__()
        if callable(old):
            old(sig, None)
            return True
        return False


def check_compatible(found: dict[str, Any], expected: dict[str, Any], path: Any) -> None:
    """Raise :class:`TrainingError` naming every key whose value differs.

    Parameters
    ----------
    found : dict
        Arguments stored in the checkpoint (model arguments, training settings).
    expected : dict
        The same arguments of the run that wants to resume.
    path : path-like
        The checkpoint, for the message.
    """
    keys = sorted(set(found) | set(expected))
    diff = [f"{k}: checkpoint {found.get(k, '<missing>')!r} != run {expected.get(k, '<missing>')!r}"
            for k in keys if found.get(k, "<missing>") != expected.get(k, "<missing>")]
    if diff:
        raise TrainingError(
            f"{path}: checkpoint was made for another configuration; it cannot resume this "
            f"run (delete it to start afresh). Differing arguments: {'; '.join(diff)}"
        )


def save_checkpoint(path: str | os.PathLike, objects: Mapping[str, Any],
                    values: Mapping[str, Any], rank: int = 0) -> None:
    """Write ``objects``' state dicts, every RNG state and ``values`` to ``path``, atomically.

    Every process calls it; rank 0 writes, then all wait for each other.

    Parameters
    ----------
    path : path-like
        The checkpoint (its folder is created).
    objects : mapping of str to objects with ``state_dict()``
        E.g. ``{"model": ..., "optimizer": ..., "scheduler": ..., "scaler": ...}``; each is
        stored under its name.
    values : mapping
        Plain values (numbers, strings, lists, dicts, tensors) stored as they are, so the file
        loads with ``torch.load(..., weights_only=True)``.
    rank : int
        This process's rank.
    """
    import torch

    from cortexscale.io.atomic import atomic_path
    from cortexscale.train import ddp
    from cortexscale.train.common import rng_state

    ckpt = {**{name: obj.state_dict() for name, obj in objects.items()}, "rng": rng_state(),
            **values}
    if rank == 0:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)
    ddp.barrier()


def restore_checkpoint(path: str | os.PathLike, objects: Mapping[str, Any],
                       run_args: Mapping[str, Any], device: Any) -> dict[str, Any] | None:
    """Load the checkpoint ``path`` of an interrupted run into ``objects``, if there is one.

    Parameters
    ----------
    path : path-like
        Written by :func:`save_checkpoint`; absent: nothing to resume.
    objects : mapping of str to objects with ``load_state_dict()``
        The run's objects, by the names they were saved under.
    run_args : mapping
        What the checkpoint's ``run_args`` must equal (:func:`check_compatible`).
    device : torch.device
        Where the tensors are loaded.

    Returns
    -------
    checkpoint : dict or None
        The whole checkpoint (for its plain values), after every object and RNG state was
        restored; ``None`` if ``path`` does not exist.

    Raises
    ------
    TrainingError
        If the checkpoint was made for another configuration.
    """
    from cortexscale.io.checkpoint import load_checkpoint
    from cortexscale.train.common import set_rng_state

    path = Path(path)
    if not path.is_file():
        return None
    ck = load_checkpoint(path, "the checkpoint of an interrupted run (delete it to start "
                         "afresh)", device)
    check_compatible(ck.get("run_args", {}), dict(run_args), path)
    for name, obj in objects.items():
        obj.load_state_dict(ck[name])
    set_rng_state(ck["rng"])
    return ck
