"""A tiny pretraining corpus and training config, shared by the training and stage tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from cortexscale.data.corpus import subset_order, validation_clips

#: a pretrain config section small enough for a test (30 steps of 4 clips)
CFG = {
    "steps": 30,
    "batch_size": 4,
    "grad_accum": 2,
    "lr": 0.01,
    "min_lr": 0.001,
    "warmup_steps": 3,
    "weight_decay": 0.01,
    "dropout": 0.0,
    "eval_every": 10,
    "eval_clips": 4,
    "compile": False,
    "conditioned": False,
}

CLIP_LEN, N_SOURCES, PER_SOURCE, VOCAB = 4, 2, 12, 8


def make_corpus(tmp_path: Path) -> tuple[Path, Path]:
    """frames.h5 (2 sources x 12 clips of 4 frames) and tokens.h5 with a learnable pattern.

    As the corpus stage lays it out: 4 validation clips (2 per source) reserved first, a
    training pool of 20, and data sizes 32 and 64 frames (8 and 16 clips) as its prefixes.
    """
    n = N_SOURCES * PER_SOURCE
    source = np.repeat(np.arange(N_SOURCES), PER_SOURCE).astype(np.int32)
    start = np.tile(np.arange(PER_SOURCE) * CLIP_LEN, N_SOURCES).astype(np.int64)
    frames = tmp_path / "frames.h5"
    with h5py.File(frames, "w") as f:
        f.create_dataset("clips", data=np.zeros((n, CLIP_LEN, 8, 8, 3), np.uint8))
        f["source"], f["start_frame"] = source, start
        f.create_dataset("sources", data=["a", "b"], dtype=h5py.string_dtype())
        val = validation_clips(source, CFG["eval_clips"])
        f["validation"] = val
        for name in ("corpus", "stratified"):
            pool = subset_order(source, name)
            pool = pool[~np.isin(pool, val)]
            f[f"pool/{name}"] = pool
            for size in (32, 64):
                f[f"subsets/{name}/{size}"] = pool[: size // CLIP_LEN]
        f.attrs.update(clip_len=CLIP_LEN, height=8, width=8, fps=15, time_stride=1,
                       data_sizes=np.array([32, 64]))
    # each clip: a ramp (t, h, w) of 8 tokens shifted by a per-clip offset
    rng = np.random.default_rng(0)
    offset = rng.integers(0, VOCAB, n)
    codes = (offset[:, None] + np.arange(8)[None]) % VOCAB
    tokens = tmp_path / "tokens.h5"
    with h5py.File(tokens, "w") as f:
        f["codes"] = codes.reshape(n, 2, 2, 2).astype(np.int16)
        f.attrs["codebook_size"] = VOCAB
        f.attrs["downsample"] = np.array([2, 4, 4])
    return tokens, frames
