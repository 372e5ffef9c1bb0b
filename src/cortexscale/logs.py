"""One logging set-up for every stage: progress lines on stderr, into the rule's log.

A stage module takes its logger with ``log = get_logger(__name__)`` and writes
``log.info("...")``. :func:`setup` (called once by the CLI) sends every ``cortexscale.*``
logger to stderr as ``cortexscale STAGE: message``, which Snakemake's ``2> {log}`` puts in
the rule's log. :class:`Progress` adds elapsed time and an ETA to the lines of a long loop.
"""

from __future__ import annotations

import logging
import sys
import time

__all__ = ["Progress", "get_logger", "setup"]

ROOT = "cortexscale"


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (``__name__``), under the package's root logger."""
    if not name.startswith(ROOT):
        name = f"{ROOT}.{name}"
    return logging.getLogger(name)


def setup(stage: str, level: int = logging.INFO) -> None:
    """Send the package's log records to stderr as ``cortexscale STAGE: message``.

    Calling it again replaces the handler (tests run several stages in one process); the
    stream is looked up at each record, so pytest's captured stderr receives the lines.
    """
    root = logging.getLogger(ROOT)
    for h in list(root.handlers):
        if getattr(h, "_cortexscale", False):
            root.removeHandler(h)
    handler = _StderrHandler()
    handler._cortexscale = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(f"{ROOT} {stage}: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


class _StderrHandler(logging.StreamHandler):
    """A stream handler on whatever ``sys.stderr`` is when a record is written."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Progress of a loop of ``total`` items: ``what i/total, elapsed T, ETA T``.

    Parameters
    ----------
    log : logging.Logger
        Where the lines go.
    total : int
        Number of items.
    what : str
        What an item is, e.g. ``"step"`` or ``"subject"``.
    every : int
        Write a line every ``every`` items (and at the last).
    start : int
        Items already done before this loop began (a resumed run).
    """

    def __init__(self, log: logging.Logger, total: int, what: str = "item",
                 every: int = 1, start: int = 0) -> None:
        self.log, self.total, self.what = log, int(total), what
        self.every = max(1, int(every))
        self.first = int(start)
        self.start = time.perf_counter()

    def line(self, done: int) -> str:
        """The progress text after ``done`` items, without the stage prefix.

        The ETA is extrapolated from the items done since this object was made (a resumed
        loop: since ``start``).
        """
        elapsed = time.perf_counter() - self.start
        since = done - self.first
        eta_s = _duration(elapsed / since * (self.total - done)) if since > 0 else "-"
        resumed = f" (resumed at {self.first})" if self.first else ""
        return (f"{self.what} {done}/{self.total}{resumed}, elapsed {_duration(elapsed)}, "
                f"ETA {eta_s}")

    def update(self, done: int, extra: str = "") -> None:
        """Log the line after ``done`` items if it is due; ``extra`` is appended."""
        if done % self.every == 0 or done == self.total:
            self.log.info(self.line(done) + (f"; {extra}" if extra else ""))
