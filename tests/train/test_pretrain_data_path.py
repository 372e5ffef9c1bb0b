"""benchmarks/pretrain_data_path.py: the paper-shaped corpus it writes is what pretraining
reads, and the projection of a job's wall time is the arithmetic it documents."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cortexscale.config import validate_sections
from cortexscale.data.corpus import read_subset
from cortexscale.stages.pretrain import read_corpus, reserved_validation
from cortexscale.train.pretrain import _batch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "pretrain_data_path", ROOT / "benchmarks" / "pretrain_data_path.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paper_clip_count(bench):
    # 6M frames / (16 frames x stride 4) = 93,750 training clips + 512 validation clips
    assert bench.paper_clips() == 93_750 + 512


def test_written_corpus_is_what_pretrain_reads(bench, tmp_path):
    n, n_sources = 3000, 7
    tokens, frames = bench.write_paper_corpus(tmp_path, n_clips=n, n_sources=n_sources)
    codes, codebook, prev = read_corpus(tokens, frames)
    assert codes.shape == (n, 4, 8, 8) and codes.dtype == np.int16 and codebook == 2048
    # exactly one clip per source (its first) lacks a preceding clip; the others point back
    assert (prev < 0).sum() == n_sources
    has = prev >= 0
    assert np.array_equal(prev[has], np.flatnonzero(has) - 1)
    subset = read_subset(frames, 100_000, "corpus")  # 100k frames / 64 = 1562 clips
    assert subset.size == 1562
    val = reserved_validation(frames, subset, 512)
    assert val.size == 512 and not np.intersect1d(subset, val).size


def test_where_gather_equals_batch(bench, tmp_path):
    """The proposed sync-free condition gather (torch.where) gives _batch's tensors."""
    tokens, frames = bench.write_paper_corpus(tmp_path, n_clips=700, n_sources=5)
    codes_np, _, prev_np = read_corpus(tokens, frames)
    codes, prev = torch.from_numpy(codes_np), torch.from_numpy(prev_np)
    idx = np.array([0, 1, 140, 141, 699, 3])  # 0 and 140 are first clips of their source
    x, c = _batch(codes, prev, idx, True)
    p = prev[torch.from_numpy(idx)]
    c2 = torch.where((p < 0)[:, None, None, None], -1, codes[p.clamp(min=0)].long())
    assert torch.equal(c, c2) and (c[0] == -1).all() and (c[2] == -1).all()
    assert torch.equal(c[1], x[0]) and torch.equal(c[3], x[2])  # 141 follows 140


def test_project_arithmetic(bench, tmp_path):
    # 400 steps, 4 log windows of 100 steps: the first (compile) slow, then 10 ms/step
    steps, per_step_tok = 400, 64 * 256
    rows = []
    for k, secs in enumerate([30.0, 1.0, 1.0, 1.0], start=1):
        rows.append({"step": 100 * k, "tokens_seen": 100 * k * per_step_tok,
                     "train_loss": 7.0, "val_loss": 7.1 if k in (2, 4) else math.nan,
                     "lr": 1e-4, "tokens_per_s": 100 * per_step_tok / secs,
                     "peak_mem_mb": 1.0})
    pd.DataFrame(rows).to_csv(tmp_path / "log.tsv", sep="\t", index=False)
    (tmp_path / "summary.json").write_text(json.dumps(
        {"steps": steps, "wall_time_s": 40.0, "train_time_s": 33.0}))
    p = bench.project(tmp_path, wall_s=42.0, eval_s=0.5, target_steps=116_000,
                      eval_every=2000)
    assert p["steady_step_s"] == pytest.approx(0.01)  # windows past step 100 only
    assert p["evals_run"] == 2 and p["evals_target"] == 58
    assert p["projected_s"] == pytest.approx(42.0 + (116_000 - 400) * 0.01 + 56 * 0.5)
    assert p["tokens_per_s"] == pytest.approx(per_step_tok / 0.01)
    # without eval_s: the upper bound (wall - train) / evals run
    assert bench.project(tmp_path, 42.0, None, 116_000)["eval_s"] == pytest.approx(3.5)


def test_job_sections_keep_the_study(bench):
    sections = json.loads(bench.job_sections(ROOT / "config/studies/ahmadi2024.yaml", 3000))
    pre = validate_sections(sections, "test")["pretrain"]
    assert pre["steps"] == 3000 and pre["compile"] is True
    assert (pre["batch_size"], pre["eval_every"], pre["eval_clips"], pre["conditioned"]) \
        == (64, 2000, 512, True)
