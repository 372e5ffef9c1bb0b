"""Readers and importers of the real dataset layouts, on the synthetic world written in them.

Every dataset here is tiny and built by the test; nothing is downloaded.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from cortexscale.data.algonauts2025 import import_algonauts2025, write_synthetic_algonauts2025
from cortexscale.data.checks import check_dataset
from cortexscale.data.corpus import build_corpus
from cortexscale.data.fmri import FmriDataset
from cortexscale.data.nifti import DEFAULT_CONFOUNDS, import_nifti, write_synthetic_nifti
from cortexscale.data.nsd import read_nsd_subject, write_synthetic_nsd
from cortexscale.data.synthetic import write_synthetic_fmri
from cortexscale.encoding.noise_ceiling import ncsnr, noise_ceiling_nsd
from cortexscale.io.video import write_video

ROIS = ["early", "motion", "object", "scene"]
SMALL = {"tr": 1.0, "n_runs": 3, "repeated_runs": 1, "trs_per_run": 40, "n_parcels": 8,
         "snr": [1.0], "ar1": 0.3}


def noise_ceiling_from_repeats(repeats):
    """The NSD noise ceiling as a correlation, for test data averaged over the repeats:
    sqrt(NC / 100) = sqrt(v_s / (v_s + v_e / n)); repeats are centred per run first."""
    reps = np.asarray(repeats, dtype=np.float64)
    reps = reps - reps.mean(axis=1, keepdims=True)
    return np.sqrt(noise_ceiling_nsd(ncsnr(reps), reps.shape[0]) / 100)


def _pearson(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0))


# ----------------------------------------------------------------- noise ceiling
@pytest.fixture(scope="module")
def ceiling_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("ceiling")
    cfg = {"tr": 1.0, "n_runs": 5, "repeated_runs": 3, "trs_per_run": 150, "n_parcels": 64,
           "snr": [2.0, 0.5], "ar1": 0.3}
    write_synthetic_fmri(out, cfg, ["sub-01", "sub-02"], ROIS, seed=11, fps=4, height=8,
                         width=8)
    return out


def test_estimated_noise_ceiling_matches_the_truth(ceiling_world):
    """Split-repeat (ncsnr) estimate vs truth/{subject}.h5 noise_ceiling.

    Tolerance: 0.02 on the mean over parcels and 0.05 on the median absolute error per
    parcel (450 test TRs of AR(1) noise, 2 repeats each).
    """
    ds = FmriDataset(ceiling_world)
    for subject in ds.subjects:
        test = ds.runs[(ds.runs.subject == subject) & (ds.runs.split == "test")]
        reps = [np.concatenate([ds.responses(subject, g.run.iloc[k])
                                for _, g in test.groupby("stimulus", sort=True)])
                for k in range(2)]
        est = noise_ceiling_from_repeats(np.stack(reps))
        with h5py.File(ceiling_world / "truth" / f"{subject}.h5", "r") as f:
            true = f["noise_ceiling"][()]
        assert abs(est.mean() - true.mean()) < 0.02, (est.mean(), true.mean())
        assert np.median(np.abs(est - true)) < 0.05


def test_estimator_on_pure_noise_and_identical_repeats():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((2, 2000, 5))
    assert noise_ceiling_from_repeats(noise).max() < 0.25
    same = np.repeat(rng.standard_normal((1, 100, 3)), 3, axis=0)
    np.testing.assert_allclose(noise_ceiling_from_repeats(same), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 repeats"):
        noise_ceiling_from_repeats(noise[:1])


# ----------------------------------------------------------------- Algonauts 2025
@pytest.fixture(scope="module")
def a25(tmp_path_factory):
    root = tmp_path_factory.mktemp("a25")
    write_synthetic_algonauts2025(root / "release", SMALL, ["sub-01"], ["early", "object"],
                                  seed=2, fps=4, height=8, width=8)
    return root / "release"


def test_algonauts2025_import_round_trip(a25, tmp_path):
    import_algonauts2025(a25, tmp_path / "fmri", ["sub-01"], tr=1.0)
    ds = FmriDataset(tmp_path / "fmri")
    assert ds.rois == ["early", "object"]
    assert ds.test_runs("sub-01") == ["ses-001_task-movie03_run-1", "ses-002_task-movie03_run-2"]
    src = next((a25 / "fmri" / "sub-01" / "func").glob("*.h5"))
    with h5py.File(src, "r") as f:
        np.testing.assert_array_equal(ds.responses("sub-01", "ses-001_task-movie01"),
                                      f["ses-001_task-movie01"][()])
    assert ds.stimulus_frames("movie01", 4, 8, 8).shape == (160, 8, 8, 3)
    check_dataset(tmp_path / "fmri", ["sub-01"], ["early"])


def test_algonauts2025_missing_subject_file(a25, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sub-09.*fmri/sub-09/func"):
        import_algonauts2025(a25, tmp_path / "fmri", ["sub-09"], tr=1.0)
    assert not (tmp_path / "fmri").exists()


def _copy_release(a25, tmp_path):
    import shutil

    dst = tmp_path / "release"
    shutil.copytree(a25, dst)
    return dst, next((dst / "fmri" / "sub-01" / "func").glob("*.h5"))


def test_truncated_hdf5_names_the_file(a25, tmp_path):
    root, h5 = _copy_release(a25, tmp_path)
    data = h5.read_bytes()
    h5.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{h5.name}.*truncated or corrupt.*expected"):
        import_algonauts2025(root, tmp_path / "fmri", ["sub-01"], tr=1.0)
    assert not (tmp_path / "fmri").exists()  # nothing half-written
    # the internal reader says the same about its own files
    import_algonauts2025(a25, tmp_path / "ok", ["sub-01"], tr=1.0)
    sub = tmp_path / "ok" / "sub-01.h5"
    sub.write_bytes(sub.read_bytes()[:2000])
    with pytest.raises(ValueError, match=r"sub-01\.h5.*truncated"):
        FmriDataset(tmp_path / "ok").responses("sub-01", "ses-001_task-movie01")


def test_run_longer_than_its_movie_names_both(a25, tmp_path):
    root, h5 = _copy_release(a25, tmp_path)
    with h5py.File(h5, "a") as f:
        y = f["ses-001_task-movie02"][()]
        del f["ses-001_task-movie02"]
        f["ses-001_task-movie02"] = np.concatenate([y, y[:3]])  # 43 TRs, movie lasts 40 s
    with pytest.raises(ValueError, match=r"ses-001_task-movie02.*43 TRs.*movie02.*40\.00 s"):
        import_algonauts2025(root, tmp_path / "fmri", ["sub-01"], tr=1.0)
    assert not (tmp_path / "fmri").exists()


def test_prepared_run_mismatch_caught_by_fmri_check(tmp_path):
    write_synthetic_fmri(tmp_path, {**SMALL, "trs_per_run": 20}, ["sub-01"], ["early"], 0,
                         4, 8, 8)
    rng = np.random.default_rng(0)
    write_video(tmp_path / "stimuli" / "movie02.mkv",
                rng.integers(0, 255, (40, 8, 8, 3), dtype=np.uint8), 4)  # 10 s, scan 20 s
    with pytest.raises(ValueError, match=r"sub-01\.h5\['ses-001_task-run02'\].*20 TRs.*10\.00 s"):
        check_dataset(tmp_path, ["sub-01"], ["early"])


def test_nan_and_constant_parcels_are_reported_and_zeroed(a25, tmp_path):
    root, h5 = _copy_release(a25, tmp_path)
    with h5py.File(h5, "a") as f:
        y = f["ses-001_task-movie01"][()]
        y[5, 2] = np.nan
        y[:, 4] = 7.0
        f["ses-001_task-movie01"][...] = y
    import_algonauts2025(root, tmp_path / "fmri", ["sub-01"], tr=1.0)
    report = json.loads((tmp_path / "fmri" / "import.json").read_text())
    assert report["bad_parcels"]["sub-01"] == {"nonfinite": [2], "constant": [4]}
    ds = FmriDataset(tmp_path / "fmri")
    for run in ds.runs.run:
        y = ds.responses("sub-01", run)  # finite: the reader accepts it
        assert np.all(y[:, [2, 4]] == 0) and np.all(y.std(0)[[0, 1, 3, 5, 6, 7]] > 0)
    assert check_dataset(tmp_path / "fmri", ["sub-01"], ["early"])["subjects"]["sub-01"][
        "constant_parcels"] == 2


# ----------------------------------------------------------------- NIfTI
@pytest.fixture(scope="module")
def nifti_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nifti")
    write_synthetic_nifti(root, {**SMALL, "trs_per_run": 60}, ["sub-01"], ["early", "object"],
                          seed=4, fps=4, height=8, width=8)
    return root


def test_nifti_confound_removal_recovers_the_parcels(nifti_root, tmp_path):
    """With load_confounds the parcels correlate > 0.8 with the simulated ones; without < 0.6."""
    scores = {}
    for name, conf in (("clean", DEFAULT_CONFOUNDS), ("raw", ())):
        import_nifti(nifti_root, tmp_path / name, ["sub-01"], tr=1.0, confounds=conf)
        ds = FmriDataset(tmp_path / name)
        assert ds.rois == ["early", "object"] and ds.n_parcels == 8
        with h5py.File(nifti_root / "truth" / "parcels" / "sub-01.h5", "r") as f:
            true = f["ses-001_task-run01"][()]
        y = ds.responses("sub-01", "task-movie01_run-1")
        np.testing.assert_allclose(y.mean(0), 0, atol=1e-4)  # z-scored per run
        scores[name] = _pearson(true, y).mean()
    assert scores["clean"] > 0.8 > 0.6 > scores["raw"], scores


def test_nifti_voxel_mask_and_missing_confounds(nifti_root, tmp_path):
    import shutil

    import nibabel as nib

    atlas = nib.load(nifti_root / "atlas" / "atlas_dseg.nii.gz")
    mask = (np.asarray(atlas.dataobj) == 1).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, atlas.affine), tmp_path / "mask.nii.gz")
    root = tmp_path / "tree"
    shutil.copytree(nifti_root, root)
    shutil.copyfile(tmp_path / "mask.nii.gz", root / "mask.nii.gz")
    import_nifti(root, tmp_path / "vox", ["sub-01"], tr=1.0, mask="mask.nii.gz")
    assert FmriDataset(tmp_path / "vox").n_parcels == int(mask.sum())
    next((root / "sub-01" / "func").glob("*movie02*confounds_timeseries.tsv")).unlink()
    with pytest.raises(ValueError, match=r"movie02.*confounds"):
        import_nifti(root, tmp_path / "bad", ["sub-01"], tr=1.0)
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------- Algonauts 2023 / NSD
@pytest.fixture
def nsd(tmp_path):
    write_synthetic_nsd(tmp_path, ["subj01"], ["early", "object", "scene"], seed=0,
                        n_images=24, n_vertices=(12, 10), size=16)
    return tmp_path / "subj01"


def test_nsd_reader(nsd):
    sub = read_nsd_subject(nsd)
    assert sub.n_images == 24 and sub.responses["lh"].shape == (24, 12)
    assert sorted(sub.rois) == ["early", "object", "scene"]
    assert sum(int(m["lh"].sum() + m["rh"].sum()) for m in sub.rois.values()) == 22
    assert sub.load_images().shape == (24, 16, 16, 3)
    with h5py.File(nsd.parent / "truth" / "subj01.h5", "r") as f:
        r = _pearson(f["signal_lh"][()], sub.responses["lh"].astype(float))
        assert abs(r.mean() - f["noise_ceiling_lh"][()].mean()) < 0.15


def test_nsd_mask_size_mismatch(nsd):
    path = nsd / "roi_masks" / "rh.synthetic_challenge_space.npy"
    np.save(path, np.ones(11, dtype=np.int32))
    with pytest.raises(ValueError, match=r"rh\.synthetic_challenge_space\.npy.*\(11,\).*\(10,\)"):
        read_nsd_subject(nsd)


def test_nsd_hemisphere_and_image_count_mismatch(nsd):
    fmri = nsd / "training_split" / "training_fmri"
    next((nsd / "training_split" / "training_images").glob("*.png")).unlink()
    with pytest.raises(ValueError, match=r"23 PNG images.*24 rows"):
        read_nsd_subject(nsd)
    np.save(fmri / "rh_training_fmri.npy", np.zeros((20, 10), np.float32))
    with pytest.raises(ValueError, match=r"lh has 24 rows and rh 20"):
        read_nsd_subject(nsd)
    (fmri / "lh_training_fmri.npy").unlink()
    with pytest.raises(FileNotFoundError, match="lh_training_fmri.npy"):
        read_nsd_subject(nsd)


# ----------------------------------------------------------------- corpus sources
CORPUS = {"fps": 8, "time_stride": 1, "clip_len": 4, "height": 8, "width": 8}


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_corpus_from_frames_h5(tmp_path, layout):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "frames.h5", "w") as f:
        for name, x in (("ep1", a), ("group/ep2", b)):
            f[name] = x if layout == "NHWC" else x.transpose(0, 3, 1, 2)
        f["group/ep2"].attrs["fps"] = 4.0  # twice as slow: resampled to 8 fps
    out = tmp_path / "corpus.h5"
    build_corpus(out, {"source": "frames_h5", "path": str(tmp_path / "frames.h5"), **CORPUS},
                 [16, 44], seed=0)
    with h5py.File(out, "r") as f:
        assert list(f["sources"].asstr()[()]) == ["ep1", "group/ep2"]
        assert f["clips"].shape == (5 + 6, 4, 8, 8, 3)
        first = a[:4].reshape(4, 8, 2, 8, 2, 3).mean(axis=(2, 4))
        np.testing.assert_allclose(f["clips"][0], np.rint(first), atol=1)


def test_frames_h5_bad_layouts(tmp_path):
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((4, 3, 8, 3), np.uint8)
    cfg = {"source": "frames_h5", "path": str(path), **CORPUS}
    with pytest.raises(ValueError, match=r"frames\.h5\['x'\].*channels-first or channels-last"):
        build_corpus(tmp_path / "c.h5", cfg, [4], 0)
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((4, 8, 8, 4), np.uint8)
    with pytest.raises(ValueError, match=r"3 colour channels.*\(4, 8, 8, 4\)"):
        build_corpus(tmp_path / "c.h5", cfg, [4], 0)
    assert not (tmp_path / "c.h5").exists()


def test_corpus_from_video_dir_and_undecodable_video(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "videos" / "sub").mkdir(parents=True)
    write_video(tmp_path / "videos" / "a.mkv", rng.integers(0, 256, (24, 16, 16, 3), np.uint8), 24)
    write_video(tmp_path / "videos" / "sub" / "b.mkv",
                rng.integers(0, 256, (16, 8, 8, 3), np.uint8), 8)
    cfg = {"source": "video_dir", "path": str(tmp_path / "videos"), **CORPUS}
    build_corpus(tmp_path / "c.h5", cfg, [16], 0)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert list(f["sources"].asstr()[()]) == ["a.mkv", "sub/b.mkv"]
        assert f["clips"].shape == (2 + 4, 4, 8, 8, 3)  # 24 frames at 24 fps -> 8 frames
    (tmp_path / "videos" / "sub" / "c.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match=r"c\.mp4"):
        build_corpus(tmp_path / "d.h5", cfg, [16], 0)
    assert not (tmp_path / "d.h5").exists()


def test_import_leaves_no_partial_files(a25, tmp_path):
    out = tmp_path / "fmri"
    import_algonauts2025(a25, out, ["sub-01"], tr=1.0)
    assert not list(tmp_path.glob(".fmri.*"))
    pd.read_csv(out / "runs.tsv", sep="\t")
