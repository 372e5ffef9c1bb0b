"""Scaling figures of the study's tidy table (matplotlib Agg + seaborn)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from cortexscale.io.atomic import atomic_path  # noqa: E402

__all__ = [
    "plot_allocation", "plot_factors", "plot_fits", "plot_frontier", "plot_isoflop",
    "plot_loss_curves", "plot_params", "plot_precision", "plot_pretrained", "plot_scaling",
    "save_figure",
]

CEILING_LABEL = "noise ceiling of r"

_NEEDED = ("data_size", "hidden", "layers", "heads", "precision", "roi", "mean_r", "n_params")


def _require(df: pd.DataFrame, needed, what: str) -> None:
    """Raise ValueError naming ``what``, the columns it lacks, what was expected and found."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; expected at least "
                         f"{list(needed)}, found {list(df.columns)}")


def _check(table: pd.DataFrame) -> pd.DataFrame:
    _require(table, _NEEDED, "table")
    if table.empty:
        raise ValueError("table is empty; nothing to plot")
    out = table.copy()
    out["model"] = [f"h{h} l{n} a{a}" for h, n, a in
                    zip(out["hidden"], out["layers"], out["heads"], strict=True)]
    return out


def _point_interval(ax: plt.Axes, x, y, lo, hi, along: str, **marker) -> None:
    """Points (x, y) with their intervals [lo, hi] along ``along`` ("x" or "y") as lines.

    Not ``errorbar``: a bootstrap percentile interval need not contain its point estimate
    (errorbar's offsets would be negative); the interval is drawn as it is.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    color = marker.get("color")
    if along == "y":
        ax.vlines(x, lo, hi, color=color, lw=1)
    else:
        ax.hlines(y, lo, hi, color=color, lw=1)
    ax.plot(x, y, ls="none", **marker)


def save_figure(fig: plt.Figure, out_png: str | os.PathLike) -> None:
    """Save ``fig`` as PNG at ``out_png`` and as SVG beside it, atomically; close it."""
    out_png = Path(out_png)
    try:
        for path, fmt in ((out_png, "png"), (out_png.with_suffix(".svg"), "svg")):
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)


def _ceiling_by_roi(table: pd.DataFrame) -> dict[str, float]:
    """ROI -> mean ceiling of r (``ceiling_r``, over subjects); only finite ones."""
    if "ceiling_r" not in table.columns:
        return {}
    c = table.groupby("roi")["ceiling_r"].mean()
    return {str(k): float(v) for k, v in c.items() if np.isfinite(v)}


def _reference_lines(ax, ceiling: float | None, references: dict[str, float] | None) -> None:
    """The noise ceiling of r (solid grey; skipped when None or not finite) and the
    latents/random reference scores (dashed, dotted; those in ``references``) as horizontal
    lines."""
    if ceiling is not None and np.isfinite(ceiling):
        ax.axhline(ceiling, color="0.4", lw=1.2, label=CEILING_LABEL)
    for name, ls in (("latents", "--"), ("random", ":")):
        if references and name in references:
            ax.axhline(references[name], color="0.2", lw=1, ls=ls, label=f"{name} (reference)")


def _roi_references(references: pd.DataFrame | None, roi: str) -> dict[str, float]:
    """Family -> mean r of the reference rows of one ROI."""
    if references is None or references.empty:
        return {}
    part = references[references["roi"] == roi]
    return part.groupby("family")["mean_r"].mean().to_dict()


def _facets(
    data: pd.DataFrame, x: str, hue: str, xlabel: str, hue_order: list | None = None,
    references: pd.DataFrame | None = None,
) -> sns.FacetGrid:
    n_roi = data["roi"].nunique()
    g = sns.relplot(
        data=data, x=x, y="mean_r", hue=hue, hue_order=hue_order, style="precision", col="roi",
        col_wrap=min(n_roi, 4), kind="line", markers=True, dashes=True,
        errorbar="se", height=3.0, aspect=1.1, facet_kws={"sharey": False},
    )
    g.set(xscale="log")
    for ax in g.axes.flat:
        ax.xaxis.set_minor_formatter(NullFormatter())
        if x == "data_size":  # few values: label each one in plain numbers
            ax.set_xticks(sorted(data[x].unique()))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ceiling = _ceiling_by_roi(data)
    for roi, ax in g.axes_dict.items():
        _reference_lines(ax, ceiling.get(str(roi)), _roi_references(references, str(roi)))
    g.set_axis_labels(xlabel, "mean test r (over parcels)")
    g.set_titles(col_template="{col_name}")
    return g


def plot_scaling(table: pd.DataFrame, out_png: str | os.PathLike,
                 references: pd.DataFrame | None = None) -> None:
    """Mean r against pretraining data size (log x; for an IsoFLOP design, whose runs all
    draw on the whole pool, against the training tokens seen): one line per model
    configuration (hidden/layers/heads) and precision, one panel per ROI; mean +- s.e. over
    subjects and seeds; the noise ceiling of r and the latents/random references as
    horizontal lines.

    Writes ``out_png`` and the SVG beside it.
    """
    data = _check(table)
    if (data["data_size"] > 0).all():
        g = _facets(data, "data_size", "model", "pretraining data size (frames)",
                    references=references)
    else:
        g = _facets(data, "tokens_seen", "model", "training tokens seen", references=references)
    save_figure(g.figure, out_png)


def plot_params(table: pd.DataFrame, out_png: str | os.PathLike,
                references: pd.DataFrame | None = None) -> None:
    """Mean r against parameter count (log x): one line per data size (IsoFLOP: per
    budget) and precision, one panel per ROI; mean +- s.e. over subjects and seeds; the
    noise ceiling of r and the latents/random references as horizontal lines.

    Writes ``out_png`` and the SVG beside it.
    """
    data = _check(table)
    col, name = (("budget", "budget (FLOPs)")
                 if "budget" in data.columns and (data["budget"] > 0).any()
                 else ("data_size", "data size"))
    order = [f"{d:g}" for d in sorted(data[col].unique())]
    data[name] = [f"{v:g}" for v in data[col]]
    g = _facets(data.sort_values("n_params", kind="stable"), "n_params", name,
                "parameters", hue_order=order, references=references)
    save_figure(g.figure, out_png)


def plot_frontier(frontier: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Score against training FLOPs for every grid point, one panel per ROI (and ``all``),
    the Pareto frontier drawn as a line; marker colour by data size, style by precision.

    Writes ``out_png`` and the SVG beside it.
    """
    _require(frontier, ("roi", "train_flops", "score", "on_front", "data_size", "precision"),
             "frontier table")
    frontier = frontier[frontier["train_flops"] > 0]  # reference rows have no compute
    data = frontier.assign(**{"data size": frontier["data_size"].astype(str)})
    rois = list(dict.fromkeys(data["roi"]))
    g = sns.relplot(
        data=data, x="train_flops", y="score", hue="data size", style="precision", col="roi",
        col_order=rois, col_wrap=min(len(rois), 5), height=3.0, aspect=1.1,
        facet_kws={"sharey": False},
    )
    g.set(xscale="log")
    for roi, ax in zip(rois, g.axes.flat, strict=False):
        front = data[(data["roi"] == roi) & data["on_front"]].sort_values("train_flops")
        ax.plot(front["train_flops"], front["score"], color="black", lw=1, zorder=0,
                label="frontier")
        ceil = data.loc[data["roi"] == roi, "ceiling_r"] if "ceiling_r" in data else None
        if ceil is not None and np.isfinite(ceil).any():
            ax.axhline(float(np.nanmean(ceil)), color="0.4", lw=1.2, label=CEILING_LABEL)
    g.set_axis_labels("training compute (FLOPs)", "mean test r (over parcels, subjects)")
    g.set_titles(col_template="{col_name}")
    save_figure(g.figure, out_png)


