"""The compute frontier: the conditions that no other beats at equal or lower compute.

The allocation of compute between N and D (IsoFLOP profiles and the parametric fit) lives in
:mod:`cortexscale.scaling.allocation`.
"""

from __future__ import annotations

import numpy as np


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
        raise ValueError(f"cost and score must be 1-D of one length, found {cost.shape}, {score.shape}")
    if not (np.all(np.isfinite(cost)) and np.all(np.isfinite(score))):
        raise ValueError("cost and score must be finite")
    le = cost[None, :] <= cost[:, None]  # [i, j]: j costs no more than i
    ge = score[None, :] >= score[:, None]
    strict = (cost[None, :] < cost[:, None]) | (score[None, :] > score[:, None])
    dominated = np.any(le & ge & strict, axis=1)
    return ~dominated
