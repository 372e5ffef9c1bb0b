"""The compute-optimal allocation: which model size N and how many tokens D for a budget C?

Two estimates, after Hoffmann et al. (2022), each for two targets separately: the
validation loss (``val_loss``, lower is better) and the brain score (``score``, the mean
held-out r over every subject, ROI and parcel; higher is better).

**IsoFLOP profiles (approach 2).** For every training-FLOP budget, the models trained at
that budget give the target as a function of ``x = log10 N``. A parabola
``y = c0 + c1 x + c2 x^2`` is fitted by least squares to the per-model means (over seeds and
parcels); its vertex ``x* = -c1 / (2 c2)`` is the optimum only when the curvature has the
right sign (a minimum of the loss, a maximum of the score) and ``x*`` lies strictly inside
the sampled N range. Otherwise the row's status is ``at the edge`` and no N* is given: the
grid did not bracket the optimum. The interval of N* comes from the hierarchical bootstrap
of :mod:`cortexscale.scaling.bootstrap` (seeds and, for the score, parcels; one draw is
shared by all budgets); in a draw whose parabola has no interior optimum the optimum is the
better end of the sampled range, so the interval reaches the edge rather than hiding the
draw. The tokens at the optimum are ``D* = C / f(N*)``, with ``f`` the training FLOPs per
token interpolated log-linearly in N between the budget's own runs
(``train_flops / tokens_seen``: ``6 N`` plus attention for VideoGPT, ``6 N`` for the planted
reference). When at least :data:`MIN_BUDGETS` budgets have an interior optimum,
``log10 N* = log10 k_N + a log10 C`` and ``log10 D* = log10 k_D + b log10 C`` are fitted by
least squares, with intervals from the same draws.

**Parametric fit (approach 3).** ``L(N, D) = E + A / N^alpha + B / D^beta`` fitted to the
per-condition means with Hoffmann's objective: the Huber loss (delta = 1e-3) of the
residuals in log space, ``log L_hat - log L``, with ``log L_hat = logsumexp(a - alpha log N,
b - beta log D, e)`` (``A = e^a``, ``B = e^b``, ``E = e^e``), minimised by L-BFGS-B from a
grid of starting points. For the brain score the fitted quantity is ``1 - r`` (the loss-like
gap to a perfect correlation, positive because r < 1, so ``E = 1 - r_inf`` > 0 keeps the
asymptote of r below 1). Under ``C = 6 N D`` the implied optimum grows as ``N* ~ C^a``,
``D* ~ C^b`` with ``a = beta / (alpha + beta)`` and ``b = alpha / (alpha + beta)``. The fit
needs N and D to vary jointly (``[1, log N, log D]`` of full rank) and more conditions than
its 5 parameters; otherwise its row says why.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import logsumexp

from cortexscale.scaling.bootstrap import cube, draw_means, percentile_ci, point_means, replicates
from cortexscale.scaling.fits import MIN_X, too_few

__all__ = [
    "COLUMNS", "MIN_BUDGETS", "allocation_table", "fit_parametric", "parabola_optima",
    "power_law", "target_cubes",
]

MIN_BUDGETS = 3
HUBER_DELTA = 1e-3
EXP_MIN, EXP_MAX = 1e-3, 3.0
TARGETS = {"val_loss": "min", "score": "max"}
CONDITION = ["family", "data_size", "hidden", "layers", "heads", "precision", "budget", "tokens",
             "n_params"]
COLUMNS = [
    "family", "precision", "target", "method", "budget", "status", "n_models", "n_budgets",
    "n_seeds", "ci_unit", "n_min", "n_max", "n_opt", "n_opt_lo", "n_opt_hi", "d_opt",
    "d_opt_lo", "d_opt_hi", "target_opt", "best_sampled_n", "frac_interior", "budget_min",
    "budget_max", "exponent_n", "exponent_n_lo", "exponent_n_hi", "coef_n", "exponent_d",
    "exponent_d_lo", "exponent_d_hi", "coef_d", "transform", "E", "A", "alpha", "alpha_lo",
    "alpha_hi", "B", "beta", "beta_lo", "beta_hi", "at_bound",
]


def _polyfit2(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Least-squares parabolas of every row of ys (B, n) at x (n,) -> (B, 3): c0, c1, c2."""
    design = np.stack([np.ones_like(x), x, x**2], axis=1)  # (n, 3)
    return ys @ np.linalg.pinv(design).T


