"""The study's answer: scaling fits, the compute frontier, the allocation, factor tests.

From the tidy tables (:mod:`cortexscale.scaling.table`), :func:`analyse_tables` computes

- ``scaling_fits``: log-linear and saturating fits of the ROI-mean score against data
  size (per model configuration and precision), parameter count (per data size and
  precision; not within an IsoFLOP budget, where :mod:`~cortexscale.scaling.allocation`
  takes over) and training compute, per family (VideoGPT, planted reference), per subject
  and ROI, per ROI pooled over subjects and pooled over everything (subject and ROI
  ``(pooled)``, :data:`cortexscale.labels.POOLED`; every parcel once where ROIs overlap);
  the validation loss
  along the same axes (``target = val_loss``, pooled level); intervals from the bootstrap
  over seeds and parcels (:mod:`~cortexscale.scaling.bootstrap`).
- ``fit_curves``: the log-linear fits as curves with bands (for the fits figure).
- ``frontier``: every condition's score (mean over seeds and subjects), normalised
  score, compute, bootstrap interval, and whether it is on the Pareto frontier.
- ``isoflop``: the IsoFLOP profiles (target per budget and N, with intervals);
  ``allocation``: approaches 2 and 3 (:mod:`~cortexscale.scaling.allocation`).
- ``comparisons``: paired tests on run pairs (:mod:`cortexscale.scaling.stats`).

The analysis stage (:mod:`cortexscale.stages.analysis`) reads the tables, writes these and
the summary (:mod:`cortexscale.scaling.summary`) and draws the figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cortexscale.labels import POOLED
from cortexscale.logs import get_logger
from cortexscale.scaling.allocation import CONDITION, Cube, allocation_table, target_cubes
from cortexscale.scaling.bootstrap import cube, draw_means, percentile_ci, point_means
from cortexscale.scaling.fits import MIN_X, bootstrap_fit, prediction_band
from cortexscale.scaling.frontier import pareto_front
from cortexscale.scaling.stats import compare_factors
from cortexscale.scaling.table import GRID_COLUMNS

__all__ = [
    "Analysis", "analyse_tables", "fit_curves", "frontier_table", "isoflop_curves",
    "runs_table", "scaling_fits", "unique_parcels",
]

log = get_logger(__name__)

MODEL = ["hidden", "layers", "heads"]
# axis (the x column) -> the columns that define one series along that axis
AXES = {
    "data_size": ["family", *MODEL, "precision", "budget", "tokens"],
    "n_params": ["family", "data_size", "precision", "budget", "tokens"],
    "train_flops": ["family", "precision"],
}
SCALED = ("videogpt", "planted")  # families with N, D and C (not the latents/random lines)
RUN_KEYS = ["n_params", "train_flops", "tokens_seen", "final_val_loss"]


def unique_parcels(parcels: pd.DataFrame) -> pd.DataFrame:
    """Each (run, subject, parcel) once, the first ROI's row kept.

    A study's ROIs may overlap (``Vis``, ``Vis_LH`` and ``all``); a statistic pooled over
    ROIs counts every parcel once. A parcel's score does not depend on the ROI it was fitted
    in (the ridge penalty is chosen per parcel), so which row is kept does not matter.
    """
    return parcels.drop_duplicates(["grid", "subject", "parcel"])


def _series_rows(
    parcels: pd.DataFrame, x_col: str, series: dict, subject: str, roi: str,
    n_boot: int, seed: int, laws: tuple[str, ...],
) -> list[dict]:
    """Fit each law to one series: the cube's conditions are the points, seeds and units
    (parcels) the replicates."""
    conds, scores = cube(parcels, [*CONDITION, x_col] if x_col not in CONDITION else CONDITION)
    x = conds[x_col].to_numpy(dtype=np.float64)
    observed = {"mean_r": float(np.nanmean(point_means(scores)))}
    if "score_normalised" in parcels.columns:
        observed["mean_normalised"] = float(parcels["score_normalised"].mean())
    rows = []
    for law in laws:
        fit = bootstrap_fit(x, scores, law, n_boot=n_boot, seed=seed)
        rows.append({"axis": x_col, "target": "score", **series, "subject": subject,
                     "roi": roi, "law": law, **observed, **fit})
    return rows


def _loss_row(runs: pd.DataFrame, x_col: str, series: dict, n_boot: int, seed: int) -> dict:
    """Log-linear fit of the validation loss along the axis; replicates are seeds."""
    by = [*CONDITION, x_col] if x_col not in CONDITION else CONDITION
    conds, loss = cube(runs.assign(subject="", roi="", parcel=0), by, "final_val_loss")
    x = conds[x_col].to_numpy(dtype=np.float64)
    fit = bootstrap_fit(x, loss, "loglinear", n_boot=n_boot, seed=seed)
    return {"axis": x_col, "target": "val_loss", **series, "subject": POOLED, "roi": POOLED,
            "law": "loglinear", **fit}


def scaling_fits(
    parcels: pd.DataFrame, n_boot: int = 200, seed: int = 0, runs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Fit the scaling laws along every axis (see the module docstring).

    Parameters
    ----------
    parcels : DataFrame
        Per-parcel table with the grid columns, ``n_params``, ``train_flops``, ``subject``,
        ``roi``, ``parcel``, ``r``.
    n_boot : int
        Bootstrap draws (seeds and parcels).
    seed : int
        Seed of the bootstrap.
    runs : DataFrame, optional
        One row per run with the grid columns and ``final_val_loss``: adds the loss fits.

    Returns
    -------
    fits : DataFrame
        One row per axis x series x (subject, ROI) level x law (x target). Series with
        fewer than :data:`~cortexscale.scaling.fits.MIN_X` distinct x get one pooled row
        per law whose ``status`` says so, and no per-ROI rows.
    """
    rows: list[dict] = []
    parcels = parcels[parcels["family"].isin(SCALED)]
    for x_col, by in AXES.items():
        for key, ser in parcels.groupby(by, sort=True):
            if x_col == "n_params" and (ser["budget"] > 0).any():
                continue  # within an IsoFLOP budget the curve is a profile, not a law
            if (ser[x_col] <= 0).any() or ser[x_col].nunique() < 2:
                continue  # the grid does not vary this axis in this series
            key = key if isinstance(key, tuple) else (key,)
            series = {c: v for c, v in zip(by, key, strict=True)}
            pooled = ("loglinear", "saturating")
            if ser[x_col].nunique() >= MIN_X:
                for (subject, roi), part in ser.groupby(["subject", "roi"], sort=True):
                    rows += _series_rows(part, x_col, series, subject, roi, n_boot, seed,
                                         ("loglinear",))
                for roi, part in ser.groupby("roi", sort=True):
                    rows += _series_rows(part, x_col, series, POOLED, roi, n_boot, seed, pooled)
            rows += _series_rows(unique_parcels(ser), x_col, series, POOLED, POOLED, n_boot, seed,
                                 pooled)
            if runs is not None:
                sel = np.ones(len(runs), dtype=bool)
                for c, v in series.items():
                    sel &= (runs[c] == v).to_numpy()
                part = runs[sel].dropna(subset=["final_val_loss"])
                if len(part) and part[x_col].nunique() >= 2:
                    rows.append(_loss_row(part, x_col, series, n_boot, seed))
    return pd.DataFrame(rows)


