"""Provenance stored with every output: package version, config hash, seed, time."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from typing import Any

from cortexscale import __version__


def config_hash(cfg: Any) -> str:
    """Return a short, stable hash of a JSON-serialisable config section."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def provenance(cfg: Any = None, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """Return a flat dict of provenance fields, suitable for HDF5 attrs or JSON.

    Parameters
    ----------
    cfg : JSON-serialisable, optional
        The config (or the section of it) that determined the output.
    seed : int, optional
        The seed used.
    **extra
        Further scalar fields to record.
    """
    out: dict[str, Any] = {
        "cortexscale_version": __version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if cfg is not None:
        out["config_hash"] = config_hash(cfg)
    if seed is not None:
        out["seed"] = int(seed)
    out.update(extra)
    return out