def parabola_optima(
    x: np.ndarray, ys: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimum of the parabola through every row of ``ys``.

    Parameters
    ----------
    x : ndarray, shape (n,)
        ``log10 N`` of each model (at least :data:`MIN_X` distinct values).
    ys : ndarray, shape (B, n)
        Target values (one row per draw).
    kind : {'min', 'max'}
        Whether the optimum is a minimum (loss) or a maximum (score).

    Returns
    -------
    x_opt : ndarray, shape (B,)
        The vertex where it is an interior optimum; else the better end of the sampled
        range (by the fitted parabola).
    y_opt : ndarray, shape (B,)
        The fitted target at ``x_opt``.
    interior : ndarray of bool, shape (B,)
        Whether the vertex is an optimum strictly inside ``(x.min(), x.max())``.
    """
    if kind not in ("min", "max"):
        raise ValueError(f"kind must be 'min' or 'max', found {kind!r}")
    c = _polyfit2(np.asarray(x, float), np.atleast_2d(ys))
    sign = 1.0 if kind == "min" else -1.0
    curved = sign * c[:, 2] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = -c[:, 1] / (2 * c[:, 2])
    lo, hi = float(np.min(x)), float(np.max(x))
    interior = curved & (vertex > lo) & (vertex < hi)

    def f(v):
        return c[:, 0] + c[:, 1] * v + c[:, 2] * v**2

    f_lo, f_hi = f(lo), f(hi)
    end = np.where(sign * f_lo <= sign * f_hi, lo, hi)
    x_opt = np.where(interior, vertex, end)
    return x_opt, f(x_opt), interior


def power_law(budgets: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares ``log10 v = log10 k + e log10 C``; returns ``(e, k)``."""
    e, logk = np.polyfit(np.log10(budgets), np.log10(values), 1)
    return float(e), float(10**logk)


def _huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def _objective(p: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_y: np.ndarray):
    """Huber loss of the log residuals and its gradient in ``p = (a, b, e, alpha, beta)``."""
    a, b, e, alpha, beta = p
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])  # (3, n)
    lse = logsumexp(terms, axis=0)
    r = lse - log_y
    w = np.exp(terms - lse)  # softmax weights (3, n)
    dr = np.clip(r, -HUBER_DELTA, HUBER_DELTA)  # Huber derivative
    grad = np.array([dr @ w[0], dr @ w[1], dr @ w[2], -(dr * w[0]) @ log_n,
                     -(dr * w[1]) @ log_d])
    return float(_huber(r).sum()), grad


def _identifiable(n: np.ndarray, d: np.ndarray) -> str:
    n_n, n_d = np.unique(n).size, np.unique(d).size
    if n_n < 2 or n_d < 2:
        return (f"not identifiable: the design has {n_n} parameter count(s) and {n_d} token "
                "count(s); both must vary")
    design = np.stack([np.ones_like(n), np.log(n), np.log(d)], axis=1)
    if np.linalg.matrix_rank(design, tol=1e-8 * np.abs(design).max()) < 3:
        return ("not identifiable: log D is a linear function of log N in this design "
                "(N and D do not vary jointly)")
    if n.size < 6:
        return f"not identifiable: {n.size} conditions for 5 parameters (need at least 6)"
    return "ok"


