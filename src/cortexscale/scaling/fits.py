"""Scaling-law fits of encoding accuracy against data size, parameters or compute.

Two laws, both in ``log10 x``:

- log-linear: ``r = a + b * log10(x)``.
- saturating power law: ``r = r_inf - c * x**(-alpha)``, with ``0 < alpha <= 2`` and the
  asymptote of a correlation bounded, ``-1 <= r_inf <= 1``; ``at_bound`` names the
  parameters that end at a bound (the fit is then a bound, not an estimate).

A law is fitted only on at least :data:`MIN_X` distinct ``x`` (two points always lie on a
line: R^2 = 1 says nothing); with fewer its parameters are NaN and ``status`` says why.
Every fit reports the range it covers (``x_min``, ``x_max``, their ratio ``fold_range``),
the change of the fitted ``r`` over that range (``change_over_range``) and the mean change
per decade *within* it (``gain_per_decade`` = change / log10(fold_range); for the log-linear
law this is ``b``). Nothing is extrapolated beyond the covered range.

Uncertainty comes from the hierarchical bootstrap of :mod:`cortexscale.scaling.bootstrap`:
seeds (replicate runs) and, within them, parcels are resampled, the same draw at every
``x``; with one seed the interval covers parcels only (``ci_unit`` says which).
Percentile intervals at the requested level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from cortexscale.scaling.bootstrap import draw_means, percentile_ci, point_means, replicates

ALPHA_MIN, ALPHA_MAX = 1e-3, 2.0
R_INF_MIN, R_INF_MAX = -1.0, 1.0
MIN_X = 3

LAWS = ("loglinear", "saturating")


def too_few(n_x: int) -> str:
    """The status of a law that was not fitted for lack of distinct x values."""
    return f"too few x values ({n_x} distinct; a law needs {MIN_X})"


@dataclass(frozen=True)
class Fit:
    """One fitted law with its goodness of fit.

    Attributes
    ----------
    law : str
        ``loglinear`` or ``saturating``.
    params : dict of str -> float
        ``a, b`` (log-linear) or ``r_inf, c, alpha`` (saturating); NaN if not fitted.
    r2 : float
        Coefficient of determination of the fit on the points it was fit to.
    gain_per_decade : float
        Mean change of the fitted ``r`` per tenfold increase of ``x`` within the covered
        range.
    change_over_range : float
        Fitted ``r`` at ``x_max`` minus fitted ``r`` at ``x_min``.
    status : str
        ``ok``, or why the law was not fitted.
    at_bound : str
        Comma-separated names of parameters at a bound (empty: none).
    """

    law: str
    params: dict[str, float]
    r2: float
    gain_per_decade: float
    change_over_range: float = float("nan")
    status: str = "ok"
    at_bound: str = ""


def _check_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of one length, found shapes {x.shape} and {y.shape}")
    if np.any(~np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"x must be finite and positive (it is log-scaled), found {x}")
    if np.any(~np.isfinite(y)):
        raise ValueError(f"y must be finite, found {y}")
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


def _range_terms(x: np.ndarray, f_lo: float, f_hi: float) -> tuple[float, float]:
    change = float(f_hi - f_lo)
    decades = float(np.log10(x.max() / x.min()))
    return change, change / decades


def fit_loglinear(x: np.ndarray, y: np.ndarray) -> Fit:
    """Least-squares fit of ``r = a + b log10 x``; needs :data:`MIN_X` distinct ``x``.

    Parameters
    ----------
    x : ndarray, shape (n,)
        Positive scale values (data size, parameters, FLOPs).
    y : ndarray, shape (n,)
        Scores.
    """
    x, y = _check_xy(x, y)
    nan = float("nan")
    n_x = np.unique(x).size
    if n_x < MIN_X:
        return Fit("loglinear", {"a": nan, "b": nan}, nan, nan, nan, too_few(n_x))
    b, a = np.polyfit(np.log10(x), y, 1)
    change, per_decade = _range_terms(x, loglinear(x.min(), a, b), loglinear(x.max(), a, b))
    return Fit("loglinear", {"a": float(a), "b": float(b)}, _r2(y, loglinear(x, a, b)),
               per_decade, change)


def _profile_sse(xs: np.ndarray, y: np.ndarray, alphas: np.ndarray):
    """For each alpha, the least-squares (r_inf, c) with ``-1 <= r_inf <= 1`` and the
    residual sum of squares.

    With alpha fixed the law is linear in (r_inf, c); solve the 2x2 normal equations for
    all alphas (and all rows of ``y``) at once. Where the unconstrained ``r_inf`` leaves
    [-1, 1], the constrained optimum of this convex quadratic lies on the bound: ``r_inf``
    is set to it and ``c`` solved alone.
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
        bound = np.clip(r_inf, R_INF_MIN, R_INF_MAX)
        clipped = bound != r_inf
        c = np.where(clipped, (szy - bound * sz) / szz, c)
        r_inf = bound
    # sse = |y|^2 - 2 r_inf sy - 2 c szy + n r_inf^2 + 2 r_inf c sz + c^2 szz
    yy = np.einsum("...n,...n->...", y, y)[..., None]
    sse = yy - 2 * r_inf * sy - 2 * c * szy + n * r_inf**2 + 2 * r_inf * c * sz + c**2 * szz
    return r_inf, c, np.maximum(sse, 0.0)


