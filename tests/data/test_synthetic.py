"""Tests of the synthetic world: rendering, determinism, the simulated brain."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from cortexscale.data.fmri import FmriDataset
from cortexscale.data.synthetic import (
    ROI_FAMILIES,
    bold_from_drive,
    fine_grid_latents,
    render_episode,
    write_synthetic_fmri,
)

ROIS = ["early", "motion", "object", "scene"]
FMRI = {"tr": 1.0, "n_runs": 3, "repeated_runs": 1, "trs_per_run": 150, "n_parcels": 24,
        "snr": [1.0, 0.5], "ar1": 0.3}
SUBJECTS = ["sub-01", "sub-02"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def fmri_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fmri")
    write_synthetic_fmri(out, FMRI, SUBJECTS, ROIS, seed=3, fps=8, height=16, width=16)
    return out


def test_render_episode_shapes_and_latents(rng):
    frames, lat = render_episode(200, 16, 20, rng)
    assert frames.dtype == np.uint8 and frames.shape == (200, 16, 20, 3)
    shapes = {"contrast": (200, 4), "luminance": (200, 4), "motion": (200,),
              "flicker": (200, 4), "object": (200, 3), "scene_cut": (200,)}
    assert {k: v.shape for k, v in lat.items()} == shapes
    np.testing.assert_array_equal(lat["object"].sum(axis=1), 1.0)
    assert lat["scene_cut"][0] == 0 and lat["scene_cut"].sum() >= 1
    assert (lat["motion"] >= 0).all()
    # frames change much more at scene cuts than within scenes
    change = np.abs(np.diff(frames.astype(float), axis=0)).mean(axis=(1, 2, 3))
    cuts = lat["scene_cut"][1:] == 1
    assert change[cuts].mean() > 3 * change[~cuts].mean()


def test_render_episode_is_deterministic():
    a, la = render_episode(64, 12, 12, np.random.default_rng(7))
    b, lb = render_episode(64, 12, 12, np.random.default_rng(7))
    c, _ = render_episode(64, 12, 12, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    for k in la:
        np.testing.assert_array_equal(la[k], lb[k])
    assert not np.array_equal(a, c)


def test_hrf_peaks_near_five_seconds():
    tr, over = 0.5, 16
    drive = np.zeros((40 * over, 1))
    drive[0] = 1.0  # impulse at t = 0
    bold = bold_from_drive(drive, tr, over, n_tr=40)[:, 0]
    assert 4.5 <= bold.argmax() * tr <= 5.5
    assert bold[0] == pytest.approx(0.0, abs=1e-6)  # causal: nothing before the drive


def test_fine_grid_averages_frames():
    x = np.arange(6, dtype=float)[:, None]  # frames at 0, .5, 1, 1.5, 2, 2.5 s (fps 2)
    fine = fine_grid_latents(x, fps=2, dt=1.0, n_bins=4)
    np.testing.assert_allclose(fine[:, 0], [0.5, 2.5, 4.5, 4.5])  # empty last bin holds


def test_layout_is_readable(fmri_dir):
    ds = FmriDataset(fmri_dir)
    assert ds.subjects == SUBJECTS
    assert ds.tr == pytest.approx(1.0)
    assert ds.stimuli == ["movie01", "movie02", "movie03"]
    assert ds.train_runs("sub-01") == ["ses-001_task-run01", "ses-001_task-run02"]
    assert ds.test_runs("sub-02") == ["ses-001_task-run03", "ses-002_task-run03"]
    assert (ds.runs["n_tr"] == 150).all()
    assert [len(ds.roi_parcels(r)) for r in ROIS] == [6, 6, 6, 6]
    frames = ds.stimulus_frames("movie01", fps=8, height=16, width=16)
    assert frames.shape == (1200, 16, 16, 3)  # ceil(150 TR * 1 s * 8 fps)
    y = ds.responses("sub-01", "ses-001_task-run01")
    assert y.shape == (150, 24) and y.dtype == np.float32
    with h5py.File(fmri_dir / "sub-01.h5", "r") as f:
        assert f.attrs["subject"] == "sub-01" and "config_hash" in f.attrs
    assert not [p for p in fmri_dir.rglob(".*")]  # no temporaries left


def test_weights_follow_roi_families(fmri_dir):
    parcels = pd.read_csv(fmri_dir / "parcels.tsv", sep="\t")
    with h5py.File(fmri_dir / "truth" / "sub-01.h5", "r") as f:
        w = f["weights"][()]
        names = [n.decode() if isinstance(n, bytes) else n
                 for n in f["weights"].attrs["feature_names"]]
    families = np.array([n.split("[")[0] for n in names])
    for p, roi in enumerate(parcels["roi"]):
        tuned = np.isin(families, ROI_FAMILIES[roi])
        assert np.all(w[~tuned, p] == 0) and np.any(w[tuned, p] != 0)


def test_noise_has_the_configured_snr_and_ar1(fmri_dir):
    ds = FmriDataset(fmri_dir)
    for k, subject in enumerate(SUBJECTS):
        with h5py.File(fmri_dir / "truth" / f"{subject}.h5", "r") as f:
            resid = np.concatenate([ds.responses(subject, r) - f[f"signal/{r}"][()]
                                    for r in ds.runs.loc[ds.runs.subject == subject, "run"]])
        assert resid.var() == pytest.approx(1.0 / FMRI["snr"][k], rel=0.15)
        lag1 = np.mean(np.sum(resid[1:] * resid[:-1], 0) / np.sum(resid**2, 0))
        assert lag1 == pytest.approx(FMRI["ar1"], abs=0.08)


def test_repeats_share_signal_not_noise(fmri_dir):
    ds = FmriDataset(fmri_dir)
    a, b = (ds.responses("sub-01", r) for r in ds.test_runs("sub-01"))
    with h5py.File(fmri_dir / "truth" / "sub-01.h5", "r") as f:
        np.testing.assert_array_equal(f["signal/ses-001_task-run03"][()],
                                      f["signal/ses-002_task-run03"][()])
    assert not np.allclose(a, b)


def _pearson(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0))


def test_oracle_reaches_the_true_noise_ceiling(fmri_dir):
    """The true signal, used as the prediction, scores near the stated ceiling.

    Tolerance: 0.05 on the mean over parcels, 0.2 on any parcel (150 test TRs with
    AR(1) noise give a per-parcel standard error of about 0.04 at r = 0.8).
    """
    ds = FmriDataset(fmri_dir)
    for subject in SUBJECTS:
        runs = ds.test_runs(subject)
        y = np.mean([ds.responses(subject, r) for r in runs], axis=0)
        with h5py.File(fmri_dir / "truth" / f"{subject}.h5", "r") as f:
            r = _pearson(f[f"signal/{runs[0]}"][()].astype(float), y.astype(float))
            ceiling, oracle = f["noise_ceiling"][()], f["oracle_r"][()]
        np.testing.assert_allclose(r, oracle, atol=1e-5)
        assert abs(r.mean() - ceiling.mean()) < 0.05
        assert np.max(np.abs(r - ceiling)) < 0.2
    with h5py.File(fmri_dir / "truth" / "sub-02.h5", "r") as f:
        low = f["noise_ceiling"][()].mean()
    with h5py.File(fmri_dir / "truth" / "sub-01.h5", "r") as f:
        assert f["noise_ceiling"][()].mean() > low  # lower snr, lower ceiling


def test_fmri_is_deterministic_from_seed(tmp_path):
    cfg = {**FMRI, "trs_per_run": 20, "n_parcels": 8}
    args = (cfg, ["sub-01"], ["early", "v4"])
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        write_synthetic_fmri(tmp_path / name, *args, seed=seed, fps=4, height=8, width=8)

    def load(name):
        with h5py.File(tmp_path / name / "sub-01.h5", "r") as f:
            return {k: f[k][()] for k in f}

    a, b, c = load("a"), load("b"), load("c")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["ses-001_task-run01"], c["ses-001_task-run01"])
    runs = pd.read_csv(tmp_path / "a" / "runs.tsv", sep="\t")
    assert list(runs.columns) == ["subject", "run", "stimulus", "n_tr", "split"]


def test_bad_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="repeated_runs"):
        write_synthetic_fmri(tmp_path, {**FMRI, "repeated_runs": 3}, SUBJECTS, ROIS, 0, 4, 8, 8)
    with pytest.raises(ValueError, match="n_parcels"):
        write_synthetic_fmri(tmp_path, {**FMRI, "n_parcels": 2}, SUBJECTS, ROIS, 0, 4, 8, 8)
    assert not list(tmp_path.iterdir())  # rejected before writing anything
