"""Paired tests of the sweep's questions: does hidden size, depth, heads or precision matter?

For a factor (say ``heads``), two grid points form a pair when they differ in that factor
only. Their per-parcel scores are paired by (subject, ROI, parcel); the pairs of every
context (data size, the other factors) with the same two factor values are pooled into one
Wilcoxon signed-rank test, so each row answers "is value B better than value A?" over all
parcels, subjects and contexts. The p-values of all rows are corrected together with the
Benjamini-Hochberg false discovery rate.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, wilcoxon

FACTORS = ("data_size", "hidden", "layers", "heads", "precision")
UNIT = ["subject", "roi", "parcel"]
COLUMNS = [
    "factor", "value_a", "value_b", "n_contexts", "n_pairs", "mean_a", "mean_b",
    "median_diff", "mean_diff", "statistic", "p", "q",
]


def _pairs_for(parcels: pd.DataFrame, factor: str) -> dict[tuple, list[np.ndarray]]:
    """(value_a, value_b) -> list of (n, 2) arrays of paired scores, one per context."""
    context = [f for f in FACTORS if f != factor]
    out: dict[tuple, list[np.ndarray]] = {}
    for _, ctx in parcels.groupby(context, sort=True):
        values = sorted(ctx[factor].unique(), key=lambda v: (str(type(v)), v))
        if len(values) < 2:
            continue
        wide = ctx.pivot_table(index=UNIT, columns=factor, values="r", aggfunc="first")
        for va, vb in itertools.combinations(values, 2):
            both = wide[[va, vb]].dropna()
            if len(both):
                out.setdefault((va, vb), []).append(both.to_numpy())
    return out


def compare_factors(parcels: pd.DataFrame, factors=FACTORS[1:]) -> pd.DataFrame:
    """Paired Wilcoxon signed-rank tests for every factor and pair of its values.

    Parameters
    ----------
    parcels : DataFrame
        Per-parcel table with the grid columns ``data_size, hidden, layers, heads,
        precision`` and ``subject, roi, parcel, r``.
    factors : sequence of str
        Factors to test (default: the model factors and precision).

    Returns
    -------
    table : DataFrame
        One row per (factor, value_a, value_b) with ``COLUMNS``; ``mean_diff`` and
        ``median_diff`` are of ``r_b - r_a``; ``q`` is the FDR-corrected p over all rows.
        Empty (with the columns) when the grid varies none of the factors.
    """
    missing = [c for c in [*FACTORS, *UNIT, "r"] if c not in parcels.columns]
    if missing:
        raise ValueError(f"parcel table lacks column(s) {missing}")
    data = parcels.dropna(subset=["r"])
    rows = []
    for factor in factors:
        for (va, vb), chunks in _pairs_for(data, factor).items():
            pairs = np.concatenate(chunks)
            diff = pairs[:, 1] - pairs[:, 0]
            if np.count_nonzero(diff) == 0:
                stat, p = float("nan"), 1.0
            else:
                res = wilcoxon(pairs[:, 1], pairs[:, 0], zero_method="wilcox")
                stat, p = float(res.statistic), float(res.pvalue)
            rows.append({
                "factor": factor, "value_a": str(va), "value_b": str(vb), "n_contexts": len(chunks),
                "n_pairs": len(pairs), "mean_a": float(pairs[:, 0].mean()),
                "mean_b": float(pairs[:, 1].mean()), "median_diff": float(np.median(diff)),
                "mean_diff": float(diff.mean()), "statistic": stat, "p": p,
            })
    table = pd.DataFrame(rows, columns=COLUMNS[:-1])
    table["q"] = false_discovery_control(table["p"].to_numpy()) if len(table) else []
    return table[COLUMNS]
