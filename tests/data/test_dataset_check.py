"""The study is checked against its dataset before any job: subjects, ROIs, stimuli."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from nsdrelease import write_release
from wfutils import REPO, run_snakemake, write_yaml

from cortexscale.cli import main
from cortexscale.config import load_study
from cortexscale.data.dataset_check import DatasetError, check_study_dataset, dataset_problems

BASE = REPO / "config" / "config.yaml"


def study(tmp_path, overrides, name="study.yaml"):
    overrides = {"reference": {"enabled": False}, **overrides}
    return load_study(write_yaml(tmp_path / name, overrides), BASE)


def nsd_study(root, **over):
    return {"fmri": {"source": "algonauts2023", "root": str(root)}, "subjects": ["subj01"],
            "rois": ["early", "FFA-1"], "pretrained_models": {"only": True,
            "image_split": {"n_train": 0, "n_test": 5}}, "reference": {"enabled": False},
            **over}


# ----------------------------------------------------------------- Algonauts 2023
def test_algonauts2023_fits(tmp_path):
    write_release(tmp_path / "data")
    cfg = study(tmp_path, nsd_study(tmp_path / "data"))
    problems, report = dataset_problems(cfg)
    assert problems == [] and report["subj01"]["n_images"] == 30
    assert check_study_dataset(cfg) is True


def test_algonauts2023_wrong_roi_subject_and_split_listed_at_once(tmp_path):
    write_release(tmp_path / "data")
    cfg = study(tmp_path, nsd_study(tmp_path / "data", subjects=["subj01", "subj09"],
                                    rois=["early", "FFA1", "streams1"],
                                    pretrained_models={"only": True, "image_split": {
                                        "n_train": 40, "n_test": 5}}))
    with pytest.raises(DatasetError) as err:
        check_study_dataset(cfg, "study.yaml")
    msg = str(err.value)
    assert "rois: [FFA1, streams1] are not ROIs of" in msg and "FFA-1" in msg
    assert "midventral" in msg  # the list of what exists
    assert "subjects: [subj09] are not in" in msg and "available: [subj01]" in msg
    assert "n_train 40 + n_test 5 do not fit the 30 training images" in msg


def test_algonauts2023_image_count_mismatch_is_named(tmp_path):
    sub = write_release(tmp_path / "data")
    next((sub / "training_split" / "training_images").glob("*.png")).unlink()
    problems, _ = dataset_problems(study(tmp_path, nsd_study(tmp_path / "data")))
    assert len(problems) == 1 and "29 PNG images" in problems[0] and "30 rows" in problems[0]


def test_no_root_no_check(tmp_path):
    cfg = study(tmp_path, nsd_study(tmp_path / "absent"))
    assert check_study_dataset(cfg) is False
    assert check_study_dataset(load_study(BASE, BASE)) is False  # synthetic: generated


def test_validate_catches_a_wrong_roi(tmp_path, capsys):
    write_release(tmp_path / "data")
    good = write_yaml(tmp_path / "good.yaml", nsd_study(tmp_path / "data"))
    bad = write_yaml(tmp_path / "bad.yaml", nsd_study(tmp_path / "data", rois=["Early"]))
    assert main(["validate", str(good), "--base", str(BASE)]) == 0
    assert "checked" in capsys.readouterr().out
    assert main(["validate", str(bad), "--base", str(BASE)]) == 2
    err = capsys.readouterr().err
    assert "rois: [Early] are not ROIs of" in err and "early" in err


def test_workflow_stops_before_any_job(tmp_path):
    write_release(tmp_path / "data")
    cfg = nsd_study(tmp_path / "data", rois=["early", "FFA1"])
    cfg["pretrained_models"].update(models=[{"name": "m", "build": "vit"}], ensembles=[])
    res = run_snakemake(tmp_path, "-n", "--configfile", str(write_yaml(tmp_path / "s.yaml", cfg)))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "rois: [FFA1] are not ROIs of" in out and "FFA-1" in out
    assert "pretrained_features" not in out


# ----------------------------------------------------------------- Algonauts 2025
def write_2025(root, tasks=("s01e01a", "s01e01b"), movies=("s01e01a", "s01e01b")):
    func = root / "fmri" / "sub-01" / "func"
    func.mkdir(parents=True)
    name = ("sub-01_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_"
            "parcel-1000Par7Net_desc-s123456_bold.h5")
    with h5py.File(func / name, "w") as f:
        for i, t in enumerate(tasks):
            f.create_dataset(f"ses-{i + 1:03d}_task-{t}", data=np.zeros((3, 4), np.float32))
    d = root / "stimuli" / "movies" / "friends" / "s1"
    d.mkdir(parents=True)
    for m in movies:
        (d / f"friends_{m}.mkv").write_bytes(b"")


def test_algonauts2025(tmp_path):
    write_2025(tmp_path / "d", movies=("s01e01a",))
    cfg = study(tmp_path, {"fmri": {"source": "algonauts2025", "root": str(tmp_path / "d"),
                                    "test_stimuli": ["s01e01a", "s09e09z"]},
                           "subjects": ["sub-01", "sub-02"], "rois": ["all", "NoSuchROI"]})
    problems, report = dataset_problems(cfg)
    text = "\n".join(problems)
    assert "subjects: [sub-02] are not in" in text and "available: [sub-01]" in text
    assert "rois: [NoSuchROI]" in text and "all" in report["rois"]
    assert "no movie for task(s) [s01e01b]" in text
    assert "fmri.test_stimuli: [s09e09z]" in text
    assert len(problems) == 4


# ----------------------------------------------------------------- NIfTI
def test_nifti(tmp_path):
    root = tmp_path / "bids"
    func = root / "sub-01" / "func"
    func.mkdir(parents=True)
    for t in ("movie01", "movie02"):
        (func / f"sub-01_task-{t}_run-1_space-X_desc-preproc_bold.nii.gz").write_bytes(b"")
    (root / "stimuli").mkdir()
    (root / "stimuli" / "movie01.mkv").write_bytes(b"")
    (root / "atlas").mkdir()
    (root / "atlas" / "atlas_dseg.nii.gz").write_bytes(b"")
    pd.DataFrame({"index": [1, 2], "name": ["a", "b"], "roi": ["V1", "MT"]}).to_csv(
        root / "atlas" / "atlas_dseg.tsv", sep="\t", index=False)
    cfg = study(tmp_path, {"fmri": {"source": "nifti", "root": str(root), "tr": 1.0},
                           "subjects": ["sub-01"], "rois": ["V1", "FFA"]})
    problems, _ = dataset_problems(cfg)
    text = "\n".join(problems)
    assert "rois: [FFA]" in text and "V1" in text and "MT" in text
    assert "for task(s) [movie02]" in text and len(problems) == 2


# ----------------------------------------------------------------- prepared
def test_prepared(tmp_path):
    root = tmp_path / "prep"
    root.mkdir()
    pd.DataFrame({"subject": ["sub-01"] * 3, "run": ["r1", "r2", "r3"],
                  "stimulus": ["m1", "m2", "m3"], "n_tr": [5, 5, 5],
                  "split": ["train", "train", "test"]}).to_csv(root / "runs.tsv", sep="\t",
                                                               index=False)
    pd.DataFrame({"parcel": [0, 1], "roi": ["early", "motion"], "label": ["p0", "p1"]}).to_csv(
        root / "parcels.tsv", sep="\t", index=False)
    (root / "stimuli").mkdir()
    for m in ("m1", "m2"):
        (root / "stimuli" / f"{m}.mkv").write_bytes(b"")
    cfg = study(tmp_path, {"fmri": {"source": "prepared", "root": str(root)},
                           "subjects": ["sub-01", "sub-07"], "rois": ["early", "scene"]})
    problems, _ = dataset_problems(cfg)
    text = "\n".join(problems)
    assert "subjects: [sub-07]" in text and "rois: [scene]" in text and "motion" in text
    assert "stimulus(es) [m3]" in text and len(problems) == 3
