"""Significance and uncertainty of per-target test scores.

- :func:`block_permutation_test`: a null distribution of Pearson r per target from
  predictions whose blocks (runs, or blocks of TRs) are shuffled, which keeps the
  autocorrelation within blocks; p-values ``(1 + #null >= r) / (1 + n_perm)``.
- :func:`fdr_bh`: Benjamini-Hochberg false discovery rate control.
- :func:`bootstrap_ci`: percentile confidence intervals of r from blocks resampled with
  replacement.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from cortexscale.encoding.delays import run_slices

__all__ = ["PermutationResult", "block_permutation_test", "blocks", "bootstrap_ci", "fdr_bh"]


def blocks(n: int, groups: np.ndarray | None = None, block_size: int | None = None
           ) -> list[np.ndarray]:
    """Contiguous blocks of samples: the runs (``groups``) or runs cut every ``block_size``.

    Returns
    -------
    blocks : list of int64 ndarray
    """
    if block_size is not None and (not isinstance(block_size, int | np.integer)
                                   or block_size < 1):
        raise ValueError(f"block_size must be a positive integer or None, found {block_size!r}")
    out = []
    for run in run_slices(groups, n):
        if block_size is None:
            out.append(run)
        else:
            out.extend(run[i:i + block_size] for i in range(0, run.size, block_size))
    if len(out) < 2:
        raise ValueError(
            f"need at least 2 blocks to permute or resample, found {len(out)} (one run and "
            f"block_size={block_size}); pass block_size to cut runs into blocks of TRs"
        )
    return out


def _standardise(Y: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit norm, float64 (n, v); constant columns -> 0."""
    Y = np.asarray(Y, dtype=np.float64)
    Yc = Y - Y.mean(0)
    norm = np.sqrt(np.einsum("ij,ij->j", Yc, Yc))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(norm > 0, Yc / norm, 0.0)


def _check_pair(y_true, y_pred):
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must be 2-D (n, v) of the same shape, found {y_true.shape} "
            f"and {y_pred.shape}"
        )
    return y_true, y_pred


@dataclass(frozen=True)
class PermutationResult:
    """Result of :func:`block_permutation_test`.

    Attributes
    ----------
    r : ndarray of float64, shape (v,)
        Observed Pearson r.
    p_values : ndarray of float64, shape (v,)
        One-sided (r greater than chance); NaN for constant targets.
    significant : ndarray of bool, shape (v,)
        After Benjamini-Hochberg FDR control at ``q``.
    n_significant : int
    null : ndarray of float32, shape (n_perm, v)
    """

    r: np.ndarray
    p_values: np.ndarray
    significant: np.ndarray
    n_significant: int
    null: np.ndarray


def block_permutation_test(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray | None = None,
    block_size: int | None = None,
    n_perm: int = 1000,
    q: float = 0.05,
    seed: int = 0,
) -> PermutationResult:
    """Per-target block-permutation null of Pearson r, with FDR correction.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n, v)
    groups : array-like, shape (n,), optional
        Run label per sample; runs are the blocks unless ``block_size`` cuts them.
    block_size : int, optional
        Cut each run into blocks of this many TRs (needed with a single run).
    n_perm : int
        Number of permutations (>= 1).
    q : float
        FDR level in (0, 1).
    seed : int

    Returns
    -------
    result : PermutationResult
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    if not isinstance(n_perm, int | np.integer) or n_perm < 1:
        raise ValueError(f"n_perm must be a positive integer, found {n_perm!r}")
    blk = blocks(y_true.shape[0], groups, block_size)
    zt, zp = _standardise(y_true), _standardise(y_pred)
    r = np.einsum("ij,ij->j", zt, zp)
    const = ~(np.abs(zt).sum(0) > 0) | ~(np.abs(zp).sum(0) > 0)
    rng = np.random.default_rng(seed)
    null = np.empty((n_perm, y_true.shape[1]), dtype=np.float32)
    for i in range(n_perm):
        order = np.concatenate([blk[j] for j in rng.permutation(len(blk))])
        # within-block order is kept; targets and shuffled predictions, length n
        null[i] = np.einsum("ij,ij->j", zt[np.concatenate(blk)], zp[order])
    p = (1.0 + (null >= r.astype(np.float32)[None]).sum(0)) / (1.0 + n_perm)
    r = np.where(const, np.nan, r)
    p = np.where(const, np.nan, p)
    sig = fdr_bh(p, q)
    return PermutationResult(r, p, sig, int(sig.sum()), null)


def fdr_bh(p_values: np.ndarray, q: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg: which hypotheses are rejected at FDR ``q``.

    Parameters
    ----------
    p_values : ndarray, shape (v,)
        NaN entries are ignored (never significant, not counted in the number of tests).
    q : float in (0, 1)

    Returns
    -------
    rejected : ndarray of bool, shape (v,)
    """
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), found {q!r}")
    p = np.asarray(p_values, dtype=np.float64)
    ok = ~np.isnan(p)
    out = np.zeros(p.shape, dtype=bool)
    m = int(ok.sum())
    if m == 0:
        return out
    ps = p[ok]
    order = np.argsort(ps, kind="stable")
    below = ps[order] <= q * np.arange(1, m + 1) / m
    k = np.flatnonzero(below).max() + 1 if below.any() else 0
    rej = np.zeros(m, dtype=bool)
    rej[order[:k]] = True
    out[ok] = rej
    return out


def bootstrap_ci(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray | None = None,
    block_size: int | None = None,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block-bootstrap percentile confidence intervals of Pearson r per target.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n, v)
    groups, block_size :
        Blocks as in :func:`block_permutation_test`; blocks are resampled with
        replacement, the same blocks for every target.
    n_boot : int
    ci : float in (0, 1)
    seed : int

    Returns
    -------
    low, high : ndarray of float64, shape (v,)
        Per-target interval.
    mean_ci : ndarray of float64, shape (2,)
        Interval of the mean r over targets (NaN targets ignored).
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), found {ci!r}")
    if not isinstance(n_boot, int | np.integer) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, found {n_boot!r}")
    blk = blocks(y_true.shape[0], groups, block_size)
    rng = np.random.default_rng(seed)
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    boot = np.empty((n_boot, yt.shape[1]))
    for i in range(n_boot):
        idx = np.concatenate([blk[j] for j in rng.integers(0, len(blk), len(blk))])
        zt, zp = _standardise(yt[idx]), _standardise(yp[idx])
        r = np.einsum("ij,ij->j", zt, zp)
        const = ~(np.abs(zt).sum(0) > 0) | ~(np.abs(zp).sum(0) > 0)
        boot[i] = np.where(const, np.nan, r)
    lo, hi = (1 - ci) / 2 * 100, (1 + ci) / 2 * 100
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(boot, [lo, hi], axis=0)
        mean_ci = np.nanpercentile(np.nanmean(boot, axis=1), [lo, hi])
    return low, high, mean_ci