def fit_parametric(
    n_params: np.ndarray, tokens: np.ndarray, y: np.ndarray, starts: np.ndarray | None = None
) -> dict[str, float | str]:
    """Fit ``y = E + A / N^alpha + B / D^beta`` (Huber loss on log y, Hoffmann's approach 3).

    Parameters
    ----------
    n_params, tokens, y : ndarray, shape (n,)
        Parameter count, training tokens and the positive loss-like target per condition.
    starts : ndarray, shape (k, 5), optional
        Starting points ``(a, b, e, alpha, beta)`` in the internal parametrisation (``N``
        and ``D`` divided by their geometric means); default: a grid.

    Returns
    -------
    fit : dict
        ``E, A, alpha, B, beta`` (in the original units of N and D), ``a = beta/(alpha +
        beta)``, ``b = alpha/(alpha + beta)``, ``objective``, ``at_bound`` (exponents at
        their bounds [1e-3, 3]), ``status`` (``ok`` or why not) and ``_p`` (the internal
        optimum, a start for bootstrap refits).
    """
    n = np.asarray(n_params, float)
    d = np.asarray(tokens, float)
    y = np.asarray(y, float)
    nan = float("nan")
    out: dict = dict.fromkeys(("E", "A", "alpha", "B", "beta", "a", "b", "objective"), nan)
    out.update(at_bound="", _p=None)
    if not (n.shape == d.shape == y.shape and n.ndim == 1):
        raise ValueError(f"n_params, tokens and y must be 1-D of one length, found {n.shape}, "
                         f"{d.shape}, {y.shape}")
    status = _identifiable(n, d)
    if status == "ok" and not (np.all(y > 0) and np.all(np.isfinite(y))):
        status = "not fitted: the target must be finite and positive (it is log-scaled)"
    if status != "ok":
        out["status"] = status
        return out
    n_g, d_g = np.exp(np.log(n).mean()), np.exp(np.log(d).mean())
    log_n, log_d, log_y = np.log(n / n_g), np.log(d / d_g), np.log(y)
    if starts is None:
        ym = float(np.exp(log_y.mean()))
        spread = [np.log(0.05 * ym), np.log(0.5 * ym)]
        starts = np.array(list(itertools.product(
            spread, spread, [np.log(0.3 * ym), np.log(0.9 * ym)], [0.25, 0.8], [0.25, 0.8])))
    bounds = [(None, None), (None, None), (None, None), (EXP_MIN, EXP_MAX), (EXP_MIN, EXP_MAX)]
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for p0 in starts:
            res = minimize(_objective, p0, args=(log_n, log_d, log_y), method="L-BFGS-B",
                           jac=True, bounds=bounds,
                           options={"maxiter": 300, "ftol": 1e-14, "gtol": 1e-11})
            if best is None or res.fun < best.fun:
                best = res
    a, b, e, alpha, beta = best.x
    out.update(
        E=float(np.exp(e)), A=float(np.exp(a) * n_g**alpha), alpha=float(alpha),
        B=float(np.exp(b) * d_g**beta), beta=float(beta), a=float(beta / (alpha + beta)),
        b=float(alpha / (alpha + beta)), objective=float(best.fun), _p=best.x,
        # E is fitted in log, so its bound 0 is reached only in the limit: an E below a
        # millionth of the smallest target is that limit (no irreducible term)
        at_bound=",".join(
            [k for k, v in (("alpha", alpha), ("beta", beta))
             if v <= EXP_MIN * 1.01 or v >= EXP_MAX / 1.01]
            + (["E"] if np.exp(e) < 1e-6 * float(np.min(y)) else [])
        ),
        status="ok",
    )
    return out


def _empty_row(**kw) -> dict:
    row = dict.fromkeys(COLUMNS, np.nan)
    row.update(status="", ci_unit="", transform="", at_bound="")
    row.update(kw)
    return row


