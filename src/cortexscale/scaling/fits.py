"""Scaling-law fits of encoding accuracy against data size, parameters or compute.

Two laws, both in ``log10 x``:

- log-linear: ``r = a + b * log10(x)``; ``b`` is the gain per tenfold increase.
- saturating power law: ``r = r_inf - c * x**(-alpha)``, with ``alpha > 0``; the gain per
  tenfold is reported at the largest ``x`` observed.

Uncertainty comes from a paired bootstrap over parcels: the same resampled set of parcels
is used at every ``x`` (each parcel is one unit seen at every grid point), and the law is fit
to the mean over the resampled parcels. Percentile intervals at the requested level.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

ALPHA_MIN, ALPHA_MAX = 1e-3, 2.0

LAWS = ("loglinear", "saturating")


@dataclass(frozen=True)
class Fit:
    """One fitted law with its goodness of fit.

    Attributes
    ----------
    law : str
        ``loglinear`` or ``saturating``.
    params : dict of str -> float
        ``a, b`` (log-linear) or ``r_inf, c, alpha`` (saturating); NaN if the fit failed.
    r2 : float
        Coefficient of determination of the fit on the points it was fit to.
    gain_per_decade : float
        Predicted change of ``r`` from ``x_max`` to ``10 * x_max``.
    """

    law: str
    params: dict[str, float]
    r2: float
    gain_per_decade: float


def _check_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of one length, got shapes {x.shape} and {y.shape}")
    if np.any(~np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"x must be finite and positive (it is log-scaled), got {x}")
    if np.any(~np.isfinite(y)):
        raise ValueError(f"y must be finite, got {y}")
    return x, y


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0:
        return float("nan")
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot


def loglinear(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """``a + b * log10(x)``."""
    return a + b * np.log10(x)


def saturating(x: np.ndarray, r_inf: float, c: float, alpha: float) -> np.ndarray:
    """``r_inf - c * x**(-alpha)``."""
    return r_inf - c * np.power(x, -alpha)


def fit_loglinear(x: np.ndarray, y: np.ndarray) -> Fit:
    """Least-squares fit of ``r = a + b log10 x``; needs two distinct ``x``.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Positive scale values (data size, parameters, FLOPs).
    y : ndarray, shape (n,)
        Scores.
    """
    x, y = _check_xy(x, y)
    nan = float("nan")
    if np.unique(x).size < 2:
        return Fit("loglinear", {"a": nan, "b": nan}, nan, nan)
    b, a = np.polyfit(np.log10(x), y, 1)
    return Fit("loglinear", {"a": float(a), "b": float(b)}, _r2(y, loglinear(x, a, b)), float(b))


def _profile_sse(xs: np.ndarray, y: np.ndarray, alphas: np.ndarray):
    """For each alpha, the least-squares (r_inf, c) and the residual sum of squares.

    With alpha fixed the law is linear in (r_inf, c); solve the 2x2 normal equations for
    all alphas (and all rows of ``y``) at once.
    Shapes: xs (n,); y (n,) or (B, n); alphas (k,) -> r_inf, c, sse (k,) or (B, k).
    """
    z = -np.power(xs[None, :], -alphas[:, None])  # (k, n): the column multiplying c
    n = xs.size
    sz, szz = z.sum(1), np.einsum("kn,kn->k", z, z)
    sy, szy = y.sum(-1)[..., None], y @ z.T  # (..., 1), (..., k)
    det = n * szz - sz**2
    with np.errstate(divide="ignore", invalid="ignore"):
        c = (n * szy - sz * sy) / det
        r_inf = (sy - c * sz) / n
    # sse = |y|^2 - 2 r_inf sy - 2 c szy + n r_inf^2 + 2 r_inf c sz + c^2 szz
    yy = np.einsum("...n,...n->...", y, y)[..., None]
    sse = yy - 2 * r_inf * sy - 2 * c * szy + n * r_inf**2 + 2 * r_inf * c * sz + c**2 * szz
    return r_inf, c, np.maximum(sse, 0.0)


def fit_saturating(x: np.ndarray, y: np.ndarray) -> Fit:
    """Least-squares fit of ``r = r_inf - c x^-alpha`` (``0 < alpha <= 2``).

    Needs three distinct ``x``; otherwise the parameters are NaN. ``alpha`` is found by
    profiling: for fixed ``alpha`` the law is linear in ``(r_inf, c)``, so the residual
    sum of squares is minimised over a log-spaced grid of ``alpha`` and refined by a
    bounded scalar search. ``x`` is rescaled by its geometric mean for conditioning.
    """
    x, y = _check_xy(x, y)
    nan = float("nan")
    if np.unique(x).size < 3:
        return Fit("saturating", {"r_inf": nan, "c": nan, "alpha": nan}, nan, nan)
    scale = float(np.exp(np.mean(np.log(x))))
    xs = x / scale
    grid = np.geomspace(ALPHA_MIN, ALPHA_MAX, 64)
    sse = _profile_sse(xs, y, grid)[2]
    k = int(np.nanargmin(sse))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    res = minimize_scalar(
        lambda a: float(_profile_sse(xs, y, np.array([a]))[2][0]),
        bounds=(lo, hi), method="bounded", options={"xatol": 1e-6},
    )
    alpha = float(res.x) if res.fun <= sse[k] else float(grid[k])
    r_inf_a, c_a, _ = _profile_sse(xs, y, np.array([alpha]))
    r_inf, c = float(r_inf_a[0]), float(c_a[0] * scale**alpha)  # back to the original x
    pred = saturating(x, r_inf, c, alpha)
    x_max = float(x.max())
    gain = float(saturating(10 * x_max, r_inf, c, alpha) - saturating(x_max, r_inf, c, alpha))
    return Fit("saturating", {"r_inf": r_inf, "c": c, "alpha": alpha}, _r2(y, pred), gain)


FITTERS = {"loglinear": fit_loglinear, "saturating": fit_saturating}


def _loglinear_batch(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Log-linear fits of every row of ys (B, n) -> (B, 3): a, b, gain_per_decade."""
    lx = np.log10(x)
    lxc = lx - lx.mean()
    b = (ys - ys.mean(1, keepdims=True)) @ lxc / (lxc @ lxc)
    a = ys.mean(1) - b * lx.mean()
    return np.stack([a, b, b], axis=1)


