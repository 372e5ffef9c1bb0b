"""Tests of the tidy table and the scaling figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cortexscale.grid import expand
from cortexscale.scaling.table import PARCEL_COLUMNS, TABLE_COLUMNS, aggregate, collect

GRID = {"data_sizes": [2048, 8192], "base": {"hidden": 64, "layers": 2, "heads": 2},
        "vary": {"hidden": [32]}, "mode": "one_at_a_time", "precision": ["fp32", "bf16"]}
SUBJECTS, ROIS = ["sub-02", "sub-01"], ["scene", "early"]


def _write_study(tmp_path, rng):
    points = expand(GRID)
    encs, sums = [], {}
    for p in points:
        path = tmp_path / "pretrain" / p.name / "summary.json"
        path.parent.mkdir(parents=True)
        n_params = p.hidden * 1000
        path.write_text(json.dumps({**p.as_dict(), "n_params": n_params,
                                    "train_flops": 6 * n_params * p.data_size,
                                    "tokens_seen": 64 * 100, "wall_time_s": 1.0 + p.hidden,
                                    "final_val_loss": 3.0 - p.data_size / 1e4}))
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
                r = float(rng.uniform(0, 0.5))
                enc.write_text(json.dumps({
                    "grid": p.name, "subject": s, "roi": roi, "layer": 1, "mean_r": r,
                    "median_r": r, "max_r": r + 0.1, "n_parcels": 16, "n_excluded": 0,
                    "mean_normalised": 100 * r**2, "n_significant": 3}))
                pd.DataFrame({"parcel": np.arange(16), "roi": roi,
                              "r": rng.uniform(-0.1, 0.6, 16), "alpha": 10.0, "n_train": 100,
                              "n_test": 50}).to_csv(enc.with_suffix(".tsv"), sep="\t",
                                                    index=False)
                encs.append(enc)
    return points, encs, sums


def test_collect_columns_rows_and_order(tmp_path, rng):
    points, encs, sums = _write_study(tmp_path, rng)
    table = collect(encs[::-1], sums)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert len(table) == len(points) * len(SUBJECTS) * len(ROIS) == 32
    assert set(table["grid"]) == {p.name for p in points}
    keys = ["data_size", "hidden", "layers", "heads", "precision", "subject", "roi"]
    assert table.equals(table.sort_values(keys, kind="stable").reset_index(drop=True))
    row = table[(table["grid"] == "d8192_h32_l2_a2_bf16")].iloc[0]
    assert (row["hidden"], row["n_params"], row["train_flops"]) == (32, 32000, 6 * 32000 * 8192)
    # the same input in any order gives the same table
    assert table.equals(collect(encs, list(sums.values())))


def test_collect_missing_summary(tmp_path, rng):
    _, encs, sums = _write_study(tmp_path, rng)
    sums.pop("d2048_h64_l2_a2_fp32")
    with pytest.raises(KeyError, match="d2048_h64_l2_a2_fp32.*no pretraining summary"):
        collect(encs, sums)


def test_aggregate_writes_table_and_figures(tmp_path, rng):
    points, encs, sums = _write_study(tmp_path, rng)
    out = tmp_path / "results" / "tables" / "encoding.tsv"
    figs = tmp_path / "results" / "figures"
    aggregate(encs, sums, out, figs)
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == list(TABLE_COLUMNS) and len(table) == 32
    parcels = pd.read_csv(out.with_name("parcels.tsv"), sep="\t")
    assert len(parcels) == 32 * 16 and list(parcels.columns) == list(PARCEL_COLUMNS)
    assert pd.read_parquet(out.with_suffix(".parquet")).equals(table)
    for name in ("scaling_data_size", "scaling_params", "loss_curves", "precision", "factors"):
        for ext in ("png", "svg"):
            assert (figs / f"{name}.{ext}").stat().st_size > 1000
    assert not list(figs.glob(".*"))
    # explicit figure paths, as the CLI passes them
    paths = [tmp_path / f"{name}.png" for name in "abcde"]
    aggregate(encs, sums, out, paths)
    assert all(p.exists() for p in paths)


def test_analyse_writes_fits_frontier_comparisons_and_summary(tmp_path, rng):
    from cortexscale.scaling.analyse import analyse

    _, encs, sums = _write_study(tmp_path, rng)
    out = tmp_path / "tables" / "encoding.tsv"
    aggregate(encs, sums, out, tmp_path / "figures")
    analyse(out, out.with_name("parcels.tsv"), out.parent, tmp_path / "summary.md",
            tmp_path / "frontier.png", n_boot=20)
    fits = pd.read_csv(out.with_name("scaling_fits.tsv"), sep="\t")
    # data size varies for every model and precision; parameters for every size and precision
    assert set(fits["axis"]) == {"data_size", "n_params", "train_flops"}
    pooled = fits[(fits["subject"] == "all") & (fits["roi"] == "all")]
    assert set(pooled["law"]) == {"loglinear", "saturating"}
    frontier = pd.read_csv(out.with_name("frontier.tsv"), sep="\t")
    assert frontier["on_front"].any() and set(frontier["roi"]) == {"scene", "early", "all"}
    comparisons = pd.read_csv(out.with_name("comparisons.tsv"), sep="\t")
    assert set(comparisons["factor"]) == {"hidden", "precision"}
    summary = (tmp_path / "summary.md").read_text()
    assert "tenfold increase" in summary and "hidden 64 vs 32" in summary
    assert (tmp_path / "frontier.png").stat().st_size > 1000
    assert (tmp_path / "scaling_fits.png").stat().st_size > 1000
    curves = pd.read_csv(out.with_name("fit_curves.tsv"), sep="\t")
    assert (curves["lo"] <= curves["pred"] + 1e-12).all()
    assert (curves["pred"] <= curves["hi"] + 1e-12).all()
