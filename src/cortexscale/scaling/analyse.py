"""The study's answer: scaling fits, the compute frontier, the allocation, factor tests.

Reads the tidy tables written by :func:`cortexscale.scaling.table.aggregate` and writes

- ``scaling_fits.tsv``: log-linear and saturating fits of the ROI-mean score against data
  size (per model configuration and precision), parameter count (per data size and
  precision; not within an IsoFLOP budget, where :mod:`~cortexscale.scaling.allocation`
  takes over) and training compute, per family (VideoGPT, planted reference), per subject
  and ROI, per ROI pooled over subjects and pooled over everything (subject and ROI
  ``(pooled)``, :data:`cortexscale.config.POOLED`; every parcel once where ROIs overlap);
  the validation loss
  along the same axes (``target = val_loss``, pooled level); intervals from the bootstrap
  over seeds and parcels (:mod:`~cortexscale.scaling.bootstrap`).
- ``frontier.tsv``: every condition's score (mean over seeds and subjects), normalised
  score, compute, bootstrap interval, and whether it is on the Pareto frontier.
- ``isoflop.tsv``: the IsoFLOP profiles (target per budget and N, with intervals);
  ``allocation.tsv``: approaches 2 and 3 (:mod:`~cortexscale.scaling.allocation`).
- ``comparisons.tsv``: paired tests on run pairs (:mod:`cortexscale.scaling.stats`).
- ``summary.md``: each finding in a sentence (:mod:`cortexscale.scaling.summary`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cortexscale.config import POOLED
from cortexscale.io.atomic import atomic_path
from cortexscale.scaling.allocation import CONDITION, allocation_table
from cortexscale.scaling.bootstrap import cube, draw_means, percentile_ci, point_means
from cortexscale.scaling.fits import MIN_X, bootstrap_fit, prediction_band
from cortexscale.scaling.frontier import pareto_front
from cortexscale.scaling.stats import compare_factors
from cortexscale.scaling.table import GRID_COLUMNS, write_table

MODEL = ["hidden", "layers", "heads"]
# axis (the x column) -> the columns that define one series along that axis
AXES = {
    "data_size": ["family", *MODEL, "precision", "budget", "tokens"],
    "n_params": ["family", "data_size", "precision", "budget", "tokens"],
    "train_flops": ["family", "precision"],
}
# the subject and ROI label of pooled rows: one no ROI or subject can be named
ALL = POOLED
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
    return {"axis": x_col, "target": "val_loss", **series, "subject": ALL, "roi": ALL,
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
                    rows += _series_rows(part, x_col, series, ALL, roi, n_boot, seed, pooled)
            rows += _series_rows(unique_parcels(ser), x_col, series, ALL, ALL, n_boot, seed,
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
                   n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Score (mean r over seeds and subjects), normalised score and compute of every
    condition of the scaled families, per ROI and over all ROIs, with the Pareto frontier
    marked within each family and ROI, and (given ``parcels``) a bootstrap interval of the
    score over seeds and parcels (``score_lo``, ``score_hi``)."""
    keys = [*CONDITION]
    table = table[table["family"].isin(SCALED)]
    agg = {"score": ("mean_r", "mean"), "score_normalised": ("mean_normalised", "mean"),
           "ceiling_r": ("ceiling_r", "mean"), "tokens_seen": ("tokens_seen", "mean"),
           "train_flops": ("train_flops", "mean"), "n_seeds": ("seed", "nunique")}
    per_roi = table.groupby([*keys, "roi"], as_index=False).agg(**agg)
    overall = table.groupby(keys, as_index=False).agg(**agg).assign(roi=ALL)
    out = pd.concat([per_roi, overall], ignore_index=True)
    out["score_lo"] = out["score_hi"] = np.nan
    if parcels is not None and n_boot > 0:
        sub = parcels[parcels["family"].isin(SCALED)]
        for roi in out["roi"].unique():
            part = unique_parcels(sub) if roi == ALL else sub[sub["roi"] == roi]
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


def isoflop_curves(runs: pd.DataFrame, parcels: pd.DataFrame, n_boot: int = 200,
                   seed: int = 0) -> pd.DataFrame:
    """The IsoFLOP profiles: per family, precision, target, budget and N the mean over
    seeds (and parcels) with its bootstrap interval; empty when nothing has a budget."""
    rows = []
    for (family, precision), fr in runs[runs["budget"] > 0].groupby(["family", "precision"]):
        fp = parcels[(parcels["family"] == family) & (parcels["precision"] == precision)]
        for target, (conds, scores) in {
            "score": cube(fp, CONDITION),
            "val_loss": cube(fr.assign(subject="", roi="", parcel=0), CONDITION,
                             "final_val_loss"),
        }.items():
            mean = point_means(scores)
            lo, hi = (percentile_ci(draw_means(scores, n_boot, seed=seed)) if n_boot > 0
                      else (np.full(mean.shape, np.nan),) * 2)
            n_seeds = np.isfinite(scores).any(axis=2).sum(axis=1)
            for i, c in enumerate(conds.itertuples(index=False)):
                rows.append({"family": family, "precision": precision, "target": target,
                             "budget": c.budget, "n_params": c.n_params, "mean": mean[i],
                             "lo": lo[i], "hi": hi[i], "n_seeds": int(n_seeds[i])})
    cols = ["family", "precision", "target", "budget", "n_params", "mean", "lo", "hi",
            "n_seeds"]
    return pd.DataFrame(rows, columns=cols)