def _fpt(cond: pd.DataFrame) -> tuple[float, float]:
    """Log-linear FLOPs per token in N over a budget's runs: (slope, intercept) of
    ``log10 f = i + s log10 N``."""
    ln = np.log10(cond["n_params"].to_numpy(float))
    lf = np.log10((cond["train_flops"] / cond["tokens_seen"]).to_numpy(float))
    if np.unique(ln).size < 2:
        return 0.0, float(lf.mean())
    s, i = np.polyfit(ln, lf, 1)
    return float(s), float(i)


def _isoflop_rows(
    conds: pd.DataFrame, means: np.ndarray, draws: np.ndarray, kind: str, base: dict,
    level: float, n_seeds: int, unit: str,
) -> list[dict]:
    """Per-budget optimum rows and the power-law row for one (family, precision, target);
    ``base`` holds its family, precision and target, ``n_seeds`` and ``unit`` the cube's
    :func:`~cortexscale.scaling.bootstrap.replicates`."""
    rows, opt_draws, interior_budgets = [], {}, []
    for budget, idx in conds.groupby("budget").indices.items():
        part = conds.iloc[idx]
        x = np.log10(part["n_params"].to_numpy(float))
        n_x = np.unique(x).size
        row = _empty_row(**base, method="isoflop_parabola", budget=float(budget),
                         n_models=n_x, n_seeds=n_seeds, ci_unit=unit,
                         n_min=float(10 ** x.min()), n_max=float(10 ** x.max()))
        ok = np.isfinite(means[idx])
        best_i = (np.nanargmin if kind == "min" else np.nanargmax)(means[idx]) if ok.any() else 0
        row["best_sampled_n"] = float(10 ** x[best_i])
        if n_x < MIN_X or not ok.all():
            row["status"] = too_few(n_x) if n_x < MIN_X else "missing scores for some models"
            rows.append(row)
            continue
        x_opt, y_opt, interior = parabola_optima(x, means[idx][None, :], kind)
        s, i = _fpt(part)

        def tokens(xo, budget=budget, s=s, i=i):
            return budget / 10 ** (i + s * xo)

        good = np.all(np.isfinite(draws[:, idx]), axis=1)
        bx, _, binterior = parabola_optima(x, draws[good][:, idx], kind)
        opt_draws[budget] = np.full(draws.shape[0], np.nan)
        opt_draws[budget][good] = bx
        row["frac_interior"] = float(binterior.mean()) if binterior.size else np.nan
        if interior[0]:
            lo, hi = percentile_ci(bx, level) if bx.size else (np.nan, np.nan)
            row.update(status="ok", n_opt=float(10 ** x_opt[0]), n_opt_lo=float(10**lo),
                       n_opt_hi=float(10**hi), d_opt=float(tokens(x_opt[0])),
                       d_opt_lo=float(tokens(hi)), d_opt_hi=float(tokens(lo)),
                       target_opt=float(y_opt[0]))
            interior_budgets.append(budget)
        else:
            edge = "lower" if np.isclose(x_opt[0], x.min()) else "upper"
            row["status"] = (f"at the edge: the fitted optimum is not inside the sampled N "
                             f"range ({10 ** x.min():.3g} to {10 ** x.max():.3g}; best at the "
                             f"{edge} end)")
        row["_tokens"] = tokens
        rows.append(row)
    law = _empty_row(**base, method="isoflop_power_law", n_budgets=len(interior_budgets),
                     n_seeds=n_seeds, ci_unit=unit)
    if len(interior_budgets) < MIN_BUDGETS:
        law["status"] = (f"not fitted: {len(interior_budgets)} budget(s) with an interior "
                         f"optimum (of {len(rows)}); a power law in C needs {MIN_BUDGETS}")
    else:
        c = np.array(interior_budgets, float)
        by_b = {r["budget"]: r for r in rows}
        n_opt = np.array([by_b[b]["n_opt"] for b in c])
        d_opt = np.array([by_b[b]["d_opt"] for b in c])
        law["exponent_n"], law["coef_n"] = power_law(c, n_opt)
        law["exponent_d"], law["coef_d"] = power_law(c, d_opt)
        xs = np.stack([opt_draws[b] for b in c], axis=1)  # (B, n_budgets) log10 N*
        dd = np.stack([np.log10(by_b[b]["_tokens"](xs[:, j])) for j, b in enumerate(c)], 1)
        keep = np.all(np.isfinite(xs), axis=1)
        lc = np.log10(c) - np.log10(c).mean()
        slope_n = (xs[keep] - xs[keep].mean(1, keepdims=True)) @ lc / (lc @ lc)
        slope_d = (dd[keep] - dd[keep].mean(1, keepdims=True)) @ lc / (lc @ lc)
        (law["exponent_n_lo"], law["exponent_n_hi"]) = map(float, percentile_ci(slope_n, level))
        (law["exponent_d_lo"], law["exponent_d_hi"]) = map(float, percentile_ci(slope_d, level))
        law.update(status="ok", budget_min=float(c.min()), budget_max=float(c.max()))
    for r in rows:
        r.pop("_tokens", None)
    return [*rows, law]


