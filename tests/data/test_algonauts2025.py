"""Algonauts 2025 as the release ships it: Schaefer networks, the subject atlases, brain maps,
the pooled label, and the release's other contents ignored (files laid out as the release)."""

from __future__ import annotations

import json
import shutil

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from wfutils import run_snakemake, tiny_config, write_yaml

from cortexscale.config import POOLED, ConfigError, check_config, check_semantics
from cortexscale.data.algonauts2025 import (
    ATLAS_NAME,
    import_algonauts2025,
    roi_names,
    schaefer_parcels,
)
from cortexscale.data.fmri import FmriDataset
from cortexscale.encoding.delays import make_delays
from cortexscale.errors import InputError
from cortexscale.io.video import write_video
from cortexscale.logs import setup as setup_logging
from cortexscale.report.brainmaps import plot_brain_maps
from cortexscale.scaling.analyse import frontier_table, scaling_fits
from cortexscale.stages.encoding import run_encoding

TR, N_TR, FPS, D, DELAYS = 1.49, 20, 2.0, 4, [1, 2]
NETWORKS = ["Vis", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Cont", "Default"]
BOLD = "{s}_task-{t}_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net{d}_bold.h5"
# (key, stimulus): Friends in one file, Movie10 (figures01 shown twice: the test) in another
FRIENDS = [("ses-001_task-s01e01a", "s01e01a"), ("ses-001_task-s01e01b", "s01e01b"),
           ("ses-002_task-s01e02a", "s01e02a")]
MOVIE10 = [("ses-003_task-figures01_run-1", "figures01"),
           ("ses-004_task-figures01_run-2", "figures01")]
ENC = {"alphas": {"min": -2, "max": 4, "n": 7}, "delays": DELAYS, "cv_folds": 2,
       "score": "pearson", "dtype": "float64", "chunk_size": 256}


def _atlas() -> nib.Nifti1Image:
    """10 x 10 x 10 voxels of 12 mm, one per label: LH (1-500) at x < 0, RH at x > 0."""
    labels = np.zeros((10, 10, 10), dtype=np.int16)
    labels[:5] = np.arange(1, 501).reshape(5, 10, 10)
    labels[5:] = np.arange(501, 1001).reshape(5, 10, 10)
    affine = np.diag([12.0, 12.0, 12.0, 1.0])
    affine[:3, 3] = [-54.0, -90.0, -54.0]
    return nib.Nifti1Image(labels, affine)


def _write_release(root, rng):
    """A tiny release: two subjects (sub-02 lacks s01e02a), features of every stimulus."""
    stimuli = {s for _, s in FRIENDS + MOVIE10}
    x = {s: rng.standard_normal((N_TR, D)).astype(np.float32) for s in sorted(stimuli)}
    w = rng.standard_normal((D * len(DELAYS), 1000))
    for subject, friends in (("sub-01", FRIENDS), ("sub-02", FRIENDS[:2])):
        func = root / "fmri" / subject / "func"
        func.mkdir(parents=True)
        for name, runs in ((BOLD.format(s=subject, t="friends", d="_desc-s123456"), friends),
                           (BOLD.format(s=subject, t="movie10", d=""), MOVIE10)):
            with h5py.File(func / name, "w") as f:
                for key, stim in runs:
                    y = make_delays(x[stim], DELAYS) @ w + rng.standard_normal((N_TR, 1000))
                    f[key] = y.astype(np.float32)
        atlas = root / "fmri" / subject / "atlas"
        atlas.mkdir()
        nib.save(_atlas(), atlas / ATLAS_NAME.format(subject=subject))
        # the withheld season 7's sample counts: not runs, ignored
        target = root / "fmri" / subject / "target_sample_number"
        target.mkdir()
        np.save(target / f"{subject}_friends-s7_fmri_samples.npy", np.array([400, 410]))
    frames = np.zeros((round(N_TR * TR * FPS), 8, 8, 3), dtype=np.uint8)
    movies = root / "stimuli" / "movies"
    for stim in sorted(stimuli - {"figures01"}) + ["s07e01a"]:  # s07: no fMRI (the test set)
        season = f"s{int(stim[1:3])}"
        write_video(movies / "friends" / season / f"friends_{stim}.mkv", frames, FPS)
    write_video(movies / "movie10" / "figures" / "figures01.mkv", frames, FPS)
    # out-of-distribution movies (split and unsplit) and transcripts: never opened, so they
    # need not even be videos
    for rel in ("ood/chaplin/task-chaplin1_video.mkv", "ood/chaplin/task-chaplin2_video.mkv",
                "ood/chaplin/chaplin.mkv"):
        (movies / rel).parent.mkdir(parents=True, exist_ok=True)
        (movies / rel).write_bytes(b"not a video")
    tr_dir = root / "stimuli" / "transcripts" / "friends" / "s1"
    tr_dir.mkdir(parents=True)
    (tr_dir / "friends_s01e01a.tsv").write_text("text_per_tr\twords_per_tr\n\t[]\n")
    return x


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("a25") / "algonauts_2025.competitors"
    features = _write_release(root, np.random.default_rng(0))
    return root, features


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory):
    root, _ = release
    out = tmp_path_factory.mktemp("imp") / "fmri"
    import_algonauts2025(root, out, ["sub-01", "sub-02"], tr=TR)
    return out


