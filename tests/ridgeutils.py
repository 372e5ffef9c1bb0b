"""Shared helpers of the ridge tests: backend parameters, test problems, a brute-force
reference."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from cortexscale.encoding.metrics import pearson_r, r2_score
from cortexscale.encoding.ridge import group_kfold


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


_NO_TORCH = importlib.util.find_spec("torch") is None
BACKENDS = [
    pytest.param({"backend": "numpy"}, id="numpy"),
    pytest.param({"backend": "torch", "device": "cpu"}, id="torch-cpu",
                 marks=pytest.mark.skipif(_NO_TORCH, reason="torch not installed")),
    pytest.param({"backend": "torch", "device": "cuda"}, id="torch-cuda",
                 marks=[pytest.mark.gpu,
                        pytest.mark.skipif(not _cuda(), reason="no CUDA device")]),
]
METHODS = ["direct", "spectral"]


def problem(rng, n, p, v, n_groups, noise=1.0, centre=False):
    """iid features, targets with a spread of signal strength, contiguous groups."""
    X = rng.standard_normal((n, p))
    if centre:
        X -= X.mean(0)
    W = rng.standard_normal((p, v)) * rng.uniform(0, 1, size=v)
    Y = X @ W / np.sqrt(p) + noise * rng.standard_normal((n, v))
    if centre:
        Y -= Y.mean(0)
    return X, Y, groups_of(n, n_groups)


def groups_of(n, n_groups, sizes=None):
    """Run labels (n,): equal runs, or runs of the given relative sizes."""
    if sizes is None:
        return np.repeat(np.arange(n_groups), int(np.ceil(n / n_groups)))[:n]
    edges = np.round(np.cumsum(sizes) / np.sum(sizes) * n).astype(int)
    return np.searchsorted(edges, np.arange(n), side="right")


def brute_force(X, Y, groups, alphas, n_folds, score, gap=0):
    """Explicit per-fold, per-alpha np.linalg.solve: cv scores (k, v), best alpha (v,)."""
    scorer = pearson_r if score == "pearson" else r2_score
    p = X.shape[1]
    scores = np.zeros((alphas.size, Y.shape[1]))
    folds = group_kfold(groups, n_folds, gap)
    for train, val in folds:
        xt, yt = X[train], Y[train]
        for i, a in enumerate(alphas):
            W = np.linalg.solve(xt.T @ xt + a * np.eye(p), xt.T @ yt)
            scores[i] += scorer(Y[val], X[val] @ W)
    scores /= len(folds)
    return scores, alphas[np.argmax(scores, axis=0)]
