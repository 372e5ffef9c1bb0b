"""Ridge regression with a per-target penalty chosen by grouped cross-validation.

The dominant cost of a ridge scaling study is scoring every penalty on every validation
fold. Per fold the training features are decomposed once, in float64:

- primal (``p <= n``): eigendecomposition of the Gram matrix ``X_train.T @ X_train``,
  downdated from the full Gram matrix (``G - X_val.T @ X_val``);
- dual (``p > n``): eigendecomposition of the kernel ``X_train @ X_train.T``, a
  sub-block of the full kernel.

Either way the validation predictions for penalty ``alpha`` are
``A @ diag(1 / (lambda + alpha)) @ B`` with ``A`` (n_val, r) from the features and
``B`` (r, v) the targets projected once; all penalties are scored with one stacked GEMM
``(k * n_val, r) @ (r, v_chunk)``, chunk by chunk over targets, and the score reductions
are accumulated in float64. The refit on all training samples uses one more
decomposition and a per-target diagonal, so targets with different penalties share
one GEMM.

Targets that are constant or hold NaN/inf in the training data are excluded: they get
a zero coefficient, a NaN penalty and NaN scores, and are reported by the ``valid`` mask
of :class:`RidgeCVResult`.

Backends: numpy (here) and torch on CPU or CUDA (:mod:`cortexscale.encoding.backends`),
the same algorithm behind one function.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_info, threadpool_limits

from cortexscale.encoding.backends import is_tensor, resolve_backend, ridge_cv_torch

__all__ = [
    "DTYPES",
    "SCORES",
    "RidgeCVResult",
    "group_kfold",
    "ridge_cv",
    "ridge_predict",
    "valid_targets",
]

SCORES = ("pearson", "r2")
DTYPES = ("float32", "float64")
_MIN_FILTER_BUDGET = 2**22  # values the primal per-penalty filters may always take
_SINGLE_THREAD_EIGH = 4096  # matrices up to this size are decomposed on one BLAS thread


@dataclass(frozen=True)
class RidgeCVResult:
    """Result of :func:`ridge_cv`.

    Attributes
    ----------
    best_alpha : ndarray of float64, shape (v,)
        Penalty chosen per target (NaN for excluded targets).
    cv_scores : ndarray of float64, shape (k, v)
        Mean validation score over folds per penalty and target (NaN for excluded
        targets).
    coef : ndarray, shape (p, v)
        Coefficients refit on all samples with each target's penalty, in the
        computation dtype (zero for excluded targets).
    valid : ndarray of bool, shape (v,)
        False for targets excluded because they are constant or not finite in the
        training data.
    alphas : ndarray of float64, shape (k,)
        The penalties that were scored.
    n_folds : int
        Number of cross-validation folds.
    """

    best_alpha: np.ndarray
    cv_scores: np.ndarray
    coef: np.ndarray
    valid: np.ndarray
    alphas: np.ndarray
    n_folds: int

    @property
    def excluded(self) -> np.ndarray:
        """Indices of the excluded targets, int64 (n_excluded,)."""
        return np.flatnonzero(~self.valid)


@dataclass(frozen=True)
class _Fold:
    """Factors of one fold: validation predictions are ``A_c @ diag(1/(lam+alpha)) @ B``."""

    train: np.ndarray  # (n_train,) int64 sample indices
    val: np.ndarray  # (n_val,) int64 sample indices
    drop: np.ndarray  # (n - n_train,) int64: validation samples and the gap around them
    lam: np.ndarray  # (r,) float64 eigenvalues (> 0)
    basis: np.ndarray  # (p, r) primal V or (n_train, r) dual Q, compute dtype
    a_c: np.ndarray  # (n_val, r) A centred over validation samples, compute dtype
    a_mean: np.ndarray  # (r,) float64 column means of A
    x_drop: np.ndarray | None  # primal: (n - n_train, q) X_drop (q = p) or X_drop @ V (q = r)
    # primal, filters applied to features: predictions are ``stacked @ X_train.T @ Y_train``
    stacked: np.ndarray | None = None  # (k * n_val, p) A_c diag(1/(lam+alpha)) V.T per alpha
    mean_rows: np.ndarray | None = None  # (k, p) float64 a_mean diag(1/(lam+alpha)) V.T


# --------------------------------------------------------------------------- folds
def group_kfold(
    groups: np.ndarray, n_folds: int, gap: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Deterministic k-fold split over groups: no group is split between folds.

    The sorted unique groups are cut into ``n_folds`` contiguous blocks of (nearly)
    equal group counts; block ``i`` is the validation set of fold ``i``. With
    ``gap > 0`` the ``gap`` samples (in sample order) on either side of every contiguous
    stretch of validation samples are dropped from that fold's training set, so slow
    signals (the hemodynamic response) do not leak across the fold edge.

    Parameters
    ----------
    groups : array-like, shape (n,)
        Group label per sample (e.g. the run).
    n_folds : int
        Number of folds, ``2 <= n_folds <= n_groups``.
    gap : int
        Samples dropped from training at each edge of a validation stretch (>= 0).

    Returns
    -------
    folds : list of (train, val)
        int64 sample indices, each sorted.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be 1-D (n,), got shape {groups.shape}")
    unique = np.unique(groups)
    if unique.size < 2:
        raise ValueError(
            f"groups holds {unique.size} distinct run(s); cross-validation by run needs at "
            "least 2 (split a single run into blocks of TRs and pass those as groups)"
        )
    if not isinstance(n_folds, int | np.integer) or not 2 <= n_folds <= unique.size:
        raise ValueError(
            f"n_folds must be an integer in [2, n_groups = {unique.size}] (one run per fold "
            f"at least), got {n_folds!r}"
        )
    if not isinstance(gap, int | np.integer) or gap < 0:
        raise ValueError(f"gap must be a non-negative integer (samples), got {gap!r}")
    folds = []
    for block in np.array_split(unique, int(n_folds)):
        is_val = np.isin(groups, block)
        is_train = ~is_val
        if gap:
            edge = np.flatnonzero(np.diff(is_val.astype(np.int8)))  # last index before a flip
            for e in edge:
                if is_val[e]:  # validation ends at e: drop e+1 .. e+gap
                    is_train[e + 1:e + 1 + gap] = False
                else:  # validation starts at e+1: drop e-gap+1 .. e
                    is_train[max(e - gap + 1, 0):e + 1] = False
        if not is_train.any():
            raise ValueError(f"gap={gap} leaves no training sample in a fold")
        folds.append((np.flatnonzero(is_train), np.flatnonzero(is_val)))
    return folds


# --------------------------------------------------------------------------- validation
def valid_targets(Y: np.ndarray) -> np.ndarray:
    """Targets that are finite and not constant.

    Parameters
    ----------
    Y : ndarray, shape (n, v)

    Returns
    -------
    valid : ndarray of bool, shape (v,)
    """
    finite = np.isfinite(Y).all(axis=0)
    with np.errstate(invalid="ignore"):
        spread = np.ptp(Y, axis=0) if Y.shape[0] else np.zeros(Y.shape[1])
    return finite & (spread > 0)


def _check_inputs(X, Y, groups, alphas, n_folds, score, dtype, chunk_size, gap=0):
    if not is_tensor(X):
        X = np.asarray(X)
    if not is_tensor(Y):
        Y = np.asarray(Y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D (n_samples, n_targets), got shape {Y.shape}")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(
            f"X and Y must have the same number of samples, got {X.shape[0]} and {Y.shape[0]}"
        )
    groups = np.asarray(groups)
    if groups.shape != (X.shape[0],):
        raise ValueError(f"groups must have shape ({X.shape[0]},), got {groups.shape}")
    finite = bool(X.isfinite().all()) if is_tensor(X) else bool(np.isfinite(X).all())
    if not finite:
        raise ValueError("X holds NaN or inf; features must be finite")
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not (np.isfinite(alphas) & (alphas > 0)).all():
        raise ValueError(
            f"alphas must be a non-empty 1-D array of positive finite values, got {alphas}"
        )
    if score not in SCORES:
        raise ValueError(f"score must be one of {list(SCORES)}, got {score!r}")
    if str(np.dtype(dtype)) not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    folds = group_kfold(groups, n_folds, gap)
    return X, Y, alphas, folds, np.dtype(dtype)


# --------------------------------------------------------------------------- solvers
def _eigh_psd(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a PSD matrix, dropping the numerically null space.

    Parameters
    ----------
    M : ndarray of float64, shape (m, m)
        Overwritten.

    Returns
    -------
    lam : ndarray of float64, shape (r,)
        Eigenvalues above ``m * eps * max(lam)``.
    vec : ndarray of float64, shape (m, r)
    """
    # LAPACK syevd; its tridiagonal reduction is memory-bound level-2 BLAS that threads
    # badly on small matrices (1000 x 1000 on 2 cores: 0.45 s with 1 thread, 0.9-8 s with
    # 2 under load), so small matrices are decomposed on one thread.
    limit = 1 if M.shape[0] <= _SINGLE_THREAD_EIGH else None
    with threadpool_limits(limits=limit, user_api="blas"):
        lam, vec = scipy.linalg.eigh(M, driver="evd", overwrite_a=True, check_finite=False)
    tol = max(M.shape[0], 1) * np.finfo(np.float64).eps * max(lam.max(initial=0.0), 0.0)
    keep = lam > tol
    return lam[keep], vec[:, keep]


