"""The design matrices of an encoding model, from runs of features and responses.

A run is a dict ``run, stimulus, split, x (n_TR, d), y (n_TR, v)``. :func:`align` cuts the
features and responses of a run to one TR count; :func:`design` concatenates runs into
z-scored, FIR-delayed features and z-scored responses; :func:`average_repeats` and
:func:`repeat_stack` merge the repeats of a test stimulus (for the score and for the noise
ceiling). Alternatives to FIR delays and to raw features: :func:`hrf_convolve` (one
regressor per feature, convolved with the Glover HRF run by run) and :func:`fit_pca` (a
basis fit on training samples only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.signal

from cortexscale.encoding.delays import make_delays, run_slices, zscore_per_run
from cortexscale.errors import ConfigError, InputError
from cortexscale.logs import get_logger

__all__ = ["PCA", "align", "average_repeats", "feature_design", "features_only",
           "fit_pca", "glover_hrf", "hrf_convolve", "repeat_stack", "response_design"]

log = get_logger(__name__)


# --------------------------------------------------------------------------- runs
def align(
    feats: np.ndarray, resp: np.ndarray, run: str, key: str, feat_path: str | os.PathLike,
    resp_path: str | os.PathLike,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut features and responses of one run to a common TR count.

    Features longer than the run are cut to the run (a stimulus's features cover its
    longest run); features shorter by one TR trim the run's end; shorter by more is an error.

    Parameters
    ----------
    feats : ndarray, shape (n_feat, d)
    resp : ndarray, shape (n_resp, v)
    run, key : str
        The run and the features' dataset, for messages.
    feat_path, resp_path : path-like
        The files they were read from, for messages (nothing is read here).

    Returns
    -------
    feats : ndarray, shape (n, d)
    resp : ndarray, shape (n, v)
        ``n = min(n_feat, n_resp)``.

    Raises
    ------
    InputError
        If the features are more than one TR shorter than the run.
    """
    n_feat, n_resp = feats.shape[0], resp.shape[0]
    if n_resp - n_feat > 1:
        raise InputError(
            f"features {feat_path}[{key!r}] have {n_feat} TRs but run {run!r} in {resp_path} "
            f"has {n_resp} TRs; at most 1 TR of difference is trimmed"
        )
    n = min(n_feat, n_resp)
    if n_feat != n_resp:
        log.info(
            f"run {run!r}: {n_resp} TRs in {resp_path}, {n_feat} in {feat_path}[{key!r}]; "
            f"both cut to {n}"
        )
    return feats[:n], resp[:n]


def feature_design(runs: list[dict[str, Any]], delays: list[int]) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Concatenate runs' features: z-scored per run, delayed (n, d * n_delays), and the run
    index per row (n,). The responses are made apart (:func:`response_design`), so that the
    features' design is built once for every ROI of a subject.

    Raises
    ------
    ConfigError
        If a delay is as long as a run (the delayed copy would hold no sample of it).
    """
    longest = max(abs(int(d)) for d in delays)
    for r in runs:
        if longest >= r["x"].shape[0]:
            raise ConfigError(
                f"encoding.delays: a delay of {longest} TRs does not fit run "
                f"{r.get('run', r.get('stimulus'))!r} of {r['x'].shape[0]} TRs; expected delays "
                f"shorter than the shortest run"
            )
    groups = np.concatenate([np.full(r["x"].shape[0], i) for i, r in enumerate(runs)])
    x = zscore_per_run(np.concatenate([r["x"] for r in runs]).astype(np.float64), groups)
    return make_delays(x, delays, groups), groups


def response_design(runs: list[dict[str, Any]], groups: np.ndarray,
                    columns: np.ndarray | None = None) -> np.ndarray:
    """Concatenate runs' responses, z-scored per run: float64 (n, v) of the ``columns`` of
    every run's ``y`` (default all); ``groups`` (n,) as :func:`feature_design` returned it
    for the same runs."""
    ys = [r["y"] if columns is None else r["y"][:, columns] for r in runs]
    return zscore_per_run(np.concatenate(ys).astype(np.float64), groups)


def features_only(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs with their responses cut to no column (their TRs kept), for
    :func:`average_repeats` of the features alone (no response is averaged)."""
    return [{**r, "y": r["y"][:, :0]} for r in runs]


def average_repeats(test: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per test stimulus, responses averaged over its repeats (cut to the
    shortest repeat); each repeat is z-scored before averaging."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for r in test:
        merged.setdefault(r["stimulus"], []).append(r)
    out = []
    for stimulus, reps in merged.items():
        n = min(r["y"].shape[0] for r in reps)
        y = np.mean([zscore_per_run(r["y"][:n].astype(np.float64)) for r in reps], axis=0)
        out.append({"run": stimulus, "stimulus": stimulus, "x": reps[0]["x"][:n], "y": y,
                    "n_repeats": len(reps)})
    return out


def repeat_stack(test: list[dict[str, Any]]) -> np.ndarray | None:
    """Z-scored test repeats stacked as (n_repeats, n_TR, v), stimuli concatenated in time;
    None unless every test stimulus was shown the same number (>= 2) of times."""
    merged: dict[str, list[np.ndarray]] = {}
    for r in test:
        merged.setdefault(r["stimulus"], []).append(r["y"])
    counts = {len(reps) for reps in merged.values()}
    if len(counts) != 1 or counts.pop() < 2:
        return None
    per_stimulus = []
    for reps in merged.values():
        n = min(y.shape[0] for y in reps)
        per_stimulus.append(np.stack([zscore_per_run(y[:n].astype(np.float64)) for y in reps]))
    return np.concatenate(per_stimulus, axis=1)


# --------------------------------------------------------------------------- alternatives
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
        raise ValueError(f"tr must be a positive number of seconds, found {tr!r}")
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
        raise ValueError(f"X must be 2-D (n_samples, n_features), found shape {X.shape}")
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
                f"X must have shape (n, {self.mean.size}) like the fit data, found {X.shape}"
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
        raise ValueError(f"X must be 2-D (n_samples, n_features), found shape {X.shape}")
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
            f"(0, 1), found {n_components!r}"
        )
    return PCA(mean, V[:, :q], ratio[:q])
