"""fMRI sample-size scaling: fit on nested, seeded, log-spaced subsets of training data.

Subsets grow by whole runs (so cross-validation by run stays valid) or by samples; each
subset contains every smaller one, the order is fixed by ``seed``, and every subset is
scored on the same test set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cortexscale.encoding.delays import run_slices
from cortexscale.encoding.metrics import pearson_r
from cortexscale.encoding.ridge import ridge_cv, ridge_predict

__all__ = ["UNITS", "nested_subsets", "sample_size_curve"]

UNITS = ("runs", "samples")


def nested_subsets(
    groups: np.ndarray, n_points: int = 5, min_size: int = 2, unit: str = "runs",
    seed: int = 0,
) -> list[np.ndarray]:
    """Nested, seeded subsets of training samples with log-spaced sizes.

    Parameters
    ----------
    groups : array-like, shape (n,)
        Run label per training sample.
    n_points : int
        Number of subset sizes (>= 1); the last is the full set.
    min_size : int
        Smallest subset, in ``unit`` (runs: >= 2 for cross-validation).
    unit : {'runs', 'samples'}
        Grow by whole runs (in a seeded order) or by single samples.
    seed : int

    Returns
    -------
    subsets : list of int64 ndarray
        Sorted sample indices, strictly growing, each a superset of the previous.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {list(UNITS)}, found {unit!r}")
    groups = np.asarray(groups)
    runs = run_slices(groups, groups.shape[0])
    total = len(runs) if unit == "runs" else groups.shape[0]
    if not isinstance(n_points, int | np.integer) or n_points < 1:
        raise ValueError(f"n_points must be a positive integer, found {n_points!r}")
    if not isinstance(min_size, int | np.integer) or not 1 <= min_size <= total:
        raise ValueError(f"min_size must be an integer in [1, {total}] ({unit}), found "
                         f"{min_size!r}")
    sizes = np.unique(np.round(np.geomspace(min_size, total, n_points)).astype(int))
    order = np.random.default_rng(seed).permutation(total)
    out = []
    for size in sizes:
        if unit == "runs":
            idx = np.concatenate([runs[j] for j in order[:size]])
        else:
            idx = order[:size]
        out.append(np.sort(idx))
    return out


def sample_size_curve(
    X_train: np.ndarray,
    Y_train: np.ndarray,
    groups: np.ndarray,
    X_test: np.ndarray,
    Y_test: np.ndarray,
    alphas: np.ndarray,
    n_points: int = 5,
    unit: str = "runs",
    seed: int = 0,
    **ridge_kwargs: Any,
) -> list[dict[str, Any]]:
    """Fit on each nested subset (:func:`nested_subsets`) and score on the fixed test set.

    Parameters
    ----------
    X_train : ndarray, shape (n, p)
    Y_train : ndarray, shape (n, v)
    groups : array-like, shape (n,)
    X_test : ndarray, shape (n_test, p)
    Y_test : ndarray, shape (n_test, v)
    alphas : array-like, shape (k,)
    n_points, unit, seed :
        As in :func:`nested_subsets` (the smallest subset holds ``n_folds`` runs).
    **ridge_kwargs
        Passed to :func:`~cortexscale.encoding.ridge.ridge_cv`.

    Returns
    -------
    rows : list of dict
        Per subset: ``n_train, n_runs, mean_r, median_r`` and ``r`` (v,).
    """
    n_folds = ridge_kwargs.get("n_folds", 5)
    groups = np.asarray(groups)
    min_size = n_folds if unit == "runs" else max(n_folds, 2) * 10
    rows = []
    for idx in nested_subsets(groups, n_points, min_size, unit, seed):
        g = groups[idx]
        kw = dict(ridge_kwargs, n_folds=min(n_folds, np.unique(g).size))
        fit = ridge_cv(np.asarray(X_train)[idx], np.asarray(Y_train)[idx], g, alphas, **kw)
        r = pearson_r(Y_test, ridge_predict(X_test, fit.coef))
        r[~fit.valid] = np.nan
        ok = r[~np.isnan(r)]
        rows.append({
            "n_train": int(idx.size), "n_runs": int(np.unique(g).size),
            "mean_r": float(ok.mean()) if ok.size else float("nan"),
            "median_r": float(np.median(ok)) if ok.size else float("nan"), "r": r,
        })
    return rows