def _centre_cols(A: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Centre the columns of ``A`` (n, r) in float64; return (A_c in dtype, means (r,))."""
    mean = A.mean(axis=0)
    return (A - mean).astype(dtype), mean


def _dropped(n: int, train: np.ndarray) -> np.ndarray:
    """Samples outside ``train``: (n - n_train,) int64."""
    keep = np.zeros(n, dtype=bool)
    keep[train] = True
    return np.flatnonzero(~keep)


def _primal_folds(X64: np.ndarray, folds, dtype: np.dtype, alphas: np.ndarray,
                  budget: int) -> tuple[list[_Fold], tuple[np.ndarray, np.ndarray]]:
    """Per-fold factors from the downdated Gram matrix ``X.T @ X`` (p, p).

    When the training Gram matrix has full rank and the per-penalty filters of all folds
    fit in ``budget`` values, they are applied to the features once
    (``stacked = A_c diag(1/(lam+alpha)) V.T``), which saves projecting the targets on
    each fold's basis (``r * p`` multiply-adds per target and fold, a tenth of the work
    with 11 penalties); otherwise the targets are projected per fold and chunk.

    Returns the folds and the eigenpairs ``(lam, V)`` of the full Gram matrix (refit).
    """
    (n, p), k = X64.shape, alphas.size
    gram = X64.T @ X64  # (p, p)
    drops = [_dropped(n, train) for train, _ in folds]
    mats = [gram - X64[drop].T @ X64[drop] for drop in drops]  # (p, p) each
    *eig, full = [_eigh_psd(m) for m in mats + [gram]]
    filters = (all(lam.size == p for lam, _ in eig)
               and k * p * sum(val.size for _, val in folds) <= budget)
    out = []
    for (train, val), drop, (lam, V) in zip(folds, drops, eig, strict=True):
        a_c, a_mean = _centre_cols(X64[val] @ V, dtype)  # (n_val, r)
        Vd = V.astype(dtype)  # (p, r)
        if filters:
            d = _shrink(lam, alphas)  # (k, r)
            stacked = (a_c[None] * d[:, None, :].astype(dtype)).reshape(-1, lam.size) @ Vd.T
            fold = _Fold(train, val, drop, lam, Vd, a_c, a_mean, X64[drop].astype(dtype),
                         stacked, (a_mean[None, :] * d) @ V.T)
        else:
            fold = _Fold(train, val, drop, lam, Vd, a_c, a_mean, (X64[drop] @ V).astype(dtype))
        out.append(fold)
    return out, full


def _dual_folds(X64: np.ndarray, folds, dtype: np.dtype):
    """Per-fold factors from sub-blocks of the kernel ``X @ X.T`` (n, n).

    Returns the folds and the eigenpairs ``(lam, Q)`` of the full kernel (refit).
    """
    kernel = X64 @ X64.T  # (n, n)
    mats = [kernel[np.ix_(train, train)] for train, _ in folds] + [kernel.copy()]
    *eig, full = [_eigh_psd(m) for m in mats]
    out = []
    for (train, val), (lam, Q) in zip(folds, eig, strict=True):
        a_c, a_mean = _centre_cols(kernel[np.ix_(val, train)] @ Q, dtype)  # (n_val, r)
        drop = _dropped(X64.shape[0], train)
        out.append(_Fold(train, val, drop, lam, Q.astype(dtype), a_c, a_mean, None))
    return out, full


def _project(fold: _Fold, Yc: np.ndarray, XtY: np.ndarray | None) -> np.ndarray:
    """The training targets as the fold's scoring GEMM takes them: ``B`` (q, v_chunk).

    Primal with filters: ``X_train.T @ Y_train = X.T @ Y - X_drop.T @ Y_drop`` (q = p);
    primal: ``V.T @ X_train.T @ Y_train = V.T @ X.T @ Y - (X_drop @ V).T @ Y_drop``
    (q = r); dual: ``Q.T @ Y_train`` (q = r).
    """
    if XtY is None:
        return fold.basis.T @ Yc[fold.train]  # (r, vc)
    B = XtY.copy() if fold.stacked is not None else fold.basis.T @ XtY  # (q, vc)
    B -= fold.x_drop.T @ Yc[fold.drop]
    return B


def _shrink(lam: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Spectral filter ``1 / (lam + alpha)``, float64 (k, r)."""
    return 1.0 / (lam[None, :] + alphas[:, None])


