"""Tests of the tidy table and the scaling figures."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cortexscale.grid import expand
from cortexscale.scaling.table import TABLE_COLUMNS, aggregate, collect

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
                                    "final_val_loss": 3.0 - p.data_size / 1e4}))
        sums[p.name] = path
        for s in SUBJECTS:
            for roi in ROIS:
                enc = tmp_path / "encoding" / p.name / s / f"{roi}.json"
                enc.parent.mkdir(parents=True, exist_ok=True)
                r = float(rng.uniform(0, 0.5))
                enc.write_text(json.dumps({
                    "grid": p.name, "subject": s, "roi": roi, "layer": 1, "mean_r": r,
                    "median_r": r, "max_r": r + 0.1, "n_parcels": 16, "n_excluded": 0}))
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
    for name in ("scaling_data_size", "scaling_params"):
        for ext in ("png", "svg"):
            assert (figs / f"{name}.{ext}").stat().st_size > 1000
    assert not list(figs.glob(".*"))
    # explicit figure paths, as the CLI passes them
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    aggregate(encs, sums, out, paths)
    assert all(p.exists() for p in paths)