def test_schaefer_assignment_from_the_packaged_table():
    parcels = schaefer_parcels()
    assert parcels["parcel"].tolist() == list(range(1000))
    counts = parcels.groupby("roi").size().to_dict()
    # the label ranges of the published table (LH 1-500, RH 501-1000; RH Cont in two parts)
    assert counts["Vis_LH"] == 81 and counts["Default_LH"] == 126
    assert counts["Cont_RH"] == 70 + 2 and counts["Default_RH"] == 86
    assert (parcels["hemisphere"].iloc[:500] == "LH").all()
    assert (parcels["hemisphere"].iloc[500:] == "RH").all()
    assert parcels.loc[0, "label"] == "Schaefer1_LH_Vis" and parcels.loc[999, "roi"] == "Cont_RH"
    assert set(parcels["network"]) == set(NETWORKS)


def test_roi_names_of_the_release(release, tmp_path):
    root, _ = release
    names = roi_names(root)
    for net in NETWORKS:
        assert {net, f"{net}_LH", f"{net}_RH"} <= set(names)
    assert "all" in names and POOLED not in names and len(names) == len(set(names)) == 22
    # a parcels.tsv at the root (a user's own assignment) is what exists then
    own = tmp_path / "own"
    (own / "fmri").mkdir(parents=True)
    pd.DataFrame({"parcel": [0, 1], "roi": ["face_LH", "face_RH"], "label": ["a", "b"]}).to_csv(
        own / "parcels.tsv", sep="\t", index=False)
    assert roi_names(own) == ["face_LH", "face_RH", "face", "all"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        roi_names(tmp_path / "nowhere")


def test_import_networks_atlas_and_ignored_contents(release, imported):
    root, _ = release
    ds = FmriDataset(imported)
    vis = ds.roi_parcels("Vis")
    np.testing.assert_array_equal(vis, np.r_[0:81, 500:581])  # labels 1-81 and 501-581
    np.testing.assert_array_equal(ds.roi_parcels("Vis_RH"), np.arange(500, 581))
    assert ds.roi_parcels("all").size == 1000 and ds.roi_parcels("Default").size == 126 + 86
    with pytest.raises(InputError, match=r"ROI 'Visual'.*available ROIs: \[.*'Vis'"):
        ds.roi_parcels("Visual")
    # runs: the OOD movies, season 7 and the transcripts are not stimuli
    assert sorted(ds.stimuli) == ["figures01", "s01e01a", "s01e01b", "s01e02a"]
    assert ds.test_runs("sub-02") == [k for k, _ in MOVIE10]
    for subject in ("sub-01", "sub-02"):
        copied = nib.load(imported / "atlas" / f"{subject}.nii.gz")
        src = nib.load(root / "fmri" / subject / "atlas" / ATLAS_NAME.format(subject=subject))
        np.testing.assert_array_equal(np.asarray(copied.dataobj), np.asarray(src.dataobj))
    report = json.loads((imported / "import.json").read_text())
    assert report["missing_runs"] == {"sub-02": ["s01e02a"]}
    ignored = report["ignored"]
    assert ignored["ood_movies"]["count"] == 3 and ignored["transcripts"]["count"] == 1
    assert ignored["movies_without_runs"]["first"] == [
        "stimuli/movies/friends/s7/friends_s07e01a.mkv"]
    assert ignored["subject_folders"] == [f"fmri/{s}/target_sample_number"
                                          for s in ("sub-01", "sub-02")]


def test_missing_run_is_listed_not_fatal(release, tmp_path, capsys):
    root, _ = release
    setup_logging("fmri-import")
    import_algonauts2025(root, tmp_path / "fmri", ["sub-02", "sub-01"], tr=TR)
    assert "cortexscale fmri-import: sub-02 has no run of 1 stimulus(es)" in capsys.readouterr().err
    ds = FmriDataset(tmp_path / "fmri")
    assert len(ds.train_runs("sub-02")) == 2 and len(ds.train_runs("sub-01")) == 3


def test_subject_atlas_missing_or_not_fitting_the_runs(release, tmp_path):
    root, _ = release
    copy = tmp_path / "release"
    shutil.copytree(root, copy)
    atlas = copy / "fmri" / "sub-01" / "atlas" / ATLAS_NAME.format(subject="sub-01")
    labels = np.asarray(_atlas().dataobj).copy()
    labels[0, 0, 0] = 1001
    nib.save(nib.Nifti1Image(labels, _atlas().affine), atlas)
    with pytest.raises(ValueError, match=r"sub-01_space.*labels run 2\.\.1001; expected"):
        import_algonauts2025(copy, tmp_path / "a", ["sub-01"], tr=TR)
    atlas.unlink()
    with pytest.raises(FileNotFoundError, match=r"expected the release's atlas .*desc-dseg"):
        import_algonauts2025(copy, tmp_path / "b", ["sub-01"], tr=TR)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _encode(imported, features, tmp_path, rois):
    """Per-parcel rows of three fake grid points (data sizes), two subjects, ``rois``."""
    feats = tmp_path / "features.h5"
    with h5py.File(feats, "w") as f:
        f.attrs["layers"] = np.array([0])
        for stim, x in features.items():
            f[f"{stim}/layer0"] = x
    rows = []
    for subject in ("sub-01", "sub-02"):
        for roi in rois:
            out = tmp_path / "enc" / subject / f"{roi}.tsv"
            run_encoding(feats, imported, subject, roi, out, ENC, grid="g")
            rows.append(pd.read_csv(out, sep="\t").assign(subject=subject))
    enc = pd.concat(rows, ignore_index=True)
    grid = []
    for k, size in enumerate((1000, 3000, 10000)):  # a score that grows with data size
        grid.append(enc.assign(grid=f"d{size}_h8_l1_a1_fp32_s0", data_size=size,
                               r=enc["r"] * (0.8 + 0.1 * k)))
    parcels = pd.concat(grid, ignore_index=True).assign(
        family="videogpt", hidden=8, layers=1, heads=1, precision="fp32", seed=0, budget=0.0,
        tokens=0, n_params=1e5, train_flops=lambda d: d["data_size"] * 1e9)
    return parcels


def test_networks_and_all_give_rows_without_duplicates(release, imported, tmp_path):
    _, features = release
    parcels = _encode(imported, features, tmp_path, ["Vis", "Default", "all"])
    # a parcel scores the same in every ROI it is fitted in (penalties chosen per parcel)
    one = parcels[parcels["grid"] == parcels["grid"].iloc[0]]
    wide = one.pivot_table(index=["subject", "parcel"], columns="roi", values="r")
    both = wide.dropna(subset=["Vis"])
    np.testing.assert_allclose(both["Vis"], both["all"], rtol=1e-6, atol=1e-9)
    assert both.shape[0] == 2 * 162 and (both["Vis"] > 0.5).mean() > 0.9

    fits = scaling_fits(parcels, n_boot=20)
    key = ["axis", "target", "family", "data_size", "hidden", "layers", "heads", "precision",
           "budget", "tokens", "subject", "roi", "law"]
    key = [c for c in key if c in fits.columns]
    assert not fits.duplicated(key).any()
    assert set(fits["roi"]) == {"Vis", "Default", "all", POOLED}
    assert set(fits["subject"]) == {"sub-01", "sub-02", POOLED}
    # the pooled rows count each parcel once: their mean equals the 'all' ROI's
    pooled = fits[(fits["roi"] == POOLED) & (fits["law"] == "loglinear")]
    every = fits[(fits["roi"] == "all") & (fits["subject"] == POOLED)
                 & (fits["law"] == "loglinear")]
    np.testing.assert_allclose(pooled["mean_r"].to_numpy(), every["mean_r"].to_numpy())

    table = (parcels.groupby(["grid", "family", "data_size", "hidden", "layers", "heads",
                              "precision", "seed", "budget", "tokens", "n_params",
                              "train_flops", "subject", "roi"], as_index=False)
             .agg(mean_r=("r", "mean")).assign(mean_normalised=np.nan, ceiling_r=np.nan,
                                                tokens_seen=1))
    front = frontier_table(table, parcels, n_boot=20)
    assert not front.duplicated(["family", "roi", "data_size"]).any()
    assert sorted(front["roi"].unique()) == sorted(["Vis", "Default", "all", POOLED])
    assert (front.groupby("roi").size() == 3).all()


def test_brain_map_from_the_release_atlas(release, imported, tmp_path, saved):
    _, features = release
    parcels = _encode(imported, features, tmp_path, ["Vis", "Default"])
    atlases = [imported / "atlas" / f"{s}.nii.gz" for s in ("sub-01", "sub-02")]
    grid = plot_brain_maps(parcels, atlases, tmp_path / "map.png")
    assert grid == "d10000_h8_l1_a1_fp32_s0"  # the best mean r
    # one row of titled slices per subject, each drawn from that subject's own atlas
    fig = saved[tmp_path / "map.png"]
    titles = sorted(t.get_text() for ax in fig.axes for t in ax.texts if ": r, " in t.get_text())
    assert titles == [f"{s}: r, {grid}" for s in ("sub-01", "sub-02")]
    with pytest.raises(ValueError, match=r"no atlas for subject\(s\) \['sub-02'\]"):
        plot_brain_maps(parcels, {"sub-01": atlases[0]}, tmp_path / "x.png")


def test_a_roi_named_like_the_pooled_label_is_a_config_error():
    cfg = tiny_config()
    cfg["rois"] = ["early", POOLED]
    with pytest.raises(ConfigError, match="rois"):
        check_config(cfg)
    full = check_config(tiny_config())
    with pytest.raises(ConfigError, match=r"'\(pooled\)' is the label of the tables' pooled"):
        check_semantics({**full, "rois": ["early", POOLED]})


def test_workflow_imports_the_atlases_and_draws_the_map(tmp_path):
    cfg = tiny_config()
    cfg["fmri"] = {"source": "algonauts2025", "root": str(tmp_path / "release")}
    cfg["rois"] = ["Vis", "Default", "all"]
    cfg["reference"] = {"enabled": False}
    cfg.pop("pretrained_models", None)
    path = write_yaml(tmp_path / "a25.yaml", cfg)
    proc = run_snakemake(tmp_path, "brain_maps", "-n", "-p", "--configfile", str(path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "fmri_import" in out and "brain_maps" in out
    assert "atlas/sub-01.nii.gz" in out
    assert "--atlas results/" in out and "/data/fmri/atlas/sub-01.nii.gz" in out