def fit_curves(parcels: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Log-linear fits along data size and parameters, per ROI pooled over subjects, as
    curves over the covered range with 95% bootstrap bands (for the fits figure); only
    series with at least :data:`~cortexscale.scaling.fits.MIN_X` distinct x.

    Returns
    -------
    curves : DataFrame
        ``axis``, the series columns, ``roi``, ``x``, ``pred``, ``lo``, ``hi``, and the
        observed mean r ``observed`` at the grid's own x (NaN between them).
    """
    rows = []
    parcels = parcels[parcels["family"].isin(SCALED)]
    for x_col in ("data_size", "n_params"):
        by = AXES[x_col]
        for key, ser in parcels.groupby([*by, "roi"], sort=True):
            if (ser[x_col] <= 0).any() or ser[x_col].nunique() < MIN_X:
                continue
            if x_col == "n_params" and (ser["budget"] > 0).any():
                continue
            conds, scores = cube(ser, CONDITION)
            x = conds[x_col].to_numpy(dtype=float)
            xs = np.unique(np.concatenate([np.geomspace(x.min(), x.max(), 25), x]))
            pred, lo, hi = prediction_band(x, scores, "loglinear", xs, n_boot, seed=seed)
            observed = pd.Series(point_means(scores)).groupby(x).mean()
            series = dict(zip([*by, "roi"], key, strict=True))
            for xi, p, a, b in zip(xs, pred, lo, hi, strict=True):
                rows.append({"axis": x_col, **series, "x": xi, "pred": p, "lo": a, "hi": b,
                             "observed": observed.get(xi, np.nan)})
    cols = ["axis", "family", *MODEL, "data_size", "precision", "budget", "tokens", "roi", "x",
            "pred", "lo", "hi", "observed"]
    return pd.DataFrame(rows, columns=cols)


def frontier_table(table: pd.DataFrame, parcels: pd.DataFrame | None = None,
                   n_boot: int = 200, seed: int = 0,
                   once: pd.DataFrame | None = None) -> pd.DataFrame:
    """Score (mean r over seeds and subjects), normalised score and compute of every
    condition of the scaled families, per ROI and over all ROIs, with the Pareto frontier
    marked within each family and ROI, and (given ``parcels``) a bootstrap interval of the
    score over seeds and parcels (``score_lo``, ``score_hi``).

    ``once`` (optional) is :func:`unique_parcels` of ``parcels``, when already computed (the
    over-all-ROIs interval counts every parcel once)."""
    keys = [*CONDITION]
    table = table[table["family"].isin(SCALED)]
    agg = {"score": ("mean_r", "mean"), "score_normalised": ("mean_normalised", "mean"),
           "ceiling_r": ("ceiling_r", "mean"), "tokens_seen": ("tokens_seen", "mean"),
           "train_flops": ("train_flops", "mean"), "n_seeds": ("seed", "nunique")}
    per_roi = table.groupby([*keys, "roi"], as_index=False).agg(**agg)
    overall = table.groupby(keys, as_index=False).agg(**agg).assign(roi=POOLED)
    out = pd.concat([per_roi, overall], ignore_index=True)
    out["score_lo"] = out["score_hi"] = np.nan
    if parcels is not None and n_boot > 0:
        sub = parcels[parcels["family"].isin(SCALED)]
        # a run's family is one, so keeping each (run, subject, parcel) once commutes with
        # keeping the scaled families
        pooled = unique_parcels(sub) if once is None else once[once["family"].isin(SCALED)]
        for roi in out["roi"].unique():
            part = pooled if roi == POOLED else sub[sub["roi"] == roi]
            conds, scores = cube(part, keys)
            lo, hi = percentile_ci(draw_means(scores, n_boot, seed=seed))
            ci = conds.assign(score_lo=lo, score_hi=hi).set_index(keys)
            idx = out.index[out["roi"] == roi]
            at = pd.MultiIndex.from_frame(out.loc[idx, keys])
            out.loc[idx, "score_lo"] = ci["score_lo"].reindex(at).to_numpy()
            out.loc[idx, "score_hi"] = ci["score_hi"].reindex(at).to_numpy()
    out["on_front"] = False
    for _, idx in out.groupby(["family", "roi"]).groups.items():
        part = out.loc[idx]
        out.loc[idx, "on_front"] = pareto_front(part["train_flops"], part["score"])
    return out.sort_values(["family", "roi", "train_flops", "n_params"],
                           kind="stable").reset_index(drop=True)


def isoflop_curves(
    runs: pd.DataFrame, parcels: pd.DataFrame, n_boot: int = 200, seed: int = 0,
    cubes: Mapping[tuple[str, str], dict[str, Cube]] | None = None,
) -> pd.DataFrame:
    """The IsoFLOP profiles: per family, precision, target, budget and N the mean over
    seeds (and parcels) with its bootstrap interval; empty when nothing has a budget.

    ``cubes`` (optional) holds the :func:`~cortexscale.scaling.allocation.target_cubes` of
    (family, precision) already computed from the same ``runs``, ``parcels``, ``n_boot`` and
    ``seed`` (by :func:`~cortexscale.scaling.allocation.allocation_table`'s caller); one is
    used where every run of its family and precision has a budget (the profiles' runs).
    """
    rows = []
    for (family, precision), fr in runs[runs["budget"] > 0].groupby(["family", "precision"]):
        fp = parcels[(parcels["family"] == family) & (parcels["precision"] == precision)]
        n_runs = ((runs["family"] == family) & (runs["precision"] == precision)).sum()
        shared = (cubes or {}).get((family, precision)) if len(fr) == n_runs else None
        if shared is None:
            shared = target_cubes(fr, fp, n_boot, seed)
        for target in ("score", "val_loss"):
            conds, scores, draws = shared[target]
            mean = point_means(scores)
            lo, hi = (percentile_ci(draws) if n_boot > 0 and draws is not None
                      else (np.full(mean.shape, np.nan),) * 2)
            n_seeds = np.isfinite(scores).any(axis=2).sum(axis=1)
            for i, c in enumerate(conds.itertuples(index=False)):
                rows.append({"family": family, "precision": precision, "target": target,
                             "budget": c.budget, "n_params": c.n_params, "mean": mean[i],
                             "lo": lo[i], "hi": hi[i], "n_seeds": int(n_seeds[i])})
    cols = ["family", "precision", "target", "budget", "n_params", "mean", "lo", "hi",
            "n_seeds"]
    return pd.DataFrame(rows, columns=cols)


def runs_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run (grid point with its seed) with the grid and summary columns."""
    return table.drop_duplicates("grid")[[*GRID_COLUMNS, *RUN_KEYS]].reset_index(drop=True)


@dataclass(frozen=True)
class Analysis:
    """The analysis tables of a study (see the module docstring), in the order written."""

    scaling_fits: pd.DataFrame
    fit_curves: pd.DataFrame
    frontier: pd.DataFrame
    isoflop: pd.DataFrame
    allocation: pd.DataFrame
    comparisons: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """Table name (the file stem) -> table."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def analyse_tables(
    table: pd.DataFrame, parcels: pd.DataFrame, n_boot: int = 1000, seed: int = 0
) -> Analysis:
    """Run every analysis of the study.

    Parameters
    ----------
    table : DataFrame
        The tidy table (``TABLE_COLUMNS`` of :mod:`cortexscale.scaling.table`), one row per
        run x subject x ROI.
    parcels : DataFrame
        The per-parcel table (``PARCEL_COLUMNS``), one row per run x subject x parcel.
    n_boot, seed : int
        Bootstrap draws and their seed.

    Returns
    -------
    analysis : Analysis
    """
    runs = runs_table(table)
    parcels = parcels.join(runs.set_index("grid")[RUN_KEYS], on="grid")
    log.info(f"fitting scaling laws ({n_boot} bootstrap draws)")
    fits = scaling_fits(parcels, n_boot=n_boot, seed=seed, runs=runs)
    # pooled over the study's ROIs: every parcel once, also where ROIs overlap
    once = unique_parcels(parcels)
    frontier = frontier_table(table, parcels, n_boot=min(n_boot, 200), seed=seed, once=once)
    log.info("compute-optimal allocation")
    # the cubes and bootstrap draws of the IsoFLOP families, made once for both tables
    cubes = {
        (family, precision): target_cubes(
            fr, once[(once["family"] == family) & (once["precision"] == precision)], n_boot,
            seed)
        for (family, precision), fr in runs.groupby(["family", "precision"], sort=True)
        if family in SCALED and (fr["budget"] > 0).all()
    }
    allocation = allocation_table(runs, once, n_boot=n_boot, seed=seed,
                                  n_refit=min(n_boot, 100), families=SCALED, cubes=cubes)
    isoflop = isoflop_curves(runs, once, n_boot=n_boot, seed=seed, cubes=cubes)
    comparisons = compare_factors(once[once["family"] == "videogpt"], seed=seed)
    curves = fit_curves(parcels, n_boot=n_boot, seed=seed)
    return Analysis(scaling_fits=fits, fit_curves=curves, frontier=frontier, isoflop=isoflop,
                    allocation=allocation, comparisons=comparisons)
