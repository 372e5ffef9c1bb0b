"""Ridge regression with a per-target penalty chosen by grouped cross-validation.

The algorithm is written once, over the backend primitives of
:mod:`cortexscale.encoding.backends` (numpy, torch on CPU or CUDA). Per fold the training
features are decomposed once, in float64:

- primal (``p <= n``): eigendecomposition of the Gram matrix ``X_train.T @ X_train``,
  downdated from the full Gram matrix (``G - X_drop.T @ X_drop``);
- dual (``p > n``): eigendecomposition of the kernel ``X_train @ X_train.T``, a
  sub-block of the full kernel.

Either way the centred validation predictions for penalty ``alpha`` are
``U @ diag(1 / (lam + alpha)) @ Z`` with ``U`` (n_val, r) from the features and ``Z``
(r, v) the training targets projected on the fold's eigenbasis. Every penalty is scored on
every fold in one of two ways, chosen per fold by their cost (:func:`_choose_mode`):

- **direct**: the predictions of all penalties with one stacked GEMM
  ``(k * n_val, r) @ (r, v_chunk)`` (primal: the per-penalty filters applied to the
  features once, ``(k * n_val, p) @ X_train.T @ Y_train``), then their sums of products;
- **spectral**: the sums themselves from a few GEMMs, without the predictions
  (:mod:`cortexscale.encoding.ridge_spectral`): for ``k * n_val`` much larger than ``p``.

Both give the same three sums per penalty and target (cross product with the validation
targets, squared norm, mean), in the compute dtype, cast to float64 at the same point,
and one function turns them into Pearson r or R^2. The refit on all training samples uses
one more decomposition and a per-target diagonal, so targets with different penalties
share one GEMM.

Targets that are constant or hold NaN/inf in the training data are excluded: they get
a zero coefficient, a NaN penalty and NaN scores, and are reported by the ``valid`` mask
of :class:`RidgeCVResult`.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from cortexscale.encoding import ridge_spectral
from cortexscale.encoding.backends import get_backend, is_tensor, resolve_backend

__all__ = [
    "DTYPES",
    "METHODS",
    "SCORES",
    "RidgeCVResult",
    "group_kfold",
    "ridge_cv",
    "ridge_predict",
]

SCORES = ("pearson", "r2")
DTYPES = ("float32", "float64")
METHODS = ("auto", "direct", "spectral")
_MIN_FILTER_BUDGET = 2**22  # values the primal per-penalty filters may always take
_REDUCTION_COST = 8  # multiply-adds one element of a memory-bound product-sum is worth


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
    """Factors of one fold (backend arrays): centred validation predictions are
    ``a_c @ diag(1/(lam+alpha)) @ Z``."""

    train: Any  # (n_train,) int64 sample indices
    val: Any  # (n_val,) int64 sample indices
    drop: Any  # (n - n_train,) int64: validation samples and the gap around them
    lam: Any  # (r,) float64 eigenvalues (> 0)
    basis: Any  # (p, r) primal V or (n_train, r) dual Q, compute dtype
    a_c: Any  # (n_val, r) A centred over validation samples, compute dtype
    mean_rows: Any  # (k, q) float64: mean prediction rows, ``a_mean diag(1/(lam+alpha))
    #                 [V.T]`` (q = p with filters, else r)
    x_drop: Any  # primal: (n - n_train, q) X_drop (q = p, filters) or X_drop @ V (q = r)
    mode: str  # 'filter' | 'project' | 'spectral'
    stacked: Any = None  # filter: (k * n_val, p) A_c diag(1/(lam+alpha)) V.T per alpha
    spectral: ridge_spectral.SpectralFactors | None = None


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
        raise ValueError(f"groups must be 1-D (n,), found shape {groups.shape}")
    unique = np.unique(groups)
    if unique.size < 2:
        raise ValueError(
            f"groups holds {unique.size} distinct run(s); cross-validation by run needs at "
            "least 2 (split a single run into blocks of TRs and pass those as groups)"
        )
    if not isinstance(n_folds, int | np.integer) or not 2 <= n_folds <= unique.size:
        raise ValueError(
            f"n_folds must be an integer in [2, n_groups = {unique.size}] (one run per fold "
            f"at least), found {n_folds!r}"
        )
    if not isinstance(gap, int | np.integer) or gap < 0:
        raise ValueError(f"gap must be a non-negative integer (samples), found {gap!r}")
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
def _check_inputs(X, Y, groups, alphas, n_folds, score, dtype, chunk_size, gap, method):
    if not is_tensor(X):
        X = np.asarray(X)
    if not is_tensor(Y):
        Y = np.asarray(Y)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), found shape {X.shape}")
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D (n_samples, n_targets), found shape {Y.shape}")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(
            f"X and Y must have the same number of samples, found {X.shape[0]} and {Y.shape[0]}"
        )
    groups = np.asarray(groups)
    if groups.shape != (X.shape[0],):
        raise ValueError(f"groups must have shape ({X.shape[0]},), found {groups.shape}")
    finite = bool(X.isfinite().all()) if is_tensor(X) else bool(np.isfinite(X).all())
    if not finite:
        raise ValueError("X holds NaN or inf; features must be finite")
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not (np.isfinite(alphas) & (alphas > 0)).all():
        raise ValueError(
            f"alphas must be a non-empty 1-D array of positive finite values, found {alphas}"
        )
    if score not in SCORES:
        raise ValueError(f"score must be one of {list(SCORES)}, found {score!r}")
    if str(np.dtype(dtype)) not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, found {dtype!r}")
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, found {chunk_size!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, found {method!r}")
    folds = group_kfold(groups, n_folds, gap)
    return X, Y, alphas, folds, np.dtype(dtype)


# --------------------------------------------------------------------------- fold factors
def _shrink(lam, alphas):
    """Spectral filter ``1 / (lam + alpha)``, float64 (k, r)."""
    return 1.0 / (lam[None, :] + alphas[:, None])


def _dropped(n: int, train: np.ndarray) -> np.ndarray:
    """Samples outside ``train``: (n - n_train,) int64."""
    keep = np.zeros(n, dtype=bool)
    keep[train] = True
    return np.flatnonzero(~keep)


def _choose_mode(method: str, primal: bool, filters: bool, r: int, p: int, n_train: int,
                 n_val: int, n_drop: int, k: int, n_pairs: int) -> str:
    """Scoring path of one fold: the cheapest in multiply-adds per target, unless forced.

    direct with filters (primal): ``k n_val p + n_drop p`` GEMM work and ``k n_val`` summed
    products (memory-bound, weighted by ``_REDUCTION_COST``); direct with projection:
    the projection (primal ``r p + n_drop r``, dual ``n_train r``) + ``k n_val r`` + the
    sums; spectral: the projection + ``r^2 + n_val r`` + a few ``k r`` +
    ``k n_pairs`` (:mod:`cortexscale.encoding.ridge_spectral`).
    """
    project = r * p + n_drop * r if primal else n_train * r
    sums = _REDUCTION_COST * 2 * k * n_val
    direct = (k * n_val * p + n_drop * p + sums) if filters else (project + k * n_val * r + sums)
    if method == "direct":
        return "filter" if filters else "project"
    if method == "spectral":
        return "spectral"
    cost = project + ridge_spectral.cost(r, n_val, k, n_pairs)
    if cost < direct and n_pairs <= ridge_spectral.MAX_PAIRS_PER_MODE * r:
        return "spectral"
    return "filter" if filters else "project"


def _fold_factors(bk, X64, folds, dt, alphas, budget: int, method: str):
    """Per-fold factors and the eigenpairs ``(lam, basis)`` of the full problem (refit).

    Primal (``p <= n``): eigendecomposition of the downdated Gram matrix ``X.T @ X``
    (p, p). When the training Gram matrix has full rank and the per-penalty filters of all
    folds fit in ``budget`` values, the direct path applies them to the features once
    (``stacked = A_c diag(1/(lam+alpha)) V.T``), which saves projecting the targets on
    each fold's basis. Dual (``p > n``): sub-blocks of the kernel ``X @ X.T`` (n, n).
    """
    (n, p), k = X64.shape, alphas.shape[0]
    primal = p <= n
    full = X64.T @ X64 if primal else X64 @ X64.T  # (p, p) or (n, n)
    drops = [bk.index(_dropped(n, train)) for train, _ in folds]
    idx = [(bk.index(train), bk.index(val)) for train, val in folds]
    if primal:
        mats = [full - X64[d].T @ X64[d] for d in drops]
    else:
        mats = [full[tr][:, tr] for tr, _ in idx]
    eig = [bk.eigh_psd(m) for m in mats]
    del mats
    filters = primal and (all(lam.shape[0] == p for lam, _ in eig)
                          and k * p * sum(val.size for _, val in folds) <= budget)
    out = []
    for (train, val), (tr, va), drop, (lam, basis) in zip(folds, idx, drops, eig, strict=True):
        A = X64[va] @ basis if primal else full[va][:, tr] @ basis  # (n_val, r)
        a_mean = A.mean(0)
        A -= a_mean
        r = lam.shape[0]
        d = _shrink(lam, alphas)  # (k, r) float64
        close = ridge_spectral.close_pairs(bk, lam) if method != "direct" else None
        mode = _choose_mode(method, primal, filters, r, p, train.size, val.size,
                            n - train.size, k, 0 if close is None else close[0].shape[0])
        a_c = bk.cast(A, dt)
        basis_d = bk.cast(basis, dt)
        common = dict(train=tr, val=va, drop=drop, lam=lam, basis=basis_d, a_c=a_c, mode=mode)
        if mode == "filter":
            stacked = (a_c[None] * bk.cast(d, dt)[:, None, :]).reshape(-1, r) @ basis_d.T
            fold = _Fold(**common, mean_rows=(a_mean[None, :] * d) @ basis.T,
                         x_drop=bk.cast(X64[drop], dt), stacked=stacked)
        else:
            spectral = (ridge_spectral.factors(bk, lam, A, d, alphas, close, dt)
                        if mode == "spectral" else None)
            fold = _Fold(**common, mean_rows=a_mean[None, :] * d,
                         x_drop=bk.cast(X64[drop] @ basis, dt) if primal else None,
                         spectral=spectral)
        out.append(fold)
    # last: eigh_psd may overwrite its matrix, and the dual folds read the kernel above
    return out, bk.eigh_psd(full)


# --------------------------------------------------------------------------- scoring
def _project(fold: _Fold, Yc, XtY):
    """The training targets as the fold's scoring takes them, (q, v_chunk).

    Primal with filters: ``X_train.T @ Y_train = X.T @ Y - X_drop.T @ Y_drop`` (q = p);
    primal: ``Z = V.T @ X.T @ Y - (X_drop @ V).T @ Y_drop`` (q = r); dual:
    ``Z = Q.T @ Y_train`` (q = r).
    """
    if XtY is None:
        return fold.basis.T @ Yc[fold.train]  # (r, vc)
    B = XtY if fold.mode == "filter" else fold.basis.T @ XtY  # (q, vc)
    return B - fold.x_drop.T @ Yc[fold.drop]


def _direct_sums(bk, fold: _Fold, B, y_c, alphas, work):
    """Cross products and squared norms (k, vc) float64 of the centred validation
    predictions of every penalty, computed with one stacked GEMM into ``work``."""
    k, (n_val, r), vc = alphas.shape[0], fold.a_c.shape, B.shape[1]
    if fold.mode == "filter":
        stacked = fold.stacked  # (k * n_val, p)
    else:
        d = bk.cast(_shrink(fold.lam, alphas), fold.a_c.dtype)  # (k, r)
        stacked = (fold.a_c[None] * d[:, None, :]).reshape(-1, r)
    if work.shape[0] < k * n_val * vc:  # one worker took more targets than a share
        work = bk.empty(k * n_val * vc, B.dtype)
    pred_c = bk.matmul(stacked, B, out=work).reshape(k, n_val, vc)
    # sums of n_val products per (penalty, target): accurate to ~1e-6 of themselves in
    # float32, and only combined (with cancellation) in _scores, in float64
    return bk.colsum_products(pred_c, y_c), bk.colsum_products(pred_c, pred_c)


def _scores(bk, score: str, cross, ss_p, ss_y, y_mean, pred_mean, n_val: int):
    """Validation scores (k, vc) float64 from the sums of one fold.

    Parameters
    ----------
    cross, ss_p : (k, vc) float64
        ``sum_i pred_c * y_c`` and ``sum_i pred_c ** 2`` over the validation samples, with
        ``pred_c`` the centred predictions and ``y_c`` the centred targets.
    ss_y, y_mean : (vc,) float64
    pred_mean : (k, vc) float64 or None
        Mean prediction (R^2 only).

    Returns
    -------
    scores : (k, vc) float64
        NaN where the score is undefined (constant validation targets or predictions).
    """
    nan = float("nan")
    with bk.errstate():
        if score == "pearson":
            den = bk.sqrt(ss_p * ss_y)
            return bk.where(den > 0, cross / den, nan)
        ss_res = ss_y - 2 * cross + ss_p + n_val * (y_mean - pred_mean) ** 2
        return bk.where(ss_y > 0, 1.0 - ss_res / ss_y, nan)


def _fold_scores(bk, fold: _Fold, Yc, XtY, alphas, score: str, work):
    """Scores (k, vc) float64 of every penalty on one fold."""
    B = _project(fold, Yc, XtY)  # (q, vc)
    y64 = bk.cast(Yc[fold.val], bk.float64)
    y_mean = y64.mean(0)  # (vc,)
    y64 = y64 - y_mean
    ss_y = (y64 * y64).sum(0)  # (vc,)
    y_c = bk.cast(y64, B.dtype)
    if fold.mode == "spectral":
        cross, ss_p = ridge_spectral.sums(bk, fold.spectral, fold.a_c, B, y_c)
    else:
        cross, ss_p = _direct_sums(bk, fold, B, y_c, alphas, work)
    pred_mean = fold.mean_rows @ bk.cast(B, bk.float64) if score == "r2" else None
    return _scores(bk, score, cross, ss_p, ss_y, y_mean, pred_mean, fold.val.shape[0])


def _cv_scores(bk, fold_factors: list[_Fold], Yc, XtY, alphas, score: str, works: list):
    """Sum and count over folds of the defined validation scores, each (k, vc) float64.

    With the numpy backend the targets are split among ``len(works)`` workers (threads
    with one BLAS thread each and their own prediction buffer; numpy releases the GIL in
    GEMMs and reductions), so the GEMMs run as fast as with threaded BLAS and the
    single-threaded reductions around them run in parallel. torch has one worker.
    """
    k, vc = alphas.shape[0], Yc.shape[1]
    total = bk.zeros((k, vc), bk.float64)
    count = bk.zeros((k, vc), bk.float64)
    n = len(works) if vc >= 2 * len(works) else 1  # too few targets to share: one worker

    def run(worker: int) -> None:
        part = slice(worker * vc // n, (worker + 1) * vc // n)
        y, xty = Yc[:, part], None if XtY is None else XtY[:, part]
        for fold in fold_factors:
            s = _fold_scores(bk, fold, y, xty, alphas, score, works[worker])
            seen = ~bk.isnan(s)
            total[:, part] += bk.where(seen, s, 0.0)
            count[:, part] += bk.cast(seen, bk.float64)

    if n == 1:
        run(0)
        return total, count
    with bk.single_thread_blas(), ThreadPoolExecutor(n) as pool:
        list(pool.map(run, range(n)))
    return total, count


def _best_alpha_index(bk, cv_scores):
    """argmax over penalties (k, v) -> (v,); ties go to the smaller penalty, all-NaN
    columns to the largest penalty."""
    nan = bk.isnan(cv_scores)
    idx = bk.argmax0(bk.where(nan, -np.inf, cv_scores))
    idx[nan.all(0)] = cv_scores.shape[0] - 1
    return idx


# --------------------------------------------------------------------------- refit
def _refit(bk, primal: bool, lam, basis, Xd, Yc, XtY, alpha):
    """Coefficients (p, vc) for per-target penalties ``alpha`` (vc,) in one GEMM chain:
    primal ``V diag(1/(lam+alpha_j)) V.T X.T y_j``, dual
    ``X.T Q diag(1/(lam+alpha_j)) Q.T y_j``."""
    D = bk.cast(1.0 / (lam[:, None] + alpha[None, :]), basis.dtype)  # (r, vc)
    if primal:
        return basis @ ((basis.T @ XtY) * D)
    return Xd.T @ (basis @ ((basis.T @ Yc) * D))


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
    method: str = "auto",
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
    method : {'auto', 'direct', 'spectral'}
        How every penalty is scored on a fold: ``'direct'`` from the validation
        predictions (one stacked GEMM), ``'spectral'`` from the partial-fraction sums
        (:mod:`cortexscale.encoding.ridge_spectral`), ``'auto'`` the cheaper per fold.

    Returns
    -------
    result : RidgeCVResult
        ``best_alpha`` (v,), ``cv_scores`` (k, v), ``coef`` (p, v), ``valid`` (v,).
    """
    X, Y, alphas, folds, dt = _check_inputs(
        X, Y, groups, alphas, n_folds, score, dtype, chunk_size, gap, method
    )
    name, device = resolve_backend(backend, device, X, Y)
    bk = get_backend(name, device)
    with bk.compute_context():
        best_alpha, cv_scores, coef, valid = _ridge_cv(bk, X, Y, folds, alphas, score,
                                                       bk.dtype(dt), int(chunk_size), method)
    return RidgeCVResult(best_alpha, cv_scores, coef, valid, alphas, len(folds))


