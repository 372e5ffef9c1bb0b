"""The compute-optimal frontier and a Chinchilla-style allocation of compute.

The frontier is the set of grid points that no other point beats at equal or lower training
compute. The allocation fit models the score as

    r(N, D) = E - A * N**(-a) - B * D**(-b)

with N the parameter count and D the tokens seen in training; for a compute budget
C = 6 N D the best split is N* = G (C/6)**(b/(a+b)) with G = (a A / (b B))**(1/(a+b)),
D* = C / (6 N*). It is identifiable only when the grid varies both N and D.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit


def pareto_front(cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Which points lie on the cost-score Pareto frontier.

    Parameters
    ----------
    cost : ndarray, shape (n,)
        Training compute (or any cost; lower is better).
    score : ndarray, shape (n,)
        Encoding score (higher is better).

    Returns
    -------
    on_front : ndarray of bool, shape (n,)
        True where no other point has ``cost <=`` and ``score >=`` with one of them strict.
        Of exact duplicates, all are kept.
    """
    cost = np.asarray(cost, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    if cost.shape != score.shape or cost.ndim != 1:
        raise ValueError(f"cost and score must be 1-D of one length, got {cost.shape}, {score.shape}")
    if not (np.all(np.isfinite(cost)) and np.all(np.isfinite(score))):
        raise ValueError("cost and score must be finite")
    le = cost[None, :] <= cost[:, None]  # [i, j]: j costs no more than i
    ge = score[None, :] >= score[:, None]
    strict = (cost[None, :] < cost[:, None]) | (score[None, :] > score[:, None])
    dominated = np.any(le & ge & strict, axis=1)
    return ~dominated


def _law(nd: tuple[np.ndarray, np.ndarray], e, log_a, a, log_b, b):
    n, d = nd
    return e - np.exp(log_a) * np.power(n, -a) - np.exp(log_b) * np.power(d, -b)


def fit_allocation(
    n_params: np.ndarray, tokens: np.ndarray, score: np.ndarray
) -> dict[str, float | str]:
    """Fit ``r = E - A N^-a - B D^-b`` and return its parameters.

    Parameters
    ----------
    n_params, tokens, score : ndarray, shape (n,)
        Parameter count, training tokens seen and score of each grid point.

    Returns
    -------
    fit : dict
        ``E, A, a, B, b, r2`` and ``status`` (``ok``, or why the fit is not identifiable:
        fewer than 2 distinct values of N or D, fewer than 6 points, or no convergence).
    """
    n = np.asarray(n_params, dtype=np.float64)
    d = np.asarray(tokens, dtype=np.float64)
    y = np.asarray(score, dtype=np.float64)
    nan = float("nan")
    out: dict[str, float | str] = dict.fromkeys(("E", "A", "a", "B", "b", "r2"), nan)
    if np.unique(n).size < 2 or np.unique(d).size < 2:
        out["status"] = (
            f"not identifiable: the grid has {np.unique(n).size} parameter count(s) and "
            f"{np.unique(d).size} token count(s); both must vary"
        )
        return out
    if y.size < 6:
        out["status"] = f"not identifiable: {y.size} grid points for 5 parameters (need 6)"
        return out
    n_s, d_s = float(np.exp(np.log(n).mean())), float(np.exp(np.log(d).mean()))
    spread = float(y.max() - y.min()) or 1e-3
    p0 = (float(y.max()) + spread, np.log(spread), 0.3, np.log(spread), 0.3)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (e, log_a, a, log_b, b), _ = curve_fit(
                _law, (n / n_s, d / d_s), y, p0=p0,
                bounds=([-np.inf, -30, 1e-3, -30, 1e-3], [np.inf, 30, 2.0, 30, 2.0]),
                maxfev=20000,
            )
    except (RuntimeError, ValueError) as exc:
        out["status"] = f"no convergence: {exc}"
        return out
    pred = _law((n / n_s, d / d_s), e, log_a, a, log_b, b)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    out.update(
        E=float(e), A=float(np.exp(log_a) * n_s**a), a=float(a),
        B=float(np.exp(log_b) * d_s**b), b=float(b),
        r2=1 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot else nan, status="ok",
    )
    return out


def optimal_allocation(fit: dict[str, float | str], budgets: np.ndarray) -> np.ndarray:
    """Best parameter count and token count for each compute budget (FLOPs, C = 6 N D).

    Returns
    -------
    nd : ndarray, shape (n_budgets, 2)
        ``(N*, D*)`` per budget; NaN if the fit is not ``ok``.
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    if fit.get("status") != "ok":
        return np.full((budgets.size, 2), np.nan)
    a, b, big_a, big_b = (float(fit[k]) for k in ("a", "b", "A", "B"))
    g = (a * big_a / (b * big_b)) ** (1 / (a + b))
    n_opt = g * (budgets / 6) ** (b / (a + b))
    return np.stack([n_opt, budgets / (6 * n_opt)], axis=1)
