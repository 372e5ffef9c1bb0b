"""Shared fixtures."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
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


@pytest.fixture
def corpus(tmp_path):
    """A tiny frames.h5 and tokens.h5 for pretraining (pretrainutils.make_corpus)."""
    from pretrainutils import make_corpus

    return make_corpus(tmp_path)


# ---------------------------------------------------------------- figures as drawn
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SVG_ROOT = "{http://www.w3.org/2000/svg}svg"


class SavedFigures:
    """The matplotlib figures passed to ``save_figure``, by their PNG path.

    ``saved[png]`` checks that the PNG and the SVG beside it were written (a PNG image that is
    not one flat colour, an SVG document with an ``<svg>`` root, no temporary file left
    beside them) and returns the figure, closed but with every artist still in place.
    """

    def __init__(self) -> None:
        self.figures: dict[Path, object] = {}

    def __contains__(self, png) -> bool:
        return Path(png) in self.figures

    def __len__(self) -> int:
        return len(self.figures)

    def __getitem__(self, png):
        from matplotlib import image

        png = Path(png)
        head = png.read_bytes()[:24]
        assert head[:8] == PNG_SIGNATURE, f"{png} is not a PNG"
        width, height = struct.unpack(">II", head[16:24])
        assert width >= 50 and height >= 50, f"{png} is {width} x {height} px"
        pixels = image.imread(png)
        assert pixels.shape[:2] == (height, width) and np.ptp(pixels[..., :3]) > 0, \
            f"{png} is one flat colour"
        root = ET.parse(png.with_suffix(".svg")).getroot()
        assert root.tag == SVG_ROOT, f"{png.with_suffix('.svg')} has root {root.tag}"
        assert not list(png.parent.glob(".*")), "a temporary file was left beside the figure"
        return self.figures[png]


@pytest.fixture
def saved(monkeypatch) -> Iterator[SavedFigures]:
    """Record every figure that ``cortexscale.report.figures.save_figure`` (and the name
    ``brainmaps`` imports) is given, still writing it through the real function."""
    from matplotlib import pyplot as plt

    from cortexscale.report import brainmaps, figures

    out = SavedFigures()
    real = figures.save_figure

    def record(fig, out_png) -> None:
        out.figures[Path(out_png)] = fig
        real(fig, out_png)

    monkeypatch.setattr(figures, "save_figure", record)
    if hasattr(brainmaps, "save_figure"):
        monkeypatch.setattr(brainmaps, "save_figure", record)
    yield out
    plt.close("all")
