"""Command-line interface: ``cortexscale STAGE ...``; every Snakemake rule calls one stage.

The CLI only dispatches: each stage module (``cortexscale.stages.NAME``, one per rule file)
declares its commands with ``register(add)``. ``main`` sets up logging (progress lines on
stderr, into the rule's log), runs the command, and turns a
:class:`~cortexscale.errors.CortexscaleError` into one line and exit status 2; any other
exception is a bug and keeps its traceback (exit status 1). A pretraining run stopped by
SIGTERM/SIGUSR2 checkpoints and exits 75, to be resumed by a retry.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable, Sequence

from cortexscale import __version__
from cortexscale.errors import CortexscaleError
from cortexscale.logs import get_logger
from cortexscale.logs import setup as setup_logging
from cortexscale.stages.common import add_common, limit_threads

#: the stage modules (src/cortexscale/stages/NAME.py, one per rule file), in help order
STAGE_MODULES = ("study", "data", "tokenizer", "pretrain", "features", "reference", "encoding",
                 "aggregate", "analysis", "pretrained")

log = get_logger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, each declared by its stage module."""
    parser = argparse.ArgumentParser(
        prog="cortexscale",
        description="Compute-optimal scaling studies of brain encoding models.",
    )
    parser.add_argument("--version", action="version", version=f"cortexscale {__version__}")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    def add(name: str, func: Callable[[argparse.Namespace], None], help_: str,
            common: bool = True, **kw: bool) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        if common:  # --config/--sections (and --threads, --device when asked)
            add_common(p, **kw)
        p.set_defaults(func=func)
        return p

    for name in STAGE_MODULES:
        importlib.import_module(f"cortexscale.stages.{name}").register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cortexscale`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        limit_threads(args.threads)
    setup_logging(args.stage)
    start = time.perf_counter()
    from cortexscale.train.resume import Interrupted

    try:
        args.func(args)
    except Interrupted as exc:  # checkpointed on SIGTERM/SIGUSR2: a retry resumes it
        log.warning(exc.message)
        return int(exc.code)
    except CortexscaleError as exc:
        log.error(f"error: {exc}")
        return 2
    log.info(f"done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