def plot_loss_curves(logs: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Training and validation loss against tokens seen for every grid point: one panel
    per data size, one line per model configuration, style by precision.

    Writes ``out_png`` and the SVG beside it.
    """
    _require(logs, ("tokens_seen", "train_loss", "val_loss", "data_size", "precision"),
             "training log table")
    data = _check(logs.assign(roi="", mean_r=0.0, n_params=0))
    isoflop = "budget" in data.columns and (data["budget"] > 0).any()
    col = "budget" if isoflop else "data_size"
    sizes = sorted(data[col].unique())
    g = sns.relplot(
        data=data, x="tokens_seen", y="train_loss", hue="model", style="precision",
        col=col, col_order=sizes, kind="line", height=3.0, aspect=1.2, alpha=0.6,
        facet_kws={"sharey": True}, errorbar=None,
    )
    # the dots take the lines' colours in every panel, also one that lacks a model
    models = list(g.hue_names or sorted(data["model"].unique()))
    for size, ax in zip(sizes, g.axes.flat, strict=False):
        val = data[(data[col] == size)].dropna(subset=["val_loss"])
        sns.scatterplot(data=val, x="tokens_seen", y="val_loss", hue="model", style="precision",
                        hue_order=models,
                        ax=ax, legend=False, s=18)
        ax.set_title(f"budget {size:.3g} FLOPs" if isoflop else f"data size {size} frames")
    g.set_axis_labels("tokens seen", "loss (lines: train, dots: validation)")
    save_figure(g.figure, out_png)


def plot_precision(table: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Precision against accuracy and training time: mean r (left) and pretraining wall time
    (right) per model configuration, bars by precision, averaged over data sizes,
    subjects and ROIs.

    Writes ``out_png`` and the SVG beside it.
    """
    data = _check(table)
    if "wall_time_s" not in data.columns:
        raise ValueError("table lacks column 'wall_time_s'")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    sns.barplot(data=data, x="model", y="mean_r", hue="precision", errorbar="se", ax=axes[0])
    axes[0].set(xlabel="model", ylabel="mean test r")
    times = data.drop_duplicates("grid")
    sns.barplot(data=times, x="model", y="wall_time_s", hue="precision", errorbar="se",
                ax=axes[1])
    axes[1].set(xlabel="model", ylabel="pretraining wall time (s)")
    fig.tight_layout()
    save_figure(fig, out_png)


def plot_fits(curves: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Log-linear scaling fits with their 95% bootstrap bands: mean r against data size
    (top row) and parameters (bottom row), one panel per ROI, one colour per series; dots
    are the observed means.

    Writes ``out_png`` and the SVG beside it.
    """
    needed = ("axis", "roi", "x", "pred", "lo", "hi", "observed")
    if curves.empty:  # the rule's output exists all the same, and says why it is empty
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, "no series with >= 3 distinct values of data size or parameters:\n"
                "no scaling law fitted", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        save_figure(fig, out_png)
        return
    _require(curves, needed, "fit-curves table")
    axes_names = [a for a in ("data_size", "n_params") if a in set(curves["axis"])]
    rois = list(dict.fromkeys(curves["roi"]))
    fig, axes = plt.subplots(len(axes_names), len(rois), figsize=(3.2 * len(rois),
                             2.8 * len(axes_names)), squeeze=False)
    series_cols = {"data_size": ["hidden", "layers", "heads", "precision"],
                   "n_params": ["data_size", "precision"]}
    for i, axis in enumerate(axes_names):
        part = curves[curves["axis"] == axis]
        cols = [c for c in series_cols[axis] if c in part.columns]
        for j, roi in enumerate(rois):
            ax = axes[i, j]
            for k, (key, ser) in enumerate(part[part["roi"] == roi].groupby(cols, sort=True)):
                colour = f"C{k % 10}"
                label = " ".join(
                    f"{v:g}" if isinstance(v, float) else str(v)
                    for v in (key if isinstance(key, tuple) else (key,))
                )
                ax.plot(ser["x"], ser["pred"], color=colour, lw=1, label=label)
                ax.fill_between(ser["x"], ser["lo"], ser["hi"], color=colour, alpha=0.15, lw=0)
                obs = ser.dropna(subset=["observed"])
                ax.plot(obs["x"], obs["observed"], "o", color=colour, ms=3)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_title(roi)
            ax.set_xlabel("data size (frames)" if axis == "data_size" else "parameters")
            if j == 0:
                ax.set_ylabel("mean test r")
        axes[i, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    save_figure(fig, out_png)


def plot_factors(table: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Mean r against each model factor (hidden size, layers, heads) per subject, one panel
    per factor and a row per data size: the paper's per-factor figures. For a factor, the
    points are those whose other two factors sit at their most common value (the base
    config of a one-at-a-time grid); ROIs and precisions are averaged.

    Writes ``out_png`` and the SVG beside it.
    """
    data = _check(table)
    factors = [f for f in ("hidden", "layers", "heads") if data[f].nunique() > 1]
    if not factors:
        factors = ["hidden"]
    sizes = sorted(data["data_size"].unique())
    fig, axes = plt.subplots(len(sizes), len(factors), figsize=(3.4 * len(factors),
                             2.6 * len(sizes)), squeeze=False)
    for i, size in enumerate(sizes):
        at_size = data[data["data_size"] == size]
        for j, factor in enumerate(factors):
            others = [f for f in ("hidden", "layers", "heads") if f != factor]
            keep = np.ones(len(at_size), dtype=bool)
            for f in others:
                keep &= (at_size[f] == at_size[f].mode().iloc[0]).to_numpy()
            part = at_size[keep].groupby([factor, "subject"], as_index=False)["mean_r"].mean()
            ax = axes[i, j]
            dodge = 0.2 if part["subject"].nunique() > 1 else False
            sns.pointplot(data=part, x=factor, y="mean_r", hue="subject", ax=ax,
                          dodge=dodge, markersize=4, linewidth=1)
            ax.set(title=f"{factor}, data size {size}", xlabel=factor, ylabel="mean test r")
            if (i, j) != (0, len(factors) - 1) and ax.get_legend() is not None:
                ax.get_legend().remove()
    fig.tight_layout()
    save_figure(fig, out_png)


def _mean_se(df: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean and standard error of ``mean_r`` over subjects per ``x`` (sorted by x)."""
    g = df.groupby(x)["mean_r"]
    out = pd.DataFrame({"mean": g.mean(), "se": g.sem().fillna(0.0)}).reset_index()
    return out.sort_values(x)


def plot_pretrained(table: pd.DataFrame, curves: pd.DataFrame,
                    out_png: str | os.PathLike) -> None:
    """The pretrained-model sweep: one column per ROI; top, mean r against parameters (log x,
    one point per model, ensembles as dashed lines); bottom, mean r against fMRI training
    samples (log x, one line per model); mean +- s.e. over subjects.

    Parameters
    ----------
    table : DataFrame
        ``tables/pretrained.tsv`` (columns ``model, kind, n_params, subject, roi, mean_r``).
    curves : DataFrame
        ``tables/pretrained_sample_size.tsv`` (``model, subject, roi, n_train, mean_r``);
        may be empty (no sample-size study), which leaves the bottom panels empty.
    out_png : path
        Writes the PNG and the SVG beside it.
    """
    _require(table, ("model", "kind", "n_params", "subject", "roi", "mean_r"),
             f"{out_png}: the pretrained table")
    table = table.dropna(subset=["mean_r"])
    if table.empty:
        raise ValueError(f"{out_png}: the pretrained table has no scored rows (every mean_r "
                         "is NaN); nothing to plot")
    rois = sorted(table["roi"].unique())
    models = sorted(table.loc[table["kind"] == "model", "model"].unique())
    colours = dict(zip(models, sns.color_palette("colorblind", max(len(models), 1)),
                       strict=False))
    fig, axes = plt.subplots(2, len(rois), figsize=(3.6 * len(rois), 6.4), squeeze=False)
    for j, roi in enumerate(rois):
        top, bottom = axes[0, j], axes[1, j]
        at = table[table["roi"] == roi]
        for model in models:
            m = _mean_se(at[at["model"] == model], "n_params")
            top.errorbar(m["n_params"], m["mean"], yerr=m["se"], fmt="o", capsize=3,
                         color=colours[model], label=model)
        for k, (name, e) in enumerate(at[at["kind"] == "ensemble"].groupby("model")):
            top.axhline(e["mean_r"].mean(), ls="--", lw=1, color=f"C{k % 10}", label=name)
        top.set_xscale("log")
        top.set(title=roi, xlabel="parameters", ylabel="mean r" if j == 0 else None)
        ac = curves[curves["roi"] == roi] if not curves.empty else curves
        for model in models:
            c = _mean_se(ac[ac["model"] == model], "n_train") if not ac.empty else ac
            if len(c):
                bottom.errorbar(c["n_train"], c["mean"], yerr=c["se"], marker="o", capsize=3,
                                color=colours[model], label=model)
        bottom.set_xscale("log")
        bottom.set(xlabel="fMRI training samples", ylabel="mean r" if j == 0 else None)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, out_png)


TARGET_LABELS = {"score": "mean test r (all parcels)", "val_loss": "validation loss"}


def plot_isoflop(curves: pd.DataFrame, allocation: pd.DataFrame, out_png: str | os.PathLike,
                 ceiling: float | None = None, references: dict[str, float] | None = None
                 ) -> None:
    """IsoFLOP profiles: the target against parameters (log x) at each training-FLOP budget,
    one row per target (brain score, validation loss) and one column per family (VideoGPT,
    planted reference) and precision; dots are means over seeds (and parcels) with their
    bootstrap interval, the line the parabola in log10 N fitted to them, and a star marks
    the interior optimum N* with its interval (none where the optimum is at the edge). The
    score rows carry the noise ceiling of r and the latents/random reference scores.

    Parameters
    ----------
    curves : DataFrame
        ``tables/isoflop.tsv``: ``family, precision, target, budget, n_params, mean, lo, hi``.
    allocation : DataFrame
        ``tables/allocation.tsv`` (its ``isoflop_parabola`` rows).
    ceiling : float, optional
        Mean ceiling of r over the study's ROIs.
    references : dict, optional
        Reference name (``latents``, ``random``) -> mean r.
    out_png : path
        Writes the PNG and the SVG beside it.
    """
    _require(curves, ("family", "precision", "target", "budget", "n_params", "mean", "lo", "hi"),
             f"{out_png}: the IsoFLOP curves table")
    if curves.empty:
        raise ValueError(f"{out_png}: no IsoFLOP curves to plot (the study has no budgets)")
    panels = list(dict.fromkeys(zip(curves["family"], curves["precision"], strict=True)))
    targets = [t for t in ("score", "val_loss") if t in set(curves["target"])]
    fig, axes = plt.subplots(len(targets), len(panels), figsize=(4.2 * len(panels),
                             3.2 * len(targets)), squeeze=False)
    opt = allocation[(allocation["method"] == "isoflop_parabola")
                     & (allocation["status"] == "ok")]
    for j, (family, precision) in enumerate(panels):
        for i, target in enumerate(targets):
            ax = axes[i, j]
            part = curves[(curves["family"] == family) & (curves["precision"] == precision)
                          & (curves["target"] == target)]
            for k, (budget, c) in enumerate(part.groupby("budget", sort=True)):
                colour = f"C{k % 10}"
                c = c.sort_values("n_params")
                _point_interval(ax, c["n_params"], c["mean"], c["lo"], c["hi"], "y",
                                marker="o", color=colour, ms=4, label=f"C = {budget:.3g}")
                x = np.log10(c["n_params"].to_numpy(float))
                if np.unique(x).size >= 3 and np.isfinite(c["mean"]).all():
                    coef = np.polyfit(x, c["mean"].to_numpy(float), 2)
                    xs = np.linspace(x.min(), x.max(), 50)
                    ax.plot(10**xs, np.polyval(coef, xs), color=colour, lw=1)
                o = opt[(opt["family"] == family) & (opt["precision"] == precision)
                        & (opt["target"] == target) & (opt["budget"] == budget)]
                for r in o.itertuples():
                    _point_interval(ax, [r.n_opt], [r.target_opt], [r.n_opt_lo],
                                    [r.n_opt_hi], "x", marker="*", ms=12, color=colour,
                                    mec="black")
            if target == "score":
                _reference_lines(ax, ceiling, references)
            ax.set_xscale("log")
            ax.set(title=f"{family} ({precision})", xlabel="parameters N",
                   ylabel=TARGET_LABELS[target])
            ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    save_figure(fig, out_png)


def plot_allocation(allocation: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """N*(C) (left) and D*(C) (right) on log-log axes: the interior IsoFLOP optima of every
    family and target with their bootstrap intervals, and the fitted power law over the
    budgets it covers (dashed where its status is not ``ok``: no line).

    Parameters
    ----------
    allocation : DataFrame
        ``tables/allocation.tsv``.
    out_png : path
        Writes the PNG and the SVG beside it.
    """
    _require(allocation, ("family", "precision", "target", "method", "budget", "status",
                          "n_opt", "d_opt"), f"{out_png}: the allocation table")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), squeeze=False)
    per = allocation[(allocation["method"] == "isoflop_parabola")
                     & (allocation["status"] == "ok")]
    laws = allocation[(allocation["method"] == "isoflop_power_law")
                      & (allocation["status"] == "ok")]
    keys = list(dict.fromkeys(zip(allocation["family"], allocation["precision"],
                                  allocation["target"], strict=True)))
    for k, (family, precision, target) in enumerate(keys):
        colour, label = f"C{k % 10}", f"{family} {precision}, {target}"
        p = per[(per["family"] == family) & (per["precision"] == precision)
                & (per["target"] == target)].sort_values("budget")
        law = laws[(laws["family"] == family) & (laws["precision"] == precision)
                   & (laws["target"] == target)]
        for ax, q in zip(axes[0], ("n", "d"), strict=True):
            if len(p):
                _point_interval(ax, p["budget"], p[f"{q}_opt"], p[f"{q}_opt_lo"],
                                p[f"{q}_opt_hi"], "y", marker="o", color=colour, label=label)
            for r in law.itertuples():
                cs = np.geomspace(r.budget_min, r.budget_max, 20)
                exp, coef = getattr(r, f"exponent_{q}"), getattr(r, f"coef_{q}")
                lo, hi = getattr(r, f"exponent_{q}_lo"), getattr(r, f"exponent_{q}_hi")
                ax.plot(cs, coef * cs**exp, color=colour, lw=1,
                        label=f"{label}: exponent {exp:.2f} [{lo:.2f}, {hi:.2f}]")
    for ax, name in zip(axes[0], ("N* (parameters)", "D* (training tokens)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(xlabel="training compute C (FLOPs)", ylabel=name)
        if ax.has_data():
            ax.legend(fontsize=6, loc="best")
        else:
            ax.text(0.5, 0.5, "no budget with an interior optimum", ha="center",
                    va="center", transform=ax.transAxes)
    fig.tight_layout()
    save_figure(fig, out_png)