def _ridge_cv(bk, X, Y, folds, alphas, score, dt, chunk_size, method):
    X, Y = bk.asarray(X), bk.asarray(Y)
    (n, p), v, k = X.shape, Y.shape[1], alphas.size
    valid = bk.valid_targets(Y)
    X64 = bk.cast(X, bk.float64)
    Xd = bk.cast(X, dt)
    primal = p <= n
    # the prediction buffers hold k * n_val * chunk values; the primal filters may take as
    # much (and always a few MB)
    n_val_max = max(val.size for _, val in folds)
    budget = max(k * n_val_max * min(chunk_size, v), _MIN_FILTER_BUDGET)
    alphas_b = bk.asarray(alphas, bk.float64)
    fold_factors, (lam_all, basis_all) = _fold_factors(bk, X64, folds, dt, alphas_b, budget,
                                                       method)
    basis_all = bk.cast(basis_all, dt)
    del X64

    cv_scores = bk.full((k, v), float("nan"), bk.float64)
    best_alpha = bk.full((v,), float("nan"), bk.float64)
    coef = bk.zeros((p, v), dt)
    n_workers = bk.workers()
    part = -(-min(chunk_size, v) // n_workers)  # targets per worker, rounded up
    direct = any(f.mode != "spectral" for f in fold_factors)
    works = [bk.empty(k * n_val_max * part if direct else 0, dt) for _ in range(n_workers)]
    for sl in _chunks(v, chunk_size):
        ok = valid[sl]
        if not bk.any(ok):
            continue
        whole = bk.all(ok)
        # (n, vc) valid targets: a view when possible (GEMMs take row-strided arrays)
        Yc = bk.cast(Y[:, sl] if whole else Y[:, sl][:, ok], dt)
        XtY = Xd.T @ Yc if primal else None  # (p, vc)
        total, count = _cv_scores(bk, fold_factors, Yc, XtY, alphas_b, score, works)
        with bk.errstate():
            mean_scores = bk.where(count > 0, total / (count + (count == 0)), float("nan"))
        alpha = alphas_b[_best_alpha_index(bk, mean_scores)]  # (vc,)
        cols = sl if whole else bk.arange(sl.start, sl.stop)[ok]
        cv_scores[:, cols] = mean_scores
        best_alpha[cols] = alpha
        coef[:, cols] = _refit(bk, primal, lam_all, basis_all, Xd, Yc, XtY, alpha)
    return (bk.to_numpy(best_alpha), bk.to_numpy(cv_scores), bk.to_numpy(coef),
            bk.to_numpy(valid))


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
            f"X (n, p) and coef (p, v) must agree on p, found shapes {X.shape} and {coef.shape}"
        )
    return X.astype(coef.dtype, copy=False) @ coef