def _parametric_row(
    conds: pd.DataFrame, means: np.ndarray, draws: np.ndarray, target: str, base: dict,
    level: float, n_refit: int, n_seeds: int, unit: str,
) -> dict:
    transform = "log L (Huber)" if target == "val_loss" else "log(1 - r) (Huber)"
    row = _empty_row(**base, method="parametric", transform=transform,
                     n_models=conds["n_params"].nunique(), n_budgets=conds["budget"].nunique(),
                     n_seeds=n_seeds, ci_unit=unit)
    n = conds["n_params"].to_numpy(float)
    d = conds["tokens_seen"].to_numpy(float)

    def as_y(v):
        return v if target == "val_loss" else 1.0 - v

    fit = fit_parametric(n, d, as_y(means))
    row["status"] = fit["status"]
    if fit["status"] != "ok":
        return row
    row.update({k: fit[k] for k in ("E", "A", "alpha", "B", "beta", "at_bound")})
    row.update(exponent_n=fit["a"], exponent_d=fit["b"])
    ab = []
    for drawn in draws[:n_refit]:
        if np.all(np.isfinite(drawn)) and np.all(as_y(drawn) > 0):
            f = fit_parametric(n, d, as_y(drawn), starts=fit["_p"][None, :])
            ab.append([f["alpha"], f["beta"], f["a"], f["b"]])
    if ab:
        lo, hi = percentile_ci(np.array(ab), level)
        row.update(alpha_lo=lo[0], alpha_hi=hi[0], beta_lo=lo[1], beta_hi=hi[1],
                   exponent_n_lo=lo[2], exponent_n_hi=hi[2], exponent_d_lo=lo[3],
                   exponent_d_hi=hi[3])
    return row


#: one target's cube: conditions, scores (n_cond, n_seeds, n_units), draws (n_boot, n_cond)
Cube = tuple[pd.DataFrame, np.ndarray, np.ndarray | None]


