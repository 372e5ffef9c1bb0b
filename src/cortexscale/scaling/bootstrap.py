"""Seeds as the unit of replication: the score cube and its hierarchical bootstrap.

A between-model claim ("model B beats model A", "the optimum is at N*") is about training
runs, so its uncertainty must come from replicate runs (seeds), not from the parcels of one
run. Scores are arranged in a cube ``(n_conditions, n_seeds, n_units)``: a condition is a
grid point without its seed (one model, data, budget, precision), a seed is a replicate run,
a unit is one (subject, ROI, parcel). One bootstrap draw resamples the seeds with
replacement and, independently, the units with replacement; the same draw of seeds and of
units is used for every condition (seeds are matched by index across conditions and parcels
are the same brain units everywhere), so the differences between conditions keep their
pairing. With a single seed only the parcels are resampled: such an interval describes where
in the brain the effect lies, not how sure we are that it survives a reseed, and it is
labelled so (:data:`PARCELS_ONLY`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "NO_REPLICATES", "PARCELS_ONLY", "SEEDS_AND_PARCELS", "SEEDS_ONLY", "ci_unit", "cube",
    "draw_means", "percentile_ci", "point_means", "replicates",
]

SEEDS_AND_PARCELS = "seeds and parcels"
PARCELS_ONLY = "parcels only (1 seed): describes where, not how sure"
SEEDS_ONLY = "seeds"
NO_REPLICATES = "none (1 seed)"
UNIT = ["subject", "roi", "parcel"]


def ci_unit(n_seeds: int, n_units: int = 2) -> str:
    """The label of an interval's unit of resampling, given the replicates it had."""
    if n_units > 1:
        return SEEDS_AND_PARCELS if n_seeds > 1 else PARCELS_ONLY
    return SEEDS_ONLY if n_seeds > 1 else NO_REPLICATES


def replicates(scores: np.ndarray) -> tuple[int, str]:
    """The seeds a cube ``(n_conditions, n_seeds, n_units)`` has (those with any finite
    score) and its interval's unit of resampling, :func:`ci_unit`."""
    n_seeds = int(np.any(np.isfinite(scores), axis=(0, 2)).sum())
    return n_seeds, ci_unit(n_seeds, scores.shape[2])


def cube(
    parcels: pd.DataFrame, by: Sequence[str], value: str = "r"
) -> tuple[pd.DataFrame, np.ndarray]:
    """Arrange per-parcel scores as ``(conditions, seeds, units)``.

    Parameters
    ----------
    parcels : DataFrame
        One row per run x unit, with the columns ``by``, ``seed``, ``subject``, ``roi``,
        ``parcel`` and ``value``.
    by : sequence of str
        Columns that define a condition (everything that identifies a run but its seed).
    value : str
        The score column.

    Returns
    -------
    conditions : DataFrame
        One row per condition (the ``by`` columns), in sorted order; row i is ``scores[i]``.
    scores : ndarray, shape (n_conditions, n_seeds, n_units)
        NaN where a seed or a unit is missing for a condition. Seeds are the sorted distinct
        ``seed`` values.
    """
    by = list(by)
    missing = [c for c in [*by, "seed", *UNIT, value] if c not in parcels.columns]
    if missing:
        raise ValueError(f"parcel table lacks column(s) {missing}; found {list(parcels.columns)}")
    data = parcels[[*by, "seed", *UNIT, value]]
    conds = data[by].drop_duplicates().sort_values(by, kind="stable").reset_index(drop=True)
    seeds = np.sort(data["seed"].unique())
    units = data[UNIT].drop_duplicates().sort_values(UNIT, kind="stable")
    ci = pd.MultiIndex.from_frame(conds).get_indexer(pd.MultiIndex.from_frame(data[by]))
    si = np.searchsorted(seeds, data["seed"].to_numpy())
    ui = pd.MultiIndex.from_frame(units).get_indexer(pd.MultiIndex.from_frame(data[UNIT]))
    out = np.full((len(conds), seeds.size, len(units)), np.nan)
    out[ci, si, ui] = data[value].to_numpy(dtype=np.float64)
    return conds, out


def point_means(scores: np.ndarray) -> np.ndarray:
    """Mean over units, then over seeds: ``(n_cond, n_seeds, n_units) -> (n_cond,)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.nanmean(scores, axis=2), axis=1)


def _weighted_mean(values: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    ok = np.isfinite(values)
    num = np.where(ok, values, 0.0) * weights
    den = ok * weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return num.sum(axis) / den.sum(axis)


def draw_means(scores: np.ndarray, n_boot: int, seed: int = 0) -> np.ndarray:
    """Condition means under the hierarchical bootstrap (see the module docstring).

    Parameters
    ----------
    scores : ndarray, shape (n_conditions, n_seeds, n_units)
        The cube of :func:`cube` (``n_units`` may be 1, e.g. a validation loss per run).
    n_boot : int
        Number of draws.
    seed : int
        Seed of the resampling.

    Returns
    -------
    means : ndarray, shape (n_boot, n_conditions)
        Mean over the drawn units, then over the drawn seeds, per draw; NaN where a draw
        leaves a condition without data.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 3:
        raise ValueError(f"scores must be (n_conditions, n_seeds, n_units), found {scores.shape}")
    n_cond, n_seeds, n_units = scores.shape
    rng = np.random.default_rng(seed)
    w_seed = np.stack([np.bincount(rng.integers(0, n_seeds, n_seeds), minlength=n_seeds)
                       for _ in range(n_boot)]).astype(np.float64)  # (B, S)
    if n_units > 1:
        w_unit = np.stack([np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)
                           for _ in range(n_boot)]).astype(np.float64)  # (B, U)
    else:
        w_unit = np.ones((n_boot, n_units))
    ok = np.isfinite(scores)
    vals = np.where(ok, scores, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_seed = (np.einsum("csu,bu->bcs", vals, w_unit)
                    / np.einsum("csu,bu->bcs", ok.astype(np.float64), w_unit))  # (B, C, S)
    return _weighted_mean(per_seed, w_seed[:, None, :], axis=2)  # (B, C)


def percentile_ci(draws: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap draws along axis 0, ignoring NaN draws."""
    tail = (1 - level) / 2 * 100
    draws = np.asarray(draws, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    return lo, hi
