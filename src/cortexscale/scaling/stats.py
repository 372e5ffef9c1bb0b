"""Paired tests of the sweep's questions: does hidden size, depth, heads or precision matter?

The unit of replication is the training run, not the parcel. For a factor (say ``heads``),
two runs form a pair when they differ in that factor only: same data size, budget, tokens,
other model factors, precision **and seed**. Each run is reduced to its mean r over the
parcels (subjects, ROIs) that both runs scored, so one run pair gives one difference. The
pairs of every context (data size, other factors) and seed with the same two factor values
are pooled, and each row answers "does value B score higher than value A?" with a paired
t-test on the run-pair differences and its t interval; ``n_pairs`` counts run pairs
(seeds x contexts), never parcels.

Precision is compared on its own: its pairs are the same model, data and seed at two
precisions, and the model factors are tested at each precision separately
(``at_precision``), so near-duplicate runs (fp32 and bf16 of one model) are never counted as
independent evidence. With a single run pair there is no replicate to test against: the
interval then comes from a bootstrap over parcels, is labelled as such, and there is no p.
The p-values of all rows are corrected together with the Benjamini-Hochberg false discovery
rate. An interval that contains 0 reads "no detectable effect".
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, t, ttest_1samp

from cortexscale.scaling.bootstrap import PARCELS_ONLY, UNIT

FACTORS = ("data_size", "hidden", "layers", "heads", "precision")
CONTEXT_EXTRA = ("family", "budget", "tokens")
COLUMNS = [
    "factor", "at_precision", "value_a", "value_b", "n_contexts", "n_seeds", "n_pairs",
    "n_parcels", "mean_a", "mean_b", "mean_diff", "diff_lo", "diff_hi", "ci_unit", "test",
    "statistic", "p", "q", "verdict",
]
NO_EFFECT = "no detectable effect"


def _sort_key(v):
    return (str(type(v)), v)


def _run_pairs(parcels: pd.DataFrame, factor: str) -> dict[tuple, list[dict]]:
    """(at_precision, value_a, value_b) -> one record per run pair: the two run means over
    their shared units, the context and the seed, and the per-unit differences."""
    extra = [c for c in CONTEXT_EXTRA if c in parcels.columns]
    context = [f for f in FACTORS if f not in (factor, "precision")] + extra
    split = [] if factor == "precision" else ["precision"]
    out: dict[tuple, list[dict]] = {}
    for key, ctx in parcels.groupby([*split, *context, "seed"], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        at = str(key[0]) if split else "any"
        values = sorted(ctx[factor].unique(), key=_sort_key)
        if len(values) < 2:
            continue
        wide = ctx.pivot_table(index=UNIT, columns=factor, values="r", aggfunc="first")
        for va, vb in itertools.combinations(values, 2):
            both = wide[[va, vb]].dropna()
            if both.empty:
                continue
            a, b = both[va].to_numpy(), both[vb].to_numpy()
            out.setdefault((at, va, vb), []).append({
                "context": key[len(split):-1], "seed": key[-1], "mean_a": a.mean(),
                "mean_b": b.mean(), "unit_diff": b - a,
            })
    return out


def t_half_width(values: np.ndarray, level: float = 0.95) -> float:
    """Half-width of the t interval of the mean of ``values`` (n - 1 degrees of freedom: with
    2 values the 95% quantile is 12.7, not 1.96); NaN for fewer than 2 finite values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan")
    tail = (1 - level) / 2
    return float(t.ppf(1 - tail, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))


def verdict(lo: float, hi: float, value_a: str = "a", value_b: str = "b") -> str:
    """``no detectable effect`` when the interval [lo, hi] of ``b - a`` contains 0."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo <= 0 <= hi:
        return NO_EFFECT
    return f"{value_b} higher" if lo > 0 else f"{value_a} higher"


def compare_factors(
    parcels: pd.DataFrame, factors=FACTORS[1:], level: float = 0.95, n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired tests on run pairs for every factor and pair of its values.

    Parameters
    ----------
    parcels : DataFrame
        Per-parcel table with ``data_size, hidden, layers, heads, precision, seed``
        (and, when present, ``family, budget, tokens``: part of the context), and
        ``subject, roi, parcel, r``.
    factors : sequence of str
        Factors to test (default: the model factors and precision).
    level : float
        Confidence level of the intervals.
    n_boot, seed : int
        Parcel bootstrap of a single run pair.

    Returns
    -------
    table : DataFrame
        One row per (factor, at_precision, value_a, value_b) with ``COLUMNS``:
        ``mean_diff`` is the mean over run pairs of ``r_b - r_a`` (run means), ``diff_lo``,
        ``diff_hi`` its interval, ``ci_unit`` what the interval replicates over, ``p`` the
        paired t-test over run pairs (NaN for a single pair), ``q`` the FDR-corrected p over
        all rows, ``verdict`` ``no detectable effect`` or which value is higher. Empty (with
        the columns) when the grid varies none of the factors.
    """
    missing = [c for c in [*FACTORS, "seed", *UNIT, "r"] if c not in parcels.columns]
    if missing:
        raise ValueError(f"parcel table lacks column(s) {missing}")
    data = parcels.dropna(subset=["r"])
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    rows = []
    for factor in factors:
        for (at, va, vb), pairs in _run_pairs(data, factor).items():
            diffs = np.array([p["mean_b"] - p["mean_a"] for p in pairs])
            n = diffs.size
            row = {
                "factor": factor, "at_precision": at, "value_a": str(va), "value_b": str(vb),
                "n_contexts": len({p["context"] for p in pairs}),
                "n_seeds": len({p["seed"] for p in pairs}), "n_pairs": n,
                "n_parcels": int(np.median([p["unit_diff"].size for p in pairs])),
                "mean_a": float(np.mean([p["mean_a"] for p in pairs])),
                "mean_b": float(np.mean([p["mean_b"] for p in pairs])),
                "mean_diff": float(diffs.mean()),
            }
            if n >= 2:
                sd = float(diffs.std(ddof=1))
                half = t_half_width(diffs, level)
                res = ttest_1samp(diffs, 0.0) if sd > 0 else None
                row.update(
                    diff_lo=float(diffs.mean() - half), diff_hi=float(diffs.mean() + half),
                    ci_unit=f"run pairs ({row['n_seeds']} seed(s) x {row['n_contexts']} "
                            "context(s))",
                    test="paired t-test on run-pair means",
                    statistic=float(res.statistic) if res else float("nan"),
                    p=float(res.pvalue) if res else (1.0 if diffs.mean() == 0 else 0.0),
                )
            else:
                ud = pairs[0]["unit_diff"]
                boot = np.array([ud[rng.integers(0, ud.size, ud.size)].mean()
                                 for _ in range(n_boot)])
                lo, hi = np.percentile(boot, [100 * tail, 100 * (1 - tail)])
                row.update(diff_lo=float(lo), diff_hi=float(hi), ci_unit=PARCELS_ONLY,
                           test="none (1 run pair: no replicate)", statistic=float("nan"),
                           p=float("nan"))
            rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS[:-2])
    q = np.full(len(table), np.nan)
    if len(table):
        finite = np.isfinite(table["p"].to_numpy(dtype=float))
        if finite.any():
            q[finite] = false_discovery_control(table["p"].to_numpy(dtype=float)[finite])
    table["q"] = q
    table["verdict"] = [
        verdict(r.diff_lo, r.diff_hi, r.value_a, r.value_b)
        if r.n_pairs >= 2 else "no replicate runs (parcel interval only)"
        for r in table.itertuples()
    ]
    return table[COLUMNS]