def _fold_scores(
    fold: _Fold, B: np.ndarray, y_val: np.ndarray, alphas: np.ndarray, score: str,
    work: np.ndarray | None = None,
) -> np.ndarray:
    """Validation scores of every penalty with one stacked GEMM.

    Parameters
    ----------
    fold : _Fold
    B : ndarray, shape (r, vc)
        Projected training targets.
    y_val : ndarray, shape (n_val, vc)
        Validation targets.
    alphas : ndarray, shape (k,)
    score : {'pearson', 'r2'}
    work : ndarray of B's dtype, shape (>= k * n_val * vc,), optional
        Buffer for the stacked predictions, reused across folds and chunks (a fresh
        allocation of this size per call costs page faults comparable to a tenth of the
        GEMM).

    Returns
    -------
    scores : ndarray of float64, shape (k, vc)
        NaN where the score is undefined (constant validation targets or predictions).
    """
    k, (n_val, r), vc = alphas.size, fold.a_c.shape, B.shape[1]
    if fold.stacked is not None:
        stacked, mean_rows = fold.stacked, fold.mean_rows  # (k * n_val, p), (k, p)
    else:
        d = _shrink(fold.lam, alphas)  # (k, r)
        stacked = (fold.a_c[None] * d[:, None, :].astype(fold.a_c.dtype)).reshape(-1, r)
        mean_rows = fold.a_mean[None, :] * d  # (k, r)
    if work is None or work.size < k * n_val * vc:
        work = np.empty(k * n_val * vc, dtype=B.dtype)
    pred_c = np.matmul(stacked, B, out=work[: k * n_val * vc].reshape(k * n_val, vc))
    pred_c = pred_c.reshape(k, n_val, vc)  # centred predictions
    y64 = y_val.astype(np.float64)
    y_mean = y64.mean(axis=0)  # (vc,)
    y64 -= y_mean
    ss_y = np.einsum("ij,ij->j", y64, y64)  # (vc,)
    y_c = y64.astype(B.dtype)
    # sums of n_val products per (penalty, target): accurate to ~1e-6 of themselves in
    # float32, and only combined (with cancellation) below, in float64
    ss_p = np.einsum("knv,knv->kv", pred_c, pred_c).astype(np.float64)  # (k, vc)
    cross = np.einsum("knv,nv->kv", pred_c, y_c).astype(np.float64)  # (k, vc)
    with np.errstate(divide="ignore", invalid="ignore"):
        if score == "pearson":
            den = np.sqrt(ss_p * ss_y)
            return np.where(den > 0, cross / den, np.nan)
        pred_mean = mean_rows @ B.astype(np.float64)  # (k, vc)
        ss_res = ss_y - 2 * cross + ss_p + n_val * (y_mean - pred_mean) ** 2
        return np.where(ss_y > 0, 1.0 - ss_res / ss_y, np.nan)


