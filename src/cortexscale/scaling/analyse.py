"""The study's answer: scaling fits, the compute frontier, factor comparisons, a summary.

Reads the tidy tables written by :func:`cortexscale.scaling.table.aggregate` and writes

- ``scaling_fits.tsv``: log-linear and saturating fits of the ROI-mean score against data
  size (per model configuration and precision), parameter count (per data size and
  precision) and training compute (all grid points), per subject and ROI, per ROI pooled
  over subjects, and pooled over everything; bootstrap intervals over parcels.
- ``frontier.tsv``: every grid point's score and compute, and whether it is on the Pareto
  frontier; ``allocation.tsv``: the Chinchilla-style fit where the grid allows one.
- ``comparisons.tsv``: paired tests of each factor (:mod:`cortexscale.scaling.stats`).
- ``summary.md``: each finding in a sentence with its numbers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cortexscale.io.atomic import atomic_path
from cortexscale.scaling.fits import bootstrap_fit, prediction_band
from cortexscale.scaling.frontier import fit_allocation, optimal_allocation, pareto_front
from cortexscale.scaling.stats import compare_factors
from cortexscale.scaling.table import write_table

MODEL = ["hidden", "layers", "heads"]
# axis (the x column) -> the columns that define one series along that axis
AXES = {
    "data_size": [*MODEL, "precision"],
    "n_params": ["data_size", "precision"],
    "train_flops": [],
}
ALL = "all"


def _series_rows(
    parcels: pd.DataFrame, x_col: str, series: dict, subject: str, roi: str,
    n_boot: int, seed: int, laws: tuple[str, ...],
) -> list[dict]:
    """Fit each law to one series: rows are grid points, columns are units (parcels)."""
    unit = ["subject", "roi", "parcel"]
    wide = parcels.pivot_table(index="grid", columns=unit, values="r", aggfunc="first")
    x = parcels.groupby("grid")[x_col].first().loc[wide.index].to_numpy(dtype=np.float64)
    rows = []
    for law in laws:
        fit = bootstrap_fit(x, wide.to_numpy(), law, n_boot=n_boot, seed=seed)
        rows.append({"axis": x_col, **series, "subject": subject, "roi": roi, "law": law, **fit})
    return rows


def scaling_fits(parcels: pd.DataFrame, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Fit the scaling laws along every axis (see the module docstring).

    Parameters
    ----------
    parcels : DataFrame
        Per-parcel table with grid columns, ``n_params``, ``train_flops``, ``subject``,
        ``roi``, ``parcel``, ``r``.
    n_boot : int
        Bootstrap resamples of the parcels.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    fits : DataFrame
        One row per axis x series x (subject, ROI) level x law.
    """
    rows: list[dict] = []
    for x_col, by in AXES.items():
        groups = parcels.groupby(by, sort=True) if by else [((), parcels)]
        for key, ser in groups:
            if ser[x_col].nunique() < 2:
                continue
            key = key if isinstance(key, tuple) else (key,)
            series = {c: v for c, v in zip(by, key, strict=True)}
            for (subject, roi), part in ser.groupby(["subject", "roi"], sort=True):
                rows += _series_rows(part, x_col, series, subject, roi, n_boot, seed,
                                     ("loglinear",))
            for roi, part in ser.groupby("roi", sort=True):
                rows += _series_rows(part, x_col, series, ALL, roi, n_boot, seed,
                                     ("loglinear", "saturating"))
            rows += _series_rows(ser, x_col, series, ALL, ALL, n_boot, seed,
                                 ("loglinear", "saturating"))
    return pd.DataFrame(rows)


