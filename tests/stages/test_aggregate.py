"""Tests of the tidy table and the scaling figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cortexscale.errors import InputError
from cortexscale.grid import expand
from cortexscale.labels import POOLED
from cortexscale.policy import ANALYSIS_TABLES, SCALING_FIGURES
from cortexscale.scaling.table import PARCEL_COLUMNS, TABLE_COLUMNS
from cortexscale.stages.aggregate import aggregate, collect, collect_parcels

GRID = {"data_sizes": [2048, 8192], "base": {"hidden": 64, "layers": 2, "heads": 2},
        "vary": {"hidden": [32]}, "mode": "one_at_a_time", "precision": ["fp32", "bf16"]}
ISOFLOP = {"mode": "isoflop", "budgets": [1e11, 1e12, 1e13],
           "models": [{"hidden": h, "layers": 2, "heads": 2} for h in (16, 32, 64, 128, 256)],
           "precision": ["fp32"], "seeds": [0, 1]}
SUBJECTS, ROIS = ["sub-02", "sub-01"], ["scene", "early"]


def _write_study(tmp_path, rng, grid=GRID, n_parcels=16):
    """Summaries, logs, sidecars and per-parcel tables of a made-up study. For an IsoFLOP
    grid the score peaks (and the loss dips) at N* = 3e-3 C^0.6 parameters."""
    points = expand(grid)
    encs, sums = [], {}
    for p in points:
        path = tmp_path / "pretrain" / p.name / "summary.json"
        path.parent.mkdir(parents=True)
        n_params = p.hidden**2 * 12
        if p.budget:
            tokens = p.budget / (6 * n_params)
            dx = np.log10(n_params / (3e-3 * p.budget**0.6))
            quality = -0.1 * dx**2 + rng.normal(0, 0.002)
        else:
            tokens, quality = 64 * 100, p.data_size / 1e5
        path.write_text(json.dumps({**p.as_dict(), "n_params": n_params,
                                    "train_flops": p.budget or 6 * n_params * p.data_size,
                                    "tokens_seen": tokens, "wall_time_s": 1.0 + p.hidden,
                                    "final_val_loss": 3.0 - quality}))
        steps = np.arange(1, 11)
        pd.DataFrame({"step": steps, "tokens_seen": 64 * steps, "train_loss": 5.0 / steps,
                      "val_loss": np.where(steps % 5 == 0, 4.0 / steps, np.nan), "lr": 1e-3,
                      "tokens_per_s": 100.0, "peak_mem_mb": 10.0}).to_csv(
            path.with_name("log.tsv"), sep="\t", index=False)
        sums[p.name] = path
        for s in SUBJECTS:
            for roi in ROIS:
                enc = tmp_path / "encoding" / p.name / s / f"{roi}.json"
                enc.parent.mkdir(parents=True, exist_ok=True)
                r_parcels = (0.3 + quality if p.budget else rng.uniform(-0.1, 0.6, n_parcels)
                             ) + rng.normal(0, 0.02, n_parcels)
                r = float(r_parcels.mean())
                nc = np.full(n_parcels, 64.0)  # % of variance: the ceiling of r is 0.8
                enc.write_text(json.dumps({
                    "grid": p.name, "subject": s, "roi": roi, "layer": 1, "mean_r": r,
                    "median_r": r, "max_r": r + 0.1, "n_parcels": n_parcels, "n_excluded": 0,
                    "mean_normalised": 100 * r**2 / 0.64, "mean_noise_ceiling": 64.0,
                    "n_significant": 3}))
                pd.DataFrame({"parcel": np.arange(n_parcels), "roi": roi, "r": r_parcels,
                              "alpha": 10.0, "n_train": 100, "n_test": 50, "noise_ceiling": nc,
                              "score_normalised": 100 * np.maximum(r_parcels, 0) ** 2 / 0.64,
                              }).to_csv(enc.with_suffix(".tsv"), sep="\t", index=False)
                encs.append(enc)
    return points, encs, sums


def test_collect_columns_rows_and_order(tmp_path, rng):
    points, encs, sums = _write_study(tmp_path, rng)
    table = collect(encs[::-1], sums)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert len(table) == len(points) * len(SUBJECTS) * len(ROIS) == 32
    assert set(table["grid"]) == {p.name for p in points}
    keys = ["family", "budget", "data_size", "hidden", "layers", "heads", "precision",
            "tokens", "seed", "subject", "roi"]
    assert table.equals(table.sort_values(keys, kind="stable").reset_index(drop=True))
    assert (table["family"] == "videogpt").all() and (table["seed"] == 0).all()
    assert np.allclose(table["ceiling_r"], 0.8) and np.allclose(table["mean_noise_ceiling"], 64)
    row = table[(table["grid"] == "d8192_h32_l2_a2_bf16_s0")].iloc[0]
    n = 32**2 * 12
    assert (row["hidden"], row["n_params"], row["train_flops"]) == (32, n, 6 * n * 8192)
    # the same input in any order gives the same table
    assert table.equals(collect(encs, list(sums.values())))


def test_collect_missing_summary(tmp_path, rng):
    _, encs, sums = _write_study(tmp_path, rng)
    sums.pop("d2048_h64_l2_a2_fp32_s0")
    with pytest.raises(InputError, match="d2048_h64_l2_a2_fp32_s0.*no pretraining summary"):
        collect(encs, sums)


def test_aggregate_writes_table_and_figures(tmp_path, rng, saved):
    points, encs, sums = _write_study(tmp_path, rng)
    out = tmp_path / "results" / "tables" / "encoding.tsv"
    figs = tmp_path / "results" / "figures"
    aggregate(encs, sums, out, figs)
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == list(TABLE_COLUMNS) and len(table) == 32
    parcels = pd.read_csv(out.with_name("parcels.tsv"), sep="\t")
    assert len(parcels) == 32 * 16 and list(parcels.columns) == list(PARCEL_COLUMNS)
    assert {"seed", "budget", "family", "noise_ceiling", "score_normalised"} <= set(parcels)
    assert pd.read_parquet(out.with_suffix(".parquet")).equals(table)
    # the five figures, each a valid PNG and SVG (their content: tests/report/test_figures.py)
    assert {p.name for p in saved.figures} == set(SCALING_FIGURES)
    for name in SCALING_FIGURES:
        fig = saved[figs / name]
        assert fig.axes and all(ax.has_data() for ax in fig.axes if ax.get_visible())
    # the loss curves show every grid point's training log: one panel per data size
    loss = saved[figs / "loss_curves.png"]
    assert len(loss.axes) == len({p.data_size for p in points})
    assert not list(figs.glob(".*"))
    # explicit figure paths, as the CLI passes them
    paths = [tmp_path / f"{name}.png" for name in "abcde"]
    aggregate(encs, sums, out, paths)
    assert all(p.exists() for p in paths)


def test_aggregate_reads_each_per_parcel_table_once(tmp_path, rng, monkeypatch):
    _, encs, sums = _write_study(tmp_path, rng)
    out = tmp_path / "tables" / "encoding.tsv"
    reads: list[Path] = []
    read_csv = pd.read_csv

    def counted(path, *args, **kwargs):
        reads.append(Path(path))
        return read_csv(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", counted)
    aggregate(encs, sums, out, tmp_path / "figures")
    parcel_reads = [p for p in reads if p.parent.parent.parent.name == "encoding"]
    assert sorted(parcel_reads) == sorted(e.with_suffix(".tsv") for e in encs)
    monkeypatch.setattr(pd, "read_csv", read_csv)
    # the public collectors give what aggregate wrote
    parcels = collect_parcels(encs)
    assert pd.read_parquet(out.with_name("parcels.parquet")).equals(parcels)
    assert pd.read_parquet(out.with_suffix(".parquet")).equals(collect(encs, sums))


def test_analyse_writes_fits_frontier_comparisons_and_summary(tmp_path, rng, saved):
    from cortexscale.stages.analysis import analyse

    _, encs, sums = _write_study(tmp_path, rng)
    out = tmp_path / "tables" / "encoding.tsv"
    aggregate(encs, sums, out, tmp_path / "figures")
    analyse(out, out.with_name("parcels.tsv"), out.parent, tmp_path / "summary.md",
            tmp_path / "frontier.png", n_boot=20)
    fits = pd.read_csv(out.with_name("scaling_fits.tsv"), sep="\t")
    # data size varies for every model and precision; parameters for every size and precision
    assert set(fits["axis"]) == {"data_size", "n_params", "train_flops"}
    pooled = fits[(fits["subject"] == POOLED) & (fits["roi"] == POOLED)]
    assert set(pooled["law"]) == {"loglinear", "saturating"}
    frontier = pd.read_csv(out.with_name("frontier.tsv"), sep="\t")
    assert frontier["on_front"].any() and set(frontier["roi"]) == {"scene", "early", POOLED}
    comparisons = pd.read_csv(out.with_name("comparisons.tsv"), sep="\t")
    assert set(comparisons["factor"]) == {"hidden", "precision"}
    summary = (tmp_path / "summary.md").read_text()
    assert "tenfold" not in summary and "hidden 64 vs 32 at fp32" in summary
    # two data sizes: no law along data size, said so; a single seed, said so
    assert "no law fitted: too few x values (2 distinct" in summary
    assert "single seed" in summary and "not an IsoFLOP design" in summary
    assert set(comparisons["n_pairs"]) <= {2, 4}  # run pairs, not parcels
    # the frontier figure: one panel per ROI of frontier.tsv (pooled included), with points
    front = saved[tmp_path / "frontier.png"]
    titles = {ax.get_title() for ax in front.axes if ax.has_data()}
    assert all(any(roi in t for t in titles) for roi in set(frontier["roi"]))
    # two data sizes and two models: no curve to draw, and the figure says why
    (ax,) = saved[tmp_path / "scaling_fits.png"].axes
    assert not ax.has_data()
    assert "no scaling law fitted" in " ".join(t.get_text() for t in ax.texts)
    curves = pd.read_csv(out.with_name("fit_curves.tsv"), sep="\t")
    assert (curves["lo"] <= curves["pred"] + 1e-12).all()
    assert (curves["pred"] <= curves["hi"] + 1e-12).all()


def test_analysis_tables_are_the_workflows():
    """The tables analyse writes (the Analysis fields, file stems) are policy's
    ANALYSIS_TABLES, the outputs the workflow declares, in that order."""
    from cortexscale.scaling.analyse import Analysis

    analysis = Analysis(**{name: pd.DataFrame() for name in ANALYSIS_TABLES})
    assert tuple(analysis.tables()) == ANALYSIS_TABLES


def test_isoflop_study_end_to_end(tmp_path, rng):
    from matplotlib import pyplot as plt

    from cortexscale.report import figures
    from cortexscale.stages.analysis import analyse

    _, encs, sums = _write_study(tmp_path, rng, ISOFLOP, n_parcels=8)
    out = tmp_path / "tables" / "encoding.tsv"
    aggregate(encs, sums, out, tmp_path / "figures")
    figs = {}
    real_save = figures.save_figure

    def keep(fig, path):
        figs[Path(path).name] = fig
        real_save(fig, path)

    figures.save_figure = keep
    try:
        analyse(out, out.with_name("parcels.tsv"), out.parent, tmp_path / "summary.md",
                tmp_path / "frontier.png", n_boot=50, isoflop_png=tmp_path / "isoflop.png",
                allocation_png=tmp_path / "allocation.png")
    finally:
        figures.save_figure = real_save
    alloc = pd.read_csv(out.with_name("allocation.tsv"), sep="\t")
    per = alloc[(alloc["method"] == "isoflop_parabola") & (alloc["target"] == "score")]
    assert len(per) == 3 and (per["status"] == "ok").all()
    assert (per["ci_unit"] == "seeds and parcels").all() and (per["n_seeds"] == 2).all()
    summary = (tmp_path / "summary.md").read_text()
    assert "for C = 1e+13 FLOPs, the best model has N = " in summary
    assert "2 seeds (replicate runs)" in summary
    # the IsoFLOP figure: one row per target, a line per budget, the noise ceiling drawn
    ax_score, ax_loss = figs["isoflop.png"].axes[:2]
    assert ax_score.get_xlabel() == "parameters N" and ax_score.get_xscale() == "log"
    assert ax_score.get_ylabel() == "mean test r (all parcels)"
    assert ax_loss.get_ylabel() == "validation loss"
    labels = [line.get_label() for line in ax_score.get_lines()]
    assert "noise ceiling of r" in labels
    ceiling = [ln for ln in ax_score.get_lines() if ln.get_label() == "noise ceiling of r"][0]
    assert np.allclose(ceiling.get_ydata(), 0.8)
    assert len([t for t in ax_score.get_legend().get_texts() if t.get_text().startswith("C = ")]
               ) == 3
    n_left, d_right = figs["allocation.png"].axes
    assert n_left.get_xscale() == d_right.get_yscale() == "log"
    assert n_left.get_ylabel() == "N* (parameters)" and d_right.get_ylabel().startswith("D*")
    frontier = pd.read_csv(out.with_name("frontier.tsv"), sep="\t")
    assert {"score_normalised", "score_lo", "score_hi", "n_seeds"} <= set(frontier)
    plt.close("all")
