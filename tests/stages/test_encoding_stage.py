"""Tests of the encoding stage on a tiny hand-built dataset."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from cortexscale.encoding.delays import make_delays
from cortexscale.logs import setup as setup_logging
from cortexscale.stages.encoding import TSV_COLUMNS, check_encoding_config, run_encoding

D, N_TR, DELAYS = 4, 80, [1, 2]
CFG = {
    "alphas": {"min": -2, "max": 4, "n": 7},
    "delays": DELAYS,
    "cv_folds": 5,  # capped at the 4 train runs
    "score": "pearson",
    "dtype": "float64",
    "chunk_size": 3,
}
# (run, stimulus, split); the test stimulus is shown twice
RUNS = [("r1", "s1", "train"), ("r2", "s2", "train"), ("r3", "s3", "train"),
        ("r4", "s4", "train"), ("r5", "t1", "test"), ("r6", "t1", "test")]
ROIS = ["early"] * 3 + ["scene"] * 3


def _make_study(root, rng, feature_trs=None, noise=0.3):
    """runs.tsv, parcels.tsv, sub-01.h5 and features.h5 with Y = delayed X @ W + noise."""
    feature_trs = feature_trs or {}
    root.mkdir(parents=True, exist_ok=True)
    n_parcels = len(ROIS)
    W = rng.standard_normal((D * len(DELAYS), n_parcels))
    stimuli = {s: rng.standard_normal((N_TR, D)).astype(np.float32) for _, s, _ in RUNS}
    with h5py.File(root / "features.h5", "w") as f:
        f.attrs["layers"] = np.array([0, 3])
        for s, x in stimuli.items():
            n = feature_trs.get(s, N_TR)
            f[f"{s}/layer3"] = x[:n]
            f[f"{s}/layer0"] = rng.standard_normal((n, D)).astype(np.float32)
    with h5py.File(root / "sub-01.h5", "w") as f:
        f.attrs["tr"] = 1.5
        f.attrs["subject"] = "sub-01"
        for run, s, _ in RUNS:
            y = make_delays(stimuli[s], DELAYS) @ W + noise * rng.standard_normal((N_TR, n_parcels))
            f[run] = y.astype(np.float32)
    pd.DataFrame(
        [("sub-01", run, s, N_TR, split) for run, s, split in RUNS],
        columns=["subject", "run", "stimulus", "n_tr", "split"],
    ).to_csv(root / "runs.tsv", sep="\t", index=False)
    pd.DataFrame({"parcel": range(n_parcels), "roi": ROIS,
                  "label": [f"p{i}" for i in range(n_parcels)]}).to_csv(
        root / "parcels.tsv", sep="\t", index=False)
    return root / "features.h5", root


def test_recovers_planted_weights(tmp_path, rng):
    feats, root = _make_study(tmp_path / "fmri", rng)
    out = tmp_path / "enc" / "d1_h2_l1_a1_fp32_s0" / "sub-01" / "scene.tsv"
    side = run_encoding(feats, root, "sub-01", "scene", out, CFG, grid="d1_h2_l1_a1_fp32_s0")
    table = pd.read_csv(out, sep="\t")
    assert list(table.columns) == list(TSV_COLUMNS)
    assert table["parcel"].tolist() == [3, 4, 5]
    assert (table["roi"] == "scene").all()
    assert (table["r"] > 0.9).all(), table
    assert (table["n_train"] == 4 * N_TR).all() and (table["n_test"] == N_TR).all()
    assert set(table["alpha"]) <= set(np.logspace(-2, 4, 7))
    on_disk = json.loads(out.with_suffix(".json").read_text())
    for key in ("grid", "subject", "roi", "layer", "mean_r", "median_r", "max_r",
                "n_parcels", "n_excluded", "config_hash", "cortexscale_version"):
        assert key in on_disk
    assert on_disk == json.loads(json.dumps(side))
    assert side["layer"] == 3 and side["n_parcels"] == 3 and side["n_excluded"] == 0
    assert side["n_folds"] == 4
    assert side["mean_r"] == pytest.approx(table["r"].mean())
    assert not list(out.parent.glob(".*.tmp"))
    # strong signal, two repeats: high ceiling, every parcel significant, normalised <= 100
    assert (table["noise_ceiling"] > 50).all() and (table["noise_ceiling"] <= 100).all()
    assert table["significant"].all() and (table["p"] < 0.01).all()
    assert ((table["score_normalised"] > 50) & (table["score_normalised"] <= 100)).all()
    assert side["n_significant"] == 3
    assert side["mean_normalised"] == pytest.approx(table["score_normalised"].mean())


def test_pure_noise_is_not_significant(tmp_path, rng):
    feats, root = _make_study(tmp_path / "fmri", rng, noise=100.0)
    out = tmp_path / "e.tsv"
    side = run_encoding(feats, root, "sub-01", "scene", out, {**CFG, "n_permutations": 200},
                        grid="g")
    assert side["n_significant"] == 0
    table = pd.read_csv(out, sep="\t")
    assert (table["noise_ceiling"] < 20).all()


def test_wrong_layer_gives_low_r(tmp_path, rng):
    feats, root = _make_study(tmp_path / "fmri", rng)
    side = run_encoding(feats, root, "sub-01", "early", tmp_path / "e.tsv", CFG, "g", layer=0)
    assert side["layer"] == 0 and side["mean_r"] < 0.5


def test_short_features_error_names_both_counts(tmp_path, rng):
    feats, root = _make_study(tmp_path / "fmri", rng, feature_trs={"s2": N_TR - 3})
    with pytest.raises(ValueError, match=rf"{N_TR - 3} TRs but run 'r2'.*has {N_TR} TRs") as e:
        run_encoding(feats, root, "sub-01", "early", tmp_path / "e.tsv", CFG, "g")
    assert str(feats) in str(e.value) and "sub-01.h5" in str(e.value)
    assert not (tmp_path / "e.tsv").exists()


def test_truncated_features_name_the_file(tmp_path, rng):
    feats, root = _make_study(tmp_path / "fmri", rng)
    data = feats.read_bytes()
    feats.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=rf"{feats.name} is not a readable HDF5 file.*"
                       r"expected a feature cache"):
        run_encoding(feats, root, "sub-01", "early", tmp_path / "e.tsv", CFG, "g")
    assert not (tmp_path / "e.tsv").exists()


def test_one_tr_short_is_trimmed_and_reported(tmp_path, rng, capsys):
    feats, root = _make_study(tmp_path / "fmri", rng, feature_trs={"s2": N_TR - 1})
    setup_logging("encode")  # as the CLI does: the package's log lines go to stderr
    side = run_encoding(feats, root, "sub-01", "early", tmp_path / "e.tsv", CFG, "g")
    assert side["n_train"] == 4 * N_TR - 1
    assert f"cortexscale encode: run 'r2': {N_TR} TRs in" in capsys.readouterr().err


def test_constant_parcel_is_excluded(tmp_path, rng):
    feats, root = _make_study(tmp_path / "fmri", rng)
    with h5py.File(root / "sub-01.h5", "a") as f:
        for run, _, _ in RUNS:
            y = f[run][()]
            y[:, 1] = 0.5
            f[run][...] = y
    side = run_encoding(feats, root, "sub-01", "early", tmp_path / "e.tsv", CFG, "g")
    table = pd.read_csv(tmp_path / "e.tsv", sep="\t")
    assert side["n_excluded"] == 1 and side["excluded_parcels"] == [1]
    assert np.isnan(table.loc[1, "r"]) and np.isnan(table.loc[1, "alpha"])
    assert (table.loc[[0, 2], "r"] > 0.9).all()


def test_config_is_checked():
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'bogus' in 'encoding'"):
        check_encoding_config({**CFG, "bogus": "torch"})
    with pytest.raises(ValueError, match="'encoding.score' must be one of"):
        check_encoding_config({**CFG, "score": "mse"})
    with pytest.raises(ValueError, match=r"'encoding.delays': \[1, 1\] has non-unique elements"):
        check_encoding_config({**CFG, "delays": [1, 1]})
    assert check_encoding_config({})["cv_folds"] == 3


def test_encode_command_fits_every_roi_and_reports_progress(tmp_path, rng, capsys):
    import re

    from cortexscale.cli import main

    feats, root = _make_study(tmp_path / "fmri", rng)
    outs = [tmp_path / "enc" / f"{roi}.tsv" for roi in ("early", "scene")]
    sections = json.dumps({"encoding": CFG})
    code = main(["encode", "--sections", sections, "--grid", "g", "--subject", "sub-01",
                 "--roi", "early", "scene", "--features", str(feats), "--fmri-root", str(root),
                 "--out", *map(str, outs)])
    assert code == 0
    for out, roi in zip(outs, ("early", "scene"), strict=True):
        assert json.loads(out.with_suffix(".json").read_text())["roi"] == roi
    err = capsys.readouterr().err
    lines = re.findall(r"cortexscale encode: g sub-01: ROI (\d)/2, elapsed .*, ETA .*; "
                       r"(\w+): 3 parcels, mean r [0-9.]+, \d+ significant", err)
    assert lines == [("1", "early"), ("2", "scene")], err
    # a --roi without its --out is a user error: one line, exit 2, nothing written
    assert main(["encode", "--sections", sections, "--grid", "g", "--subject", "sub-01",
                 "--roi", "early", "scene", "--features", str(feats), "--fmri-root", str(root),
                 "--out", str(tmp_path / "x.tsv")]) == 2
    assert "expected 2 (early, scene), found 1" in capsys.readouterr().err
    assert not (tmp_path / "x.tsv").exists()


def test_encode_command_reads_the_subject_once_and_matches_run_encoding(tmp_path, rng,
                                                                         monkeypatch):
    from cortexscale.cli import main
    from cortexscale.data.fmri import FmriDataset

    feats, root = _make_study(tmp_path / "fmri", rng)
    rois = ["early", "scene", "all"]
    for roi in rois:  # one ROI per call: the reference
        run_encoding(feats, root, "sub-01", roi, tmp_path / "one" / f"{roi}.tsv", CFG, grid="g")
    reads = []
    original = FmriDataset.responses

    def counted(self, subject, run):
        reads.append(run)
        return original(self, subject, run)

    monkeypatch.setattr(FmriDataset, "responses", counted)
    outs = [tmp_path / "all" / f"{roi}.tsv" for roi in rois]
    assert main(["encode", "--sections", json.dumps({"encoding": CFG}), "--grid", "g",
                 "--subject", "sub-01", "--roi", *rois, "--features", str(feats),
                 "--fmri-root", str(root), "--out", *map(str, outs)]) == 0
    assert reads == [run for run, _, _ in RUNS]  # every run once for the three ROIs
    for roi, out in zip(rois, outs, strict=True):
        assert out.read_bytes() == (tmp_path / "one" / f"{roi}.tsv").read_bytes()
        side, ref = (json.loads(p.with_suffix(".json").read_text())
                     for p in (out, tmp_path / "one" / f"{roi}.tsv"))
        side.pop("created"), ref.pop("created")
        assert side == ref