def target_cubes(
    runs: pd.DataFrame, parcels: pd.DataFrame, n_boot: int, seed: int = 0
) -> dict[str, Cube]:
    """The score cube of each target (:data:`TARGETS`) of one family and precision, with
    its hierarchical bootstrap draws (:mod:`cortexscale.scaling.bootstrap`).

    Parameters
    ----------
    runs : DataFrame
        The runs of one family and precision (``CONDITION`` columns, ``seed``,
        ``final_val_loss``): the ``val_loss`` cube, one unit per run.
    parcels : DataFrame
        Their per-parcel scores (``CONDITION`` columns, ``seed``, ``subject``, ``roi``,
        ``parcel``, ``r``): the ``score`` cube.
    n_boot, seed : int
        Bootstrap draws and their seed.

    Returns
    -------
    cubes : dict
        target -> ``(conditions, scores, draws)``: ``draws`` of shape (n_boot, n_cond), empty
        when ``n_boot`` is 0, None when no condition has a finite mean (nothing to resample).
    """
    out = {}
    for target in TARGETS:
        if target == "score":
            conds, scores = cube(parcels, CONDITION, "r")
        else:
            conds, scores = cube(runs.assign(subject="", roi="", parcel=0), CONDITION,
                                 "final_val_loss")
        draws = None
        if np.isfinite(point_means(scores)).any():
            draws = (draw_means(scores, n_boot, seed=seed) if n_boot > 0
                     else np.empty((0, len(conds))))
        out[target] = (conds, scores, draws)
    return out


def allocation_table(
    runs: pd.DataFrame, parcels: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
    level: float = 0.95, n_refit: int = 100, families: tuple[str, ...] = ("videogpt", "planted"),
    parametric: bool = True, cubes: Mapping[tuple[str, str], dict[str, Cube]] | None = None,
) -> pd.DataFrame:
    """Approach 2 and 3 for every family, precision and target (see the module docstring).

    Parameters
    ----------
    runs : DataFrame
        One row per run (grid point with its seed): ``CONDITION`` columns, ``seed``,
        ``tokens_seen``, ``train_flops``, ``final_val_loss``.
    parcels : DataFrame
        Per-parcel scores with the ``CONDITION`` columns, ``seed``, ``subject``, ``roi``,
        ``parcel``, ``r``.
    n_boot : int
        Hierarchical bootstrap draws (seeds, and parcels for the score).
    seed : int
        Seed of the resampling.
    level : float
        Confidence level.
    n_refit : int
        Bootstrap draws refitted for the parametric fit's intervals (each a local refit).
    families : tuple of str
        Families analysed (the latents and random references have no N or D).
    parametric : bool
        Also fit approach 3 (False: the IsoFLOP rows only).
    cubes : mapping, optional
        (family, precision) -> :func:`target_cubes` of that family's ``runs`` and
        ``parcels`` with this ``n_boot`` and ``seed``, when already computed (the IsoFLOP
        profiles share them); the others are computed here.

    Returns
    -------
    table : DataFrame
        ``COLUMNS``; see ``results/README.md``.
    """
    rows = []
    for (family, precision), fam_runs in runs.groupby(["family", "precision"], sort=True):
        if family not in families:
            continue
        fam_parcels = parcels[(parcels["family"] == family) & (parcels["precision"] == precision)]
        extra = fam_runs.groupby(CONDITION)[["tokens_seen", "train_flops"]].mean()
        isoflop = bool((fam_runs["budget"] > 0).all())
        shared = (cubes or {}).get((family, precision))
        if shared is None:
            shared = target_cubes(fam_runs, fam_parcels, n_boot, seed)
        for target, kind in TARGETS.items():
            base = {"family": family, "precision": precision, "target": target}
            conds, scores, draws = shared[target]
            conds = conds.join(extra, on=CONDITION)
            means = point_means(scores)
            n_seeds, unit = replicates(scores)
            if not np.isfinite(means).any():
                rows.append(_empty_row(**base, method="isoflop_parabola",
                                       status=f"no finite {target} for this family"))
                continue
            if isoflop:
                rows += _isoflop_rows(conds, means, draws, kind, base, level, n_seeds, unit)
            else:
                rows.append(_empty_row(
                    **base, method="isoflop_parabola", n_seeds=n_seeds,
                    status="not identifiable: the design holds no training-FLOP budget fixed "
                    "while varying N (not an IsoFLOP design)"))
            if parametric:
                rows.append(_parametric_row(conds, means, draws, target, base, level, n_refit,
                                            n_seeds, unit))
    return pd.DataFrame(rows, columns=COLUMNS)