def _saturating_batch(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Saturating fits of every row of ys (B, n) on a fine alpha grid -> (B, 4):
    r_inf, c, alpha, gain_per_decade."""
    scale = float(np.exp(np.mean(np.log(x))))
    xs = x / scale
    grid = np.geomspace(ALPHA_MIN, ALPHA_MAX, 256)
    r_inf, c, sse = _profile_sse(xs, ys, grid)
    k = np.nanargmin(np.where(np.isfinite(sse), sse, np.inf), axis=1)
    rows = np.arange(ys.shape[0])
    alpha, r_inf, c = grid[k], r_inf[rows, k], c[rows, k] * scale ** grid[k]
    x_max = float(x.max())
    gain = saturating(10 * x_max, r_inf, c, alpha) - saturating(x_max, r_inf, c, alpha)
    return np.stack([r_inf, c, alpha, gain], axis=1)


BATCH_FITTERS = {"loglinear": _loglinear_batch, "saturating": _saturating_batch}


def bootstrap_fit(
    x: np.ndarray,
    scores: np.ndarray,
    law: str,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Fit a law to the mean over units, with paired-bootstrap percentile intervals.

    Parameters
    ----------
    x : ndarray, shape (n_points,)
        Scale value of each grid point (may repeat, e.g. several subjects).
    scores : ndarray, shape (n_points, n_units)
        Score of every unit (parcel) at every point; NaN entries (excluded parcels) are
        ignored in the means.
    law : {'loglinear', 'saturating'}
    n_boot : int
        Bootstrap resamples of the units (0: no intervals).
    level : float
        Confidence level of the intervals, in (0, 1).
    seed : int
        Seed of the resampling.

    Returns
    -------
    row : dict
        The law's parameters, ``r2``, ``gain_per_decade``, and for each of those
        ``{name}_lo`` / ``{name}_hi`` bounds, plus ``n_points``, ``n_units``, ``n_boot``.
    """
    if law not in FITTERS:
        raise ValueError(f"law must be one of {list(FITTERS)}, got {law!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != np.shape(x)[0]:
        raise ValueError(
            f"scores must be (n_points, n_units) with n_points = len(x) = {np.shape(x)[0]}, "
            f"got {scores.shape}"
        )
    fitter = FITTERS[law]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best = fitter(x, np.nanmean(scores, axis=1))
    row: dict[str, float] = {**best.params, "r2": best.r2, "gain_per_decade": best.gain_per_decade}
    names = [*best.params, "gain_per_decade"]
    row.update(n_points=int(scores.shape[0]), n_units=int(scores.shape[1]), n_boot=int(n_boot))
    if n_boot <= 0 or not np.isfinite(best.gain_per_decade):
        for name in names:
            row[f"{name}_lo"] = row[f"{name}_hi"] = float("nan")
        return row
    rng = np.random.default_rng(seed)
    n_units = scores.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ys = np.stack([
            np.nanmean(scores[:, rng.integers(0, n_units, n_units)], axis=1)
            for _ in range(n_boot)
        ])  # (n_boot, n_points)
    draws = np.full((n_boot, len(names)), np.nan)
    ok = np.all(np.isfinite(ys), axis=1)
    draws[ok] = BATCH_FITTERS[law](np.asarray(x, dtype=np.float64), ys[ok])
    tail = (1 - level) / 2 * 100
    for j, name in enumerate(names):
        col = draws[:, j][np.isfinite(draws[:, j])]
        lo, hi = (np.percentile(col, [tail, 100 - tail]) if col.size else (np.nan, np.nan))
        row[f"{name}_lo"], row[f"{name}_hi"] = float(lo), float(hi)
    return row


def _predict(law: str, params: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Predictions of batch-fitted parameters (B, n_params) at xs (m,) -> (B, m)."""
    if law == "loglinear":
        return loglinear(xs[None, :], params[:, :1], params[:, 1:2])
    return saturating(xs[None, :], params[:, :1], params[:, 1:2], params[:, 2:3])


def prediction_band(
    x: np.ndarray, scores: np.ndarray, law: str, xs: np.ndarray, n_boot: int = 1000,
    level: float = 0.95, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fitted curve at ``xs`` with a paired-bootstrap percentile band.

    Parameters
    ----------
    x : ndarray, shape (n_points,)
    scores : ndarray, shape (n_points, n_units)
        As for :func:`bootstrap_fit`.
    law : {'loglinear', 'saturating'}
    xs : ndarray, shape (m,)
        Where to evaluate the curve.

    Returns
    -------
    pred, lo, hi : ndarray, shape (m,)
        The fit to the unit means and the band; NaN where the law cannot be fit.
    """
    if law not in FITTERS:
        raise ValueError(f"law must be one of {list(FITTERS)}, got {law!r}")
    x = np.asarray(x, dtype=np.float64)
    xs = np.asarray(xs, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        best = FITTERS[law](x, np.nanmean(scores, axis=1))
        params = np.array([list(best.params.values())])
        pred = _predict(law, params, xs)[0]
        rng = np.random.default_rng(seed)
        n_units = scores.shape[1]
        ys = np.stack([
            np.nanmean(scores[:, rng.integers(0, n_units, n_units)], axis=1)
            for _ in range(n_boot)
        ])
        ys = ys[np.all(np.isfinite(ys), axis=1)]
        if not np.all(np.isfinite(pred)) or not len(ys):
            nan = np.full(xs.shape, np.nan)
            return pred, nan, nan
        draws = _predict(law, BATCH_FITTERS[law](x, ys)[:, :-1], xs)  # (B, m)
        tail = (1 - level) / 2 * 100
        lo, hi = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    return pred, lo, hi
