"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from wfutils import REPO


@pytest.fixture
def rng():
    """A seeded random generator."""
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """The whole tiny study (wfutils.tiny_config, with a pretraining checkpoint every 5 of its
    20 steps so that an interrupted run has one to resume), run uninterrupted once per test
    session.

    Its work dir (config in ``tiny.yaml``, Snakemake's output in ``<work dir>.log`` beside it).
    Shared by the tests that compare against an uninterrupted run: copy it, never modify it.
    """
    from wfutils import run_tiny_study, tiny_config

    from cortexscale.config import merge

    cfg = merge(tiny_config(), {"pretrain": {"checkpoint_every": 5}})
    return run_tiny_study(tmp_path_factory.getbasetemp() / "tiny-study", cfg)