def _bounds_hit(r_inf: float, alpha: float) -> str:
    hit = []
    if np.isclose(r_inf, R_INF_MAX, atol=1e-9) or np.isclose(r_inf, R_INF_MIN, atol=1e-9):
        hit.append("r_inf")
    if alpha <= ALPHA_MIN * 1.05 or alpha >= ALPHA_MAX / 1.05:
        hit.append("alpha")
    return ",".join(hit)


def fit_saturating(x: np.ndarray, y: np.ndarray) -> Fit:
    """Least-squares fit of ``r = r_inf - c x^-alpha`` (``0 < alpha <= 2``, ``|r_inf| <= 1``).

    Needs :data:`MIN_X` distinct ``x``; otherwise the parameters are NaN. ``alpha`` is found
    by profiling: for fixed ``alpha`` the law is linear in ``(r_inf, c)``, so the residual
    sum of squares is minimised over a log-spaced grid of ``alpha`` and refined by a
    bounded scalar search. ``x`` is rescaled by its geometric mean for conditioning.
    ``at_bound`` names ``r_inf`` and/or ``alpha`` when they end at a bound.
    """
    x, y = _check_xy(x, y)
    nan = float("nan")
    n_x = np.unique(x).size
    if n_x < MIN_X:
        return Fit("saturating", {"r_inf": nan, "c": nan, "alpha": nan}, nan, nan, nan,
                   too_few(n_x))
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
    change, per_decade = _range_terms(x, saturating(x.min(), r_inf, c, alpha),
                                      saturating(x.max(), r_inf, c, alpha))
    return Fit("saturating", {"r_inf": r_inf, "c": c, "alpha": alpha}, _r2(y, pred),
               per_decade, change, "ok", _bounds_hit(r_inf, alpha))


FITTERS = {"loglinear": fit_loglinear, "saturating": fit_saturating}