def _runs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run (grid point with its seed) with the grid and summary columns."""
    return table.drop_duplicates("grid")[[*GRID_COLUMNS, *RUN_KEYS]].reset_index(drop=True)


def _read_optional(path: str | os.PathLike | None) -> pd.DataFrame | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained-arm table {path} does not exist")
    return pd.read_csv(path, sep="\t")


def read_planted(summaries: list[str | os.PathLike] | None) -> dict | None:
    """The planted law's truth: the ``planted`` dict of the first reference summary that
    has one (``results/reference/{name}/summary.json``); None when none has it."""
    for p in summaries or []:
        try:
            obj = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"reference summary {p} cannot be read: {exc}") from None
        if isinstance(obj.get("planted"), dict):
            return obj["planted"]
    return None


def analyse(
    table_tsv: str | os.PathLike, parcels_tsv: str | os.PathLike, out_dir: str | os.PathLike,
    summary_md: str | os.PathLike, frontier_png: str | os.PathLike | None = None,
    n_boot: int = 1000, seed: int = 0, study: str = "study",
    pretrained_tsv: str | os.PathLike | None = None,
    pretrained_sample_size_tsv: str | os.PathLike | None = None,
    pretrained_fits_tsv: str | os.PathLike | None = None,
    reference_summaries: list[str | os.PathLike] | None = None,
    isoflop_png: str | os.PathLike | None = None,
    allocation_png: str | os.PathLike | None = None,
) -> None:
    """Run every analysis and write its tables, the summary and the figures.

    Parameters
    ----------
    table_tsv, parcels_tsv : path-like
        ``tables/encoding.tsv`` and ``tables/parcels.tsv`` of the study.
    out_dir : path-like
        Folder of the analysis tables (``scaling_fits``, ``fit_curves``, ``frontier``,
        ``isoflop``, ``allocation``, ``comparisons``; TSV and Parquet).
    summary_md : path-like
        The findings in sentences.
    frontier_png : path-like, optional
        The compute-frontier figure; the fits figure ``scaling_fits.png`` goes beside it.
    n_boot, seed : int
        Bootstrap draws and their seed.
    study : str
        Name of the study, for the summary's title.
    pretrained_tsv, pretrained_sample_size_tsv, pretrained_fits_tsv : path-like, optional
        The pretrained-model arm's tables (when the study has pretrained models).
    reference_summaries : list of path-like, optional
        ``results/reference/{name}/summary.json``: the planted truth (key ``planted``).
    isoflop_png, allocation_png : path-like, optional
        The IsoFLOP-profile figure and the N*(C), D*(C) figure.
    """
    table = pd.read_csv(table_tsv, sep="\t")
    parcels = pd.read_csv(parcels_tsv, sep="\t")
    if table.empty or parcels.empty:
        raise ValueError(f"{table_tsv} or {parcels_tsv} has no rows; nothing to analyse")
    runs = _runs(table)
    parcels = parcels.join(runs.set_index("grid")[RUN_KEYS], on="grid")
    out_dir = Path(out_dir)
    print(f"analyse: fitting scaling laws ({n_boot} bootstrap draws)", file=sys.stderr)
    fits = scaling_fits(parcels, n_boot=n_boot, seed=seed, runs=runs)
    frontier = frontier_table(table, parcels, n_boot=min(n_boot, 200), seed=seed)
    print("analyse: compute-optimal allocation", file=sys.stderr)
    # pooled over the study's ROIs: every parcel once, also where ROIs overlap
    once = unique_parcels(parcels)
    allocation = allocation_table(runs, once, n_boot=n_boot, seed=seed,
                                  n_refit=min(n_boot, 100))
    isoflop = isoflop_curves(runs, once, n_boot=n_boot, seed=seed)
    comparisons = compare_factors(once[once["family"] == "videogpt"], seed=seed)
    curves = fit_curves(parcels, n_boot=n_boot, seed=seed)
    for name, df in (("scaling_fits", fits), ("fit_curves", curves), ("frontier", frontier),
                     ("isoflop", isoflop), ("allocation", allocation),
                     ("comparisons", comparisons)):
        write_table(df, out_dir / f"{name}.tsv")
    from cortexscale.scaling.summary import summary_markdown

    text = summary_markdown(
        table, fits, frontier, allocation, comparisons, study,
        pretrained=_read_optional(pretrained_tsv),
        pretrained_sample_size=_read_optional(pretrained_sample_size_tsv),
        pretrained_fits=_read_optional(pretrained_fits_tsv),
        planted=read_planted(reference_summaries),
    )
    with atomic_path(summary_md) as tmp:
        tmp.write_text(text)
    from cortexscale.report.figures import plot_allocation, plot_fits, plot_frontier, plot_isoflop

    if frontier_png is not None:
        plot_frontier(frontier, frontier_png)
        plot_fits(curves, Path(frontier_png).with_name("scaling_fits.png"))
    refs = table[table["family"].isin(["latents", "random"])]
    ref_lines = refs.groupby("family")["mean_r"].mean().to_dict()
    ceiling = float(table["ceiling_r"].mean()) if "ceiling_r" in table else None
    if isoflop_png is not None:
        if isoflop.empty:
            raise ValueError(f"{isoflop_png}: the study has no IsoFLOP budgets (grid.mode "
                             "isoflop or a planted reference) to draw")
        plot_isoflop(isoflop, allocation, isoflop_png, ceiling=ceiling, references=ref_lines)
    if allocation_png is not None:
        plot_allocation(allocation, allocation_png)
