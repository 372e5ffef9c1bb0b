"""Scores of every ridge penalty on a fold from a few GEMMs, without the predictions.

On one fold the centred validation predictions of penalty ``a`` are
``P_a = U diag(f_a) Z``, with ``U`` (n_val, r) the centred validation features in the
fold's eigenbasis, ``Z`` (r, v) the projected training targets, ``lam`` (r,) the
eigenvalues and ``f_a = 1 / (lam + a)``. With ``G = U.T U`` (r, r):

- ``sum_i P_a * y_c = f_a @ ((U.T y_c) * Z)``: all penalties in one (k, r) @ (r, v) GEMM;
- ``sum_i P_a^2 = sum_jl f_aj f_al G_jl Z_j Z_l``. The partial fractions
  ``f_j f_l = (f_j - f_l) / (lam_l - lam_j)`` turn the off-diagonal part into
  ``2 sum_j f_aj Z_j M_j`` with ``M = H Z`` and ``H_jl = G_jl / (lam_l - lam_j)``, one
  (r, r) @ (r, v) GEMM for all penalties; the diagonal part is
  ``(f_a^2 * diag(G)) @ Z^2``.

So the cost per fold and target is ``r^2 + n_val r + O(k r)`` instead of ``k n_val r``.
The same holds for the dual form in the kernel's eigenbasis.

Accuracy in float32 (the three remedies below are exact rewrites, not approximations):

1. **Penalties above the spectrum.** For ``a >> lam`` the ``f_aj`` are nearly equal and
   the terms ``f_aj Z_j M_j`` cancel (the error grows like ``a / lam``). Since ``H`` is
   antisymmetric, ``Z.T H Z = 0``, so any constant ``c_a`` may be subtracted from the
   weights: ``sum_j (f_aj - c_a) Z_j M_j`` is the same number. With ``c_a = 1 / a``,
   ``f_aj - 1/a = -lam_j f_aj / a`` (computed in float64 without cancellation), which
   takes the cancellation factor from ``(lam + a) / gap`` down to ``lam (lam + a) /
   (a gap)``; below the spectrum the plain weights are the better ones.
2. **Which penalty is 'above' depends on the pair.** The eigenvalues are cut into blocks
   of a decade (``N_BLOCKS``); ``M`` is accumulated block by block of columns
   (``M_b = H[:, b] Z[b]``, together one (r, r) GEMM) and each (row block, column
   block) pair gets the shift ``1/a`` when ``a`` exceeds both blocks' eigenvalues (the
   shift is symmetric in the two blocks, so the rewrite stays exact).
3. **Near-equal eigenvalues.** Pairs whose eigenvalues differ by less than
   ``CLOSE * (lam_j + lam_l) / 2`` (repeated eigenvalues, clusters) are taken out of ``H``
   and added back exactly: ``2 sum_pairs f_aj f_al G_jl Z_j Z_l``, one
   (k, n_pairs) @ (n_pairs, v) GEMM.

Every GEMM output is cast to float64 before the terms are combined, as the direct path
does with its sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CLOSE", "MAX_PAIRS_PER_MODE", "N_BLOCKS", "SpectralFactors", "close_pairs",
           "cost", "factors", "sums"]

CLOSE = 1e-3  # relative eigenvalue gap below which a pair is treated exactly
N_BLOCKS = 3  # eigenvalue blocks: decades below the largest, the last one open-ended
MAX_PAIRS_PER_MODE = 2  # 'auto' takes the spectral path with at most this many pairs per r


@dataclass(frozen=True)
class SpectralFactors:
    """Per-fold weights of the spectral sums (backend arrays, compute dtype unless noted).

    ``f`` (k, r): ``1/(lam+a)``; ``f2g`` (k, r): ``f^2 * diag(G)``; ``blocks``: per
    eigenvalue block ``(cols (|b|,) int64, H[:, cols] (r, |b|), W_b (k, r))``; ``pairs``:
    ``(jj, ll (n_pairs,) int64, G[jj, ll] (n_pairs,), f[:, jj] * f[:, ll] (k, n_pairs))``
    or None.
    """

    f: Any
    f2g: Any
    blocks: list[tuple[Any, Any, Any]]
    pairs: tuple[Any, Any, Any, Any] | None


def cost(r: int, n_val: int, k: int, n_pairs: int) -> int:
    """Multiply-adds per target of :func:`sums` (GEMMs, plus element-wise passes)."""
    return r * r + n_val * r + (2 + N_BLOCKS) * k * r + k * n_pairs + 2 * (N_BLOCKS + 3) * r


def _near(lam):
    """(r, r) bool: ``|lam_l - lam_j| <= CLOSE * (lam_j + lam_l) / 2`` (diagonal included)."""
    return abs(lam[None, :] - lam[:, None]) <= CLOSE * 0.5 * (lam[None, :] + lam[:, None])


def close_pairs(bk, lam):
    """Pairs ``j < l`` of near-equal eigenvalues (:func:`_near`); two int64 index arrays
    (n_pairs,)."""
    idx = bk.arange(0, lam.shape[0])
    upper = idx[None, :] > idx[:, None]
    return bk.nonzero(_near(lam) & upper)


def factors(bk, lam, U64, f64, alphas, close, dt) -> SpectralFactors:
    """Weights of :func:`sums` for one fold.

    Parameters
    ----------
    lam : (r,) float64
        Eigenvalues, ascending.
    U64 : (n_val, r) float64
        Centred validation features in the eigenbasis.
    f64 : (k, r) float64
        ``1 / (lam + a)``.
    alphas : (k,) float64
    close : pair of (n_pairs,) int64
        From :func:`close_pairs`.
    dt : compute dtype
    """
    G = U64.T @ U64  # (r, r) float64
    jj, ll = close
    gap = lam[None, :] - lam[:, None]  # lam_l - lam_j
    exact = _near(lam)  # the close pairs, both ways, and the diagonal
    H = bk.where(exact, 0.0, G / bk.where(exact, 1.0, gap))  # (r, r), antisymmetric
    # the small (k, r) weights in float64 on the host
    lam_h, a_h = bk.to_numpy(lam), bk.to_numpy(alphas)
    f_h = bk.to_numpy(f64)
    shifted = -(lam_h[None, :] * f_h) / a_h[:, None]  # f - 1/a, without cancellation
    block = np.minimum(np.floor(np.log10(lam_h[-1] / lam_h)), N_BLOCKS - 1).astype(int)
    top = np.array([lam_h[block == b].max(initial=0.0) for b in range(N_BLOCKS)])
    blocks = []
    for b in range(N_BLOCKS):
        cols = np.flatnonzero(block == b)
        if not cols.size:
            continue
        above = a_h[:, None] > np.maximum(top[block], top[b])[None, :]  # (k, r)
        W = np.where(above, shifted, f_h)
        cols_b = bk.index(cols)
        blocks.append((cols_b, bk.cast(bk.copy(H[:, cols_b]), dt), bk.asarray(W, dt)))
    pairs = None
    if jj.shape[0]:
        pairs = (jj, ll, bk.cast(G[jj, ll], dt), bk.cast(f64[:, jj] * f64[:, ll], dt))
    gdiag = bk.copy(G.diagonal())
    return SpectralFactors(f=bk.cast(f64, dt), f2g=bk.cast(f64 * f64 * gdiag[None, :], dt),
                           blocks=blocks, pairs=pairs)


def sums(bk, sf: SpectralFactors, a_c, Z, y_c):
    """Cross products and squared norms (k, vc) float64 of the centred validation
    predictions of every penalty.

    Parameters
    ----------
    sf : SpectralFactors
    a_c : (n_val, r)
        Centred validation features in the eigenbasis (``U``), compute dtype.
    Z : (r, vc)
        Projected training targets, compute dtype.
    y_c : (n_val, vc)
        Centred validation targets, compute dtype.
    """
    f64 = bk.float64
    cross = bk.cast(sf.f @ ((a_c.T @ y_c) * Z), f64)
    ss_p = bk.cast(sf.f2g @ (Z * Z), f64)
    for cols, H_b, W_b in sf.blocks:
        ZM = Z * (H_b @ Z[cols])  # (r, vc)
        ss_p += 2 * bk.cast(W_b @ ZM, f64)
    if sf.pairs is not None:
        jj, ll, g, ff = sf.pairs
        ss_p += 2 * bk.cast(ff @ (g[:, None] * Z[jj] * Z[ll]), f64)
    return cross, ss_p
