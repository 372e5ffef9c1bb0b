"""Feature-side helpers besides FIR delays: HRF convolution and PCA reduction.

Both work per run where time matters (the HRF never crosses a run boundary) and fit
anything learned (the PCA basis) on training samples only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from cortexscale.encoding.delays import run_slices

__all__ = ["PCA", "fit_pca", "glover_hrf", "hrf_convolve"]


def glover_hrf(tr: float, time_length: float = 32.0, oversampling: int = 1) -> np.ndarray:
    """The Glover canonical HRF sampled every ``tr / oversampling`` seconds.

    Uses :func:`nilearn.glm.first_level.glover_hrf` (nilearn is imported lazily).

    Parameters
    ----------
    tr : float
        Repetition time in seconds (> 0).
    time_length : float
        Length of the kernel in seconds.
    oversampling : int

    Returns
    -------
    hrf : ndarray of float64, shape (m,)
        Sums to 1 (nilearn's normalisation).
    """
    if not np.isfinite(tr) or tr <= 0:
        raise ValueError(f"tr must be a positive number of seconds, got {tr!r}")
    try:
        from nilearn.glm.first_level import glover_hrf as _glover
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("hrf_convolve needs nilearn (pip install nilearn)") from err
    return np.asarray(
        _glover(float(tr), oversampling=int(oversampling), time_length=float(time_length)),
        dtype=np.float64,
    )


def hrf_convolve(
    X: np.ndarray, tr: float, groups: np.ndarray | None = None, time_length: float = 32.0
) -> np.ndarray:
    """Causal convolution of every feature with the Glover HRF, run by run.

    An alternative to :func:`~cortexscale.encoding.delays.make_delays`: one regressor per
    feature instead of ``n_delays``, at the price of a fixed response shape.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    tr : float
        Repetition time in seconds.
    groups : array-like, shape (n,), optional
        Run label per sample; the response never leaks across runs. None: one run.
    time_length : float
        Kernel length in seconds.

    Returns
    -------
    X_hrf : ndarray of float64, shape (n, p)
        ``X_hrf[t] = sum_s hrf[s] * X[t - s]`` within each run.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or inf; features must be finite")
    h = glover_hrf(tr, time_length)
    out = np.empty_like(X)
    for idx in run_slices(groups, X.shape[0]):
        run = X[idx]  # (m, p)
        out[idx] = scipy.signal.oaconvolve(run, h[:, None], axes=0)[: run.shape[0]]
    return out


@dataclass(frozen=True)
class PCA:
    """A PCA basis fit on training samples.

    Attributes
    ----------
    mean : ndarray of float64, shape (p,)
    components : ndarray of float64, shape (p, q)
        Orthonormal columns, by decreasing variance.
    explained_variance_ratio : ndarray of float64, shape (q,)
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Project ``X`` (n, p) on the basis: (n, q), in X's float dtype."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.mean.size:
            raise ValueError(
                f"X must have shape (n, {self.mean.size}) like the fit data, got {X.shape}"
            )
        dt = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64
        return ((X - self.mean) @ self.components).astype(dt, copy=False)


def fit_pca(X: np.ndarray, n_components: int | float) -> PCA:
    """Fit a PCA basis (float64, via the eigendecomposition of the covariance or kernel).

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Training features only (fitting on test samples leaks).
    n_components : int or float
        Number of components (``1 <= q <= min(n, p)``) or, if a float in (0, 1), the
        smallest number explaining that fraction of the variance.

    Returns
    -------
    pca : PCA
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or inf; features must be finite")
    n, p = X.shape
    mean = X.mean(0)
    Xc = X - mean
    if p <= n:
        lam, V = np.linalg.eigh(Xc.T @ Xc)  # (p,), (p, p)
    else:
        lam, U = np.linalg.eigh(Xc @ Xc.T)  # (n,), (n, n)
        V = Xc.T @ U / np.sqrt(np.maximum(lam, np.finfo(float).tiny))
    order = np.argsort(lam)[::-1]
    lam, V = np.maximum(lam[order], 0.0), V[:, order]
    ratio = lam / lam.sum() if lam.sum() > 0 else np.zeros_like(lam)
    rank = min(n, p)
    if isinstance(n_components, float) and 0 < n_components < 1:
        q = int(np.searchsorted(np.cumsum(ratio), n_components) + 1)
    elif isinstance(n_components, int | np.integer) and 1 <= n_components <= rank:
        q = int(n_components)
    else:
        raise ValueError(
            f"n_components must be an integer in [1, min(n, p) = {rank}] or a float in "
            f"(0, 1), got {n_components!r}"
        )
    return PCA(mean, V[:, :q], ratio[:q])
