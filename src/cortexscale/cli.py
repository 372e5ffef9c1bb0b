"""Command-line interface: ``cortexscale STAGE ...``; every Snakemake rule calls one stage.

Each stage takes its settings either from a study config file (``--config FILE``, the
whole config, validated) or from the workflow (``--sections JSON``, only the sections the
stage needs, validated against their part of the schema). Heavy libraries are imported
inside the stage that needs them so that light stages start fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence

from cortexscale import __version__
from cortexscale.config import ConfigError
from cortexscale.logs import setup as setup_logging
from cortexscale.stages.common import add_common, limit_threads

#: the stage modules (src/cortexscale/stages/NAME.py, one per rule file), in help order
STAGE_MODULES = ("study", "data", "tokenizer", "pretrain", "features", "reference", "encoding",
                 "aggregate", "analysis", "pretrained")


def build_parser() -> argparse.ArgumentParser:
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

    for name in STAGE_MODULES:  # each stage module declares its own commands
        if importlib.util.find_spec(f"cortexscale.stages.{name}") is not None:
            importlib.import_module(f"cortexscale.stages.{name}").register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cortexscale`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        limit_threads(args.threads)
    setup_logging(args.stage)
    start = time.perf_counter()
    from cortexscale.train.resume import Interrupted, TrainingError

    try:
        args.func(args)
    except Interrupted as exc:  # checkpointed on SIGTERM/SIGUSR2: a retry resumes it
        print(f"cortexscale {args.stage}: {exc}", file=sys.stderr)
        return int(exc.code)
    except (ConfigError, FileNotFoundError, KeyError, ValueError, OSError, NotImplementedError,
            TrainingError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"cortexscale {args.stage}: error: {message}", file=sys.stderr)
        return 2
    print(f"cortexscale {args.stage}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