def fit_curves(parcels: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Log-linear fits along data size and parameters, per ROI pooled over subjects, as
    curves with 95% bootstrap bands (for the fits figure).

    Returns
    -------
    curves : DataFrame
        ``axis``, the series columns, ``roi``, ``x``, ``pred``, ``lo``, ``hi``, and the
        observed mean r ``observed`` at the grid's own x (NaN between them).
    """
    unit = ["subject", "roi", "parcel"]
    rows = []
    for x_col in ("data_size", "n_params"):
        by = AXES[x_col]
        for key, ser in parcels.groupby([*by, "roi"], sort=True):
            if ser[x_col].nunique() < 2:
                continue
            wide = ser.pivot_table(index="grid", columns=unit, values="r", aggfunc="first")
            x = ser.groupby("grid")[x_col].first().loc[wide.index].to_numpy(dtype=float)
            xs = np.unique(np.concatenate([np.geomspace(x.min(), x.max(), 25), x]))
            pred, lo, hi = prediction_band(x, wide.to_numpy(), "loglinear", xs, n_boot, seed=seed)
            observed = pd.Series(np.nanmean(wide.to_numpy(), axis=1)).groupby(x).mean()
            series = dict(zip([*by, "roi"], key, strict=True))
            for xi, p, a, b in zip(xs, pred, lo, hi, strict=True):
                rows.append({"axis": x_col, **series, "x": xi, "pred": p, "lo": a, "hi": b,
                             "observed": observed.get(xi, np.nan)})
    return pd.DataFrame(rows)


def frontier_table(table: pd.DataFrame) -> pd.DataFrame:
    """Score (mean r over subjects) and compute of every grid point, per ROI and over all
    ROIs, with the Pareto frontier marked within each ROI."""
    keys = ["grid", "data_size", *MODEL, "precision", "n_params", "tokens_seen", "train_flops"]
    per_roi = table.groupby([*keys, "roi"], as_index=False)["mean_r"].mean()
    overall = table.groupby(keys, as_index=False)["mean_r"].mean().assign(roi=ALL)
    out = pd.concat([per_roi, overall], ignore_index=True).rename(columns={"mean_r": "score"})
    out["on_front"] = False
    for _, idx in out.groupby("roi").groups.items():
        part = out.loc[idx]
        out.loc[idx, "on_front"] = pareto_front(part["train_flops"], part["score"])
    return out.sort_values(["roi", "train_flops", "grid"], kind="stable").reset_index(drop=True)


def allocation_table(frontier: pd.DataFrame) -> pd.DataFrame:
    """The allocation fit on the all-ROI scores, with the best split at a few budgets."""
    pts = frontier[frontier["roi"] == ALL]
    fit = fit_allocation(pts["n_params"], pts["tokens_seen"], pts["score"])
    budgets = np.logspace(np.log10(pts["train_flops"].min()),
                          np.log10(pts["train_flops"].max()) + 2, 5)
    nd = optimal_allocation(fit, budgets)
    return pd.DataFrame([
        {**fit, "budget_flops": c, "best_n_params": n, "best_tokens": d}
        for c, (n, d) in zip(budgets, nd, strict=True)
    ])


def _fmt_ci(row: pd.Series, name: str) -> str:
    return f"{row[name]:+.3f} (95% CI {row[name + '_lo']:+.3f} to {row[name + '_hi']:+.3f})"


def summary_markdown(
    table: pd.DataFrame, fits: pd.DataFrame, frontier: pd.DataFrame,
    allocation: pd.DataFrame, comparisons: pd.DataFrame, study: str = "study",
) -> str:
    """Each finding of the study in a sentence with its numbers."""
    lines = [f"# Findings of {study}", ""]
    lines.append(
        f"{table['grid'].nunique()} grid points, {table['subject'].nunique()} subject(s), "
        f"{table['roi'].nunique()} ROI(s); mean held-out r over all rows "
        f"{table['mean_r'].mean():.3f} (best grid point "
        f"{table.groupby('grid')['mean_r'].mean().idxmax()})."
    )
    lines += ["", "## Scaling", ""]
    pooled = fits[(fits["subject"] == ALL) & (fits["roi"] == ALL) & (fits["law"] == "loglinear")]
    names = {"data_size": "pretraining data", "n_params": "parameters",
             "train_flops": "training compute"}
    for axis, name in names.items():
        part = pooled[pooled["axis"] == axis]
        if part.empty:
            lines.append(f"- {name.capitalize()}: the grid does not vary it.")
            continue
        gains = part["gain_per_decade"]
        best = part.loc[gains.abs().idxmax()]
        lines.append(
            f"- {name.capitalize()}: a tenfold increase changes the mean r by "
            f"{gains.mean():+.3f} on average over {len(part)} series (largest: "
            f"{_fmt_ci(best, 'gain_per_decade')}; R^2 {best['r2']:.2f})."
        )
    lines += ["", "## Compute", ""]
    front = frontier[(frontier["roi"] == ALL) & frontier["on_front"]]
    lines.append(
        f"- {len(front)} of {frontier[frontier['roi'] == ALL].shape[0]} grid points are on the "
        f"compute frontier: {', '.join(front['grid'])}."
    )
    status = str(allocation["status"].iloc[0]) if len(allocation) else "no grid points"
    lines.append(f"- Compute allocation fit: {status}.")
    lines += ["", "## Factors (paired Wilcoxon tests over parcels, FDR-corrected)", ""]
    if comparisons.empty:
        lines.append("- The grid varies no factor at fixed context.")
    for _, row in comparisons.iterrows():
        verdict = "differs" if row["q"] < 0.05 else "does not differ detectably"
        lines.append(
            f"- {row['factor']} {row['value_b']} vs {row['value_a']}: mean r "
            f"{row['mean_b']:.3f} vs {row['mean_a']:.3f} (difference {row['mean_diff']:+.3f}, "
            f"{row['n_pairs']} pairs, q = {row['q']:.2g}): {verdict}."
        )
    return "\n".join(lines) + "\n"


def analyse(
    table_tsv: str | os.PathLike, parcels_tsv: str | os.PathLike, out_dir: str | os.PathLike,
    summary_md: str | os.PathLike, frontier_png: str | os.PathLike | None = None,
    n_boot: int = 1000, seed: int = 0, study: str = "study",
) -> None:
    """Run every analysis and write its tables, the summary and the frontier figure.

    Parameters
    ----------
    table_tsv, parcels_tsv : path-like
        ``tables/encoding.tsv`` and ``tables/parcels.tsv`` of the study.
    out_dir : path-like
        Folder of the analysis tables (``scaling_fits``, ``frontier``, ``allocation``,
        ``comparisons``; TSV and Parquet).
    summary_md : path-like
        The findings in sentences.
    frontier_png : path-like, optional
        The compute-frontier figure; the fits figure ``scaling_fits.png`` goes beside it.
    n_boot, seed : int
        Bootstrap resamples of the scaling fits and their seed.
    study : str
        Name of the study, for the summary's title.
    """
    table = pd.read_csv(table_tsv, sep="\t")
    parcels = pd.read_csv(parcels_tsv, sep="\t")
    if table.empty or parcels.empty:
        raise ValueError(f"{table_tsv} or {parcels_tsv} has no rows; nothing to analyse")
    extra = table.drop_duplicates("grid").set_index("grid")[["n_params", "train_flops"]]
    parcels = parcels.join(extra, on="grid")
    out_dir = Path(out_dir)
    print(f"analyse: fitting scaling laws ({n_boot} bootstrap resamples)", file=sys.stderr)
    fits = scaling_fits(parcels, n_boot=n_boot, seed=seed)
    frontier = frontier_table(table)
    allocation = allocation_table(frontier)
    comparisons = compare_factors(parcels)
    curves = fit_curves(parcels, n_boot=n_boot, seed=seed)
    write_table(fits, out_dir / "scaling_fits.tsv")
    write_table(curves, out_dir / "fit_curves.tsv")
    write_table(frontier, out_dir / "frontier.tsv")
    write_table(allocation, out_dir / "allocation.tsv")
    write_table(comparisons, out_dir / "comparisons.tsv")
    with atomic_path(summary_md) as tmp:
        tmp.write_text(summary_markdown(table, fits, frontier, allocation, comparisons, study))
    if frontier_png is not None:
        from cortexscale.report.figures import plot_fits, plot_frontier

        plot_frontier(frontier, frontier_png)
        if not curves.empty:
            plot_fits(curves, Path(frontier_png).with_name("scaling_fits.png"))