def _n_workers() -> int:
    """Cores this process may use: CPU affinity, capped by the BLAS thread setting (which
    follows ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``, as set by schedulers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    return max(1, min([cores or 1, *blas]))


def _cv_scores(fold_factors: list[_Fold], Yc: np.ndarray, XtY: np.ndarray | None,
               alphas: np.ndarray, score: str, works: list[np.ndarray]):
    """Sum and count over folds of the defined validation scores, each (k, vc) float64.

    The targets are split among ``len(works)`` workers (threads with one BLAS thread
    each and their own prediction buffer; numpy releases the GIL in GEMMs and
    reductions), so the GEMMs run as fast as with threaded BLAS and the single-threaded
    reductions around them run in parallel.
    """
    vc = Yc.shape[1]
    total = np.zeros((alphas.size, vc))
    count = np.zeros((alphas.size, vc))
    n = len(works) if vc >= 2 * len(works) else 1  # too few targets to share: one worker

    def run(worker: int) -> None:
        part = slice(worker * vc // n, (worker + 1) * vc // n)
        y, xty = Yc[:, part], None if XtY is None else XtY[:, part]
        for fold in fold_factors:
            s = _fold_scores(fold, _project(fold, y, xty), y[fold.val], alphas, score,
                             works[worker])
            seen = ~np.isnan(s)
            total[:, part] += np.where(seen, s, 0.0)
            count[:, part] += seen

    if n == 1:
        run(0)
        return total, count
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n) as pool:
        list(pool.map(run, range(n)))
    return total, count


def _best_alpha_index(cv_scores: np.ndarray) -> np.ndarray:
    """argmax over penalties (k, v) -> (v,); ties go to the smaller penalty, all-NaN
    columns to the largest penalty."""
    filled = np.where(np.isnan(cv_scores), -np.inf, cv_scores)
    idx = np.argmax(filled, axis=0)
    idx[np.isnan(cv_scores).all(axis=0)] = cv_scores.shape[0] - 1
    return idx


def _refit_primal(lam, V, XtY, alpha):
    """Primal refit ``V diag(1/(lam+alpha_j)) V.T X.T y_j`` for all targets: (p, vc)."""
    D = 1.0 / (lam[:, None] + alpha[None, :])  # (r, vc)
    return V @ ((V.T @ XtY) * D.astype(V.dtype))


def _refit_dual(lam, Q, X, Yc, alpha):
    """Dual refit ``X.T Q diag(1/(lam+alpha_j)) Q.T y_j`` for all targets: (p, vc)."""
    D = 1.0 / (lam[:, None] + alpha[None, :])  # (r, vc)
    return X.T @ (Q @ ((Q.T @ Yc) * D.astype(Q.dtype)))


def _chunks(v: int, chunk_size: int) -> Iterator[slice]:
    for start in range(0, v, chunk_size):
        yield slice(start, min(start + chunk_size, v))


# --------------------------------------------------------------------------- public API
def ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    groups: np.ndarray,
    alphas: np.ndarray,
    n_folds: int = 5,
    score: str = "pearson",
    dtype: str | np.dtype = "float32",
    chunk_size: int = 20000,
    gap: int = 0,
    backend: str = "numpy",
    device: str | None = None,
) -> RidgeCVResult:
    """Ridge regression (no intercept) with a per-target penalty chosen by grouped CV.

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Features; must be finite. Centre/z-score them beforehand (no intercept is fit).
    Y : ndarray, shape (n, v)
        Targets. Constant or non-finite targets are excluded (see ``valid``).
    groups : array-like, shape (n,)
        Group label per sample (the run); folds never split a group
        (:func:`group_kfold`).
    alphas : array-like, shape (k,)
        Positive penalties to score.
    n_folds : int
        Number of folds, ``2 <= n_folds <= n_groups``.
    score : {'pearson', 'r2'}
        Validation score, averaged over folds (folds where it is undefined are skipped).
    dtype : {'float32', 'float64'}
        dtype of the large GEMMs; decompositions and reductions are float64.
    chunk_size : int
        Targets processed at once (bounds memory at about
        ``k * n_val * chunk_size`` values).
    gap : int
        Samples dropped from training on either side of each validation stretch
        (:func:`group_kfold`).
    backend : {'numpy', 'torch', 'auto'}
        ``'torch'`` runs on ``device`` (CPU or CUDA; X and Y may then be tensors);
        ``'auto'`` picks torch when the inputs are tensors or CUDA is available.
    device : str, optional
        torch device, e.g. ``'cuda'``; default the inputs' device, else CUDA when
        available, else CPU.

    Returns
    -------
    result : RidgeCVResult
        ``best_alpha`` (v,), ``cv_scores`` (k, v), ``coef`` (p, v), ``valid`` (v,).
    """
    X, Y, alphas, folds, dt = _check_inputs(
        X, Y, groups, alphas, n_folds, score, dtype, chunk_size, gap
    )
    backend, device = resolve_backend(backend, device, X, Y)
    if backend == "torch":
        best_alpha, cv_scores, coef, valid = ridge_cv_torch(
            X, Y, folds, alphas, score, dt, int(chunk_size), device
        )
        return RidgeCVResult(best_alpha, cv_scores, coef, valid, alphas, len(folds))
    (n, p), v, k = X.shape, Y.shape[1], alphas.size
    valid = valid_targets(Y)
    X64 = X.astype(np.float64)
    Xd = X.astype(dt)
    primal = p <= n
    # the prediction buffers hold k * n_val * chunk values; the primal filters may take as
    # much (and always a few MB)
    n_val_max = max(val.size for _, val in folds)
    budget = max(k * n_val_max * min(int(chunk_size), v), _MIN_FILTER_BUDGET)
    fold_factors, (lam_all, basis_all) = (
        _primal_folds(X64, folds, dt, alphas, budget) if primal else _dual_folds(X64, folds, dt)
    )
    basis_all = basis_all.astype(dt)
    del X64

    cv_scores = np.full((k, v), np.nan)
    best_alpha = np.full(v, np.nan)
    coef = np.zeros((p, v), dtype=dt)
    # one worker per core, each with one BLAS thread and its own prediction buffer: the
    # GEMMs run as fast as with threaded BLAS, and the reductions around them in parallel
    n_workers = _n_workers()
    part = -(-min(int(chunk_size), v) // n_workers)  # targets per worker, rounded up
    works = [np.empty(k * n_val_max * part, dtype=dt) for _ in range(n_workers)]
    for sl in _chunks(v, int(chunk_size)):
        ok = valid[sl]
        if not ok.any():
            continue
        whole = bool(ok.all())
        # (n, vc) valid targets: a view when possible (GEMMs take row-strided arrays)
        Yc = Y[:, sl].astype(dt, copy=False) if whole else Y[:, sl][:, ok].astype(dt)
        XtY = Xd.T @ Yc if primal else None  # (p, vc)
        total, count = _cv_scores(fold_factors, Yc, XtY, alphas, score, works)
        with np.errstate(invalid="ignore"):
            mean_scores = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        alpha = alphas[_best_alpha_index(mean_scores)]  # (vc,)
        cols = sl if whole else np.arange(sl.start, sl.stop)[ok]
        cv_scores[:, cols] = mean_scores
        best_alpha[cols] = alpha
        if primal:
            coef[:, cols] = _refit_primal(lam_all, basis_all, XtY, alpha)
        else:
            coef[:, cols] = _refit_dual(lam_all, basis_all, Xd, Yc, alpha)
    return RidgeCVResult(best_alpha, cv_scores, coef, valid, alphas, len(folds))


def ridge_predict(X: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Predictions of a fitted ridge model.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    coef : ndarray, shape (p, v)

    Returns
    -------
    Y_pred : ndarray, shape (n, v)
        In the dtype of ``coef``.
    """
    X = np.asarray(X)
    coef = np.asarray(coef)
    if X.ndim != 2 or coef.ndim != 2 or X.shape[1] != coef.shape[0]:
        raise ValueError(
            f"X (n, p) and coef (p, v) must agree on p, got shapes {X.shape} and {coef.shape}"
        )
    return X.astype(coef.dtype, copy=False) @ coef