def _loglinear_batch(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Log-linear fits of every row of ys (B, n) -> (B, 4): a, b, gain_per_decade,
    change_over_range."""
    lx = np.log10(x)
    lxc = lx - lx.mean()
    b = (ys - ys.mean(1, keepdims=True)) @ lxc / (lxc @ lxc)
    a = ys.mean(1) - b * lx.mean()
    return np.stack([a, b, b, b * (lx.max() - lx.min())], axis=1)


def _saturating_batch(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Saturating fits of every row of ys (B, n) on a fine alpha grid -> (B, 5):
    r_inf, c, alpha, gain_per_decade, change_over_range."""
    scale = float(np.exp(np.mean(np.log(x))))
    xs = x / scale
    grid = np.geomspace(ALPHA_MIN, ALPHA_MAX, 256)
    r_inf, c, sse = _profile_sse(xs, ys, grid)
    k = np.nanargmin(np.where(np.isfinite(sse), sse, np.inf), axis=1)
    rows = np.arange(ys.shape[0])
    alpha, r_inf, c = grid[k], r_inf[rows, k], c[rows, k] * scale ** grid[k]
    change = saturating(x.max(), r_inf, c, alpha) - saturating(x.min(), r_inf, c, alpha)
    return np.stack([r_inf, c, alpha, change / np.log10(x.max() / x.min()), change], axis=1)


BATCH_FITTERS = {"loglinear": _loglinear_batch, "saturating": _saturating_batch}


def _as_cube(x: np.ndarray, scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 2:
        scores = scores[:, None, :]
    if scores.ndim != 3 or scores.shape[0] != np.shape(x)[0]:
        raise ValueError(
            f"scores must be (n_points, n_units) or (n_points, n_seeds, n_units) with "
            f"n_points = len(x) = {np.shape(x)[0]}, found {scores.shape}"
        )
    return scores


def bootstrap_fit(
    x: np.ndarray,
    scores: np.ndarray,
    law: str,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float | str]:
    """Fit a law to the mean over seeds and units, with hierarchical-bootstrap intervals.

    Parameters
    ----------
    x : ndarray, shape (n_points,)
        Scale value of each condition (distinct conditions may share an ``x``).
    scores : ndarray, shape (n_points, n_units) or (n_points, n_seeds, n_units)
        Score of every unit (parcel) of every seed at every point; NaN entries (excluded
        parcels, missing seeds) are ignored in the means. A 2-D array is one seed.
    law : {'loglinear', 'saturating'}
    n_boot : int
        Bootstrap draws (0: no intervals).
    level : float
        Confidence level of the intervals, in (0, 1).
    seed : int
        Seed of the resampling.

    Returns
    -------
    row : dict
        The law's parameters, ``r2``, ``gain_per_decade``, ``change_over_range``, and for
        the parameters and those two ``{name}_lo`` / ``{name}_hi`` bounds; ``status``,
        ``at_bound``, ``x_min``, ``x_max``, ``fold_range``, ``n_x``, ``n_points``,
        ``n_seeds``, ``n_units``, ``n_boot`` and ``ci_unit`` (what was resampled).
    """
    if law not in FITTERS:
        raise ValueError(f"law must be one of {list(FITTERS)}, found {law!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), found {level}")
    x = np.asarray(x, dtype=np.float64)
    scores = _as_cube(x, scores)
    best = FITTERS[law](x, point_means(scores))
    row: dict[str, float | str] = {
        **best.params, "r2": best.r2, "gain_per_decade": best.gain_per_decade,
        "change_over_range": best.change_over_range,
    }
    names = [*best.params, "gain_per_decade", "change_over_range"]
    n_seeds, unit = replicates(scores)
    row.update(
        status=best.status, at_bound=best.at_bound, x_min=float(x.min()), x_max=float(x.max()),
        fold_range=float(x.max() / x.min()), n_x=int(np.unique(x).size),
        n_points=int(scores.shape[0]), n_seeds=n_seeds, n_units=int(scores.shape[2]),
        n_boot=int(n_boot), ci_unit=unit,
    )
    for name in names:
        row[f"{name}_lo"] = row[f"{name}_hi"] = float("nan")
    if n_boot <= 0 or best.status != "ok":
        return row
    ys = draw_means(scores, n_boot, seed=seed)  # (n_boot, n_points)
    draws = np.full((n_boot, len(names)), np.nan)
    ok = np.all(np.isfinite(ys), axis=1)
    draws[ok] = BATCH_FITTERS[law](x, ys[ok])
    lo, hi = percentile_ci(draws, level)
    for j, name in enumerate(names):
        row[f"{name}_lo"], row[f"{name}_hi"] = float(lo[j]), float(hi[j])
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
    """The fitted curve at ``xs`` with a hierarchical-bootstrap percentile band.

    Parameters
    ----------
    x : ndarray, shape (n_points,)
    scores : ndarray, shape (n_points, n_units) or (n_points, n_seeds, n_units)
        As for :func:`bootstrap_fit`.
    law : {'loglinear', 'saturating'}
    xs : ndarray, shape (m,)
        Where to evaluate the curve (the covered range; nothing stops a caller from
        extrapolating, so keep ``xs`` within ``[x.min(), x.max()]``).

    Returns
    -------
    pred, lo, hi : ndarray, shape (m,)
        The fit to the means and the band; NaN where the law cannot be fit.
    """
    if law not in FITTERS:
        raise ValueError(f"law must be one of {list(FITTERS)}, found {law!r}")
    x = np.asarray(x, dtype=np.float64)
    xs = np.asarray(xs, dtype=np.float64)
    scores = _as_cube(x, scores)
    nan = np.full(xs.shape, np.nan)
    best = FITTERS[law](x, point_means(scores))
    if best.status != "ok":
        return nan, nan.copy(), nan.copy()
    pred = _predict(law, np.array([list(best.params.values())]), xs)[0]
    ys = draw_means(scores, n_boot, seed=seed)
    ys = ys[np.all(np.isfinite(ys), axis=1)]
    if not len(ys):
        return pred, nan, nan.copy()
    n_par = len(best.params)
    draws = _predict(law, BATCH_FITTERS[law](x, ys)[:, :n_par], xs)  # (B, m)
    lo, hi = percentile_ci(draws, level)
    return pred, lo, hi
