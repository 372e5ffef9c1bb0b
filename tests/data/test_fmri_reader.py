"""Tests of cortexscale.data.fmri.FmriDataset on small hand-written datasets."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from cortexscale.data.fmri import FmriDataset
from cortexscale.errors import InputError
from cortexscale.io.video import write_video

N_TR, N_PARCELS = 6, 5


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _write_subject(root, subject, runs, rng, tr=1.5):
    with h5py.File(root / f"{subject}.h5", "w") as f:
        for run in runs:
            f.create_dataset(run, data=rng.standard_normal((N_TR, N_PARCELS)).astype("f4"))
        f.attrs["tr"] = tr
        f.attrs["subject"] = subject


@pytest.fixture
def dataset(tmp_path, rng):
    """Two subjects, stimuli a (train) and b (test, repeated); two ROIs."""
    runs = []
    for subject in ("sub-01", "sub-02"):
        runs += [
            (subject, "ses-001_task-run01", "a", N_TR, "train"),
            (subject, "ses-001_task-run02", "b", N_TR, "test"),
            (subject, "ses-002_task-run02", "b", N_TR, "test"),
        ]
        _write_subject(tmp_path, subject, [r[1] for r in runs[-3:]], rng)
    pd.DataFrame(runs, columns=["subject", "run", "stimulus", "n_tr", "split"]).to_csv(
        tmp_path / "runs.tsv", sep="\t", index=False
    )
    pd.DataFrame({"parcel": range(N_PARCELS), "roi": ["v1", "v1", "v1", "mt", "mt"],
                  "label": [f"p{i}" for i in range(N_PARCELS)]}).to_csv(
        tmp_path / "parcels.tsv", sep="\t", index=False
    )
    for stim in ("a", "b"):
        frames = rng.integers(0, 256, size=(9, 8, 8, 3), dtype=np.uint8)
        write_video(tmp_path / "stimuli" / f"{stim}.mkv", frames, fps=6)
    return tmp_path


def test_tables_and_properties(dataset):
    ds = FmriDataset(dataset)
    assert ds.subjects == ["sub-01", "sub-02"]
    assert ds.stimuli == ["a", "b"]
    assert ds.tr == pytest.approx(1.5)
    assert list(ds.runs.columns[:5]) == ["subject", "run", "stimulus", "n_tr", "split"]
    assert list(ds.parcels.columns) == ["parcel", "roi", "label"]
    assert ds.train_runs("sub-01") == ["ses-001_task-run01"]
    assert ds.test_runs("sub-02") == ["ses-001_task-run02", "ses-002_task-run02"]
    assert ds.stimulus_n_tr("b") == N_TR
    np.testing.assert_array_equal(ds.roi_parcels("mt"), [3, 4])
    assert ds.roi_parcels("v1").dtype == np.int64


def test_responses_shape_and_dtype(dataset):
    y = FmriDataset(dataset).responses("sub-01", "ses-001_task-run01")
    assert y.dtype == np.float32
    assert y.shape == (N_TR, N_PARCELS)


def test_stimulus_frames_resampled(dataset):
    frames = FmriDataset(dataset).stimulus_frames("a", fps=3, height=4, width=6)
    assert frames.dtype == np.uint8
    assert frames.shape == (4, 4, 6, 3)  # round(9 * 3 / 6) frames


def test_unknown_roi_lists_available(dataset):
    with pytest.raises(InputError, match=r"'v1', 'mt'"):
        FmriDataset(dataset).roi_parcels("ffa")


def test_unknown_run_and_subject(dataset):
    ds = FmriDataset(dataset)
    with pytest.raises(InputError, match="ses-009"):
        ds.responses("sub-01", "ses-009_task-run01")
    with pytest.raises(InputError, match="sub-07"):
        ds.train_runs("sub-07")


def test_missing_folder_and_tables(tmp_path, dataset):
    with pytest.raises(FileNotFoundError, match="runs.tsv"):
        FmriDataset(tmp_path / "nowhere")
    (dataset / "parcels.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="parcels.tsv"):
        FmriDataset(dataset)


def test_missing_subject_file(dataset):
    (dataset / "sub-02.h5").unlink()
    ds = FmriDataset(dataset)
    with pytest.raises(FileNotFoundError, match="sub-02.h5"):
        ds.responses("sub-02", "ses-001_task-run01")


def test_missing_stimulus_movie(dataset):
    (dataset / "stimuli" / "b.mkv").unlink()
    with pytest.raises(FileNotFoundError, match="b.mkv"):
        FmriDataset(dataset).stimulus_frames("b", 6, 8, 8)


def test_wrong_n_tr_is_an_error(dataset):
    with h5py.File(dataset / "sub-01.h5", "a") as f:
        del f["ses-001_task-run01"]
        f.create_dataset("ses-001_task-run01", data=np.zeros((N_TR + 2, N_PARCELS), "f4"))
    with pytest.raises(ValueError, match=r"sub-01.h5.*ses-001_task-run01.*\(8, 5\).*\(6, 5\)"):
        FmriDataset(dataset).responses("sub-01", "ses-001_task-run01")


def test_nan_is_an_error_with_count(dataset):
    with h5py.File(dataset / "sub-01.h5", "a") as f:
        data = f["ses-001_task-run02"]
        y = data[()]
        y[0, :3] = np.nan
        data[...] = y
    with pytest.raises(ValueError, match=r"sub-01.h5.*ses-001_task-run02.*3 NaN"):
        FmriDataset(dataset).responses("sub-01", "ses-001_task-run02")


def test_tr_disagreement(dataset, rng):
    with h5py.File(dataset / "sub-02.h5", "a") as f:
        f.attrs["tr"] = 2.0
    with pytest.raises(ValueError, match="disagree on the TR"):
        _ = FmriDataset(dataset).tr


def test_bad_runs_table(dataset):
    runs = pd.read_csv(dataset / "runs.tsv", sep="\t")
    runs.loc[0, "split"] = "validation"
    runs.to_csv(dataset / "runs.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"runs.tsv.*split.*validation"):
        FmriDataset(dataset)
    runs.drop(columns="split").to_csv(dataset / "runs.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"runs.tsv lacks column.*split"):
        FmriDataset(dataset)
