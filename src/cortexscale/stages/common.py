"""What every stage command shares: its config sections, its common options, its threads.

``settings`` returns the config sections a command needs, from ``--config FILE`` (the whole
study, validated) or ``--sections JSON`` (what the workflow passes, validated against its
part of the schema).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cortexscale.config import load_config, load_schema, validate_sections
from cortexscale.errors import ConfigError

__all__ = ["OPTIONAL", "add_common", "limit_threads", "settings"]


def settings(args: argparse.Namespace, needed: Sequence[str]) -> dict[str, Any]:
    """Return the config sections a stage needs, validated, with defaults.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `config` (a path or None) and `sections` (JSON or None).
    needed : sequence of str
        The sections the command reads; an optional one that is left out takes its schema
        defaults (e.g. ``seed`` 0, an empty ``encoding`` section filled in).
    """
    if args.config is not None:
        cfg = load_config(args.config)
        return {k: cfg[k] for k in needed if k in cfg}
    if args.sections is not None:
        try:
            sections = json.loads(args.sections)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--sections is not valid JSON: {exc}") from exc
        missing = [k for k in needed if k not in sections and k not in OPTIONAL]
        if missing:
            raise ConfigError(f"--sections lacks the section(s) {', '.join(missing)}")
        # an optional section left out takes its schema defaults, as in a whole config
        props = load_schema()["properties"]
        for k in needed:
            if k not in sections and "default" in props.get(k, {}):
                sections[k] = props[k]["default"]
            elif k not in sections and props.get(k, {}).get("type") == "object":
                sections[k] = {}  # its keys' defaults are filled by the validation
        return validate_sections(sections, "--sections")
    raise ConfigError("give the study config with --config FILE (or --sections JSON)")


OPTIONAL = {"seed", "tokenizer", "pretrain", "features", "encoding", "resources", "scaling",
             "study", "pretrained_models", "reference"}


def limit_threads(n: int) -> None:
    """Bound BLAS/OpenMP threads to what the scheduler gave this job."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


def add_common(p: argparse.ArgumentParser, threads: bool = False, device: bool = False) -> None:
    """Add `--config`/`--sections` (one of them) and, when asked, `--threads`, `--device`."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", type=Path, help="study config YAML (validated)")
    g.add_argument("--sections", help="config sections as JSON (used by the workflow)")
    if threads:
        p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    if device:
        p.add_argument("--device", default="cpu", help="torch device (cpu, cuda; default cpu)")
