"""Hemodynamic lag on the regression side: per-run z-scoring and FIR delays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["make_delays", "run_slices", "zscore_per_run"]


def run_slices(groups: np.ndarray | None, n: int) -> list[np.ndarray]:
    """Sample indices of each run, in order of first appearance.

    Parameters
    ----------
    groups : array-like, shape (n,), or None
        Run label per sample; None means one run.
    n : int
        Number of samples.

    Returns
    -------
    runs : list of int64 ndarray
    """
    if groups is None:
        return [np.arange(n)]
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), found {groups.shape}")
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    return [np.flatnonzero(inverse == g) for g in order]


def _shift(x: np.ndarray, delay: int) -> np.ndarray:
    """Shift rows of ``x`` (m, p) down by ``delay`` (row t gets x[t - delay]), zero-padded."""
    out = np.zeros_like(x)
    m = x.shape[0]
    if delay >= 0:
        if delay < m:
            out[delay:] = x[: m - delay]
    elif -delay < m:
        out[:delay] = x[-delay:]
    return out


def make_delays(
    X: np.ndarray, delays: Sequence[int], groups: np.ndarray | None = None
) -> np.ndarray:
    """Stack time-shifted copies of the features (FIR model), within each run.

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Features; rows are TRs.
    delays : sequence of int
        Delays in TRs. Block ``i`` of the output holds ``X`` shifted by ``delays[i]``:
        row ``t`` gets ``X[t - delays[i]]`` of the same run (zero where that falls
        outside the run; negative delays look ahead).
    groups : array-like, shape (n,), optional
        Run label per row; shifts never cross runs. None: one run.

    Returns
    -------
    X_delayed : ndarray, shape (n, p * len(delays))
        Same dtype as ``X``.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, p), found shape {X.shape}")
    delays = [int(d) for d in delays]
    if not delays:
        raise ValueError("delays must hold at least one delay (in TRs), found []")
    n, p = X.shape
    out = np.zeros((n, p * len(delays)), dtype=X.dtype)
    for idx in run_slices(groups, n):
        x = X[idx]
        for i, d in enumerate(delays):
            out[idx, i * p : (i + 1) * p] = _shift(x, d)
    return out


def zscore_per_run(X: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Z-score each column within each run (population std); constant columns become 0.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    groups : array-like, shape (n,), optional
        Run label per row. None: one run.

    Returns
    -------
    Z : ndarray, shape (n, p)
        Float dtype of ``X`` (float64 for integer input); statistics in float64.
        NaN propagates.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, p), found shape {X.shape}")
    out_dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64
    out = np.empty(X.shape, dtype=out_dtype)
    for idx in run_slices(groups, X.shape[0]):
        x = X[idx].astype(np.float64)
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        # a column whose spread is at rounding level of its mean is constant
        const = ~(std > 1e-12 * np.maximum(np.abs(mean), 1.0))
        z = (x - mean) / np.where(const, 1.0, std)
        z[:, const & np.isfinite(std)] = 0.0
        out[idx] = z
    return out
