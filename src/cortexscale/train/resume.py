"""Stopping and resuming training runs: signals, exit codes, checkpoint compatibility.

- :class:`StopSignals` turns SIGTERM and SIGUSR2 into a flag that the training loop reads at
  the end of each optimizer step (the step in flight finishes, then the run checkpoints).
- :class:`Interrupted` is the ``SystemExit`` a checkpointed run raises; its code
  :data:`EXIT_REQUEUE` (75, ``EX_TEMPFAIL`` of ``sysexits.h``) tells a retry or requeue that
  the run stopped cleanly and will resume (docs/decisions.md, "Pretraining").
- :func:`check_compatible` refuses a checkpoint made for another configuration, naming every
  argument that differs.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from cortexscale.errors import TrainingError

__all__ = ["EXIT_REQUEUE", "Interrupted", "StopSignals", "TrainingError", "check_compatible"]

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
