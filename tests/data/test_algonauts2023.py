"""Algonauts 2023 release: ROI names from the release's mapping files (a restricted loader),
the challenge score and the submission files."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
from nsdrelease import MAPPINGS, write_release

from cortexscale.config import ConfigError, load_study
from cortexscale.data.nsd import UnsafeFileError, load_mapping, read_nsd_subject


class _System:
    """Pickles as a call of os.system (what a hostile mapping file would hold)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


# ----------------------------------------------------------------- mapping files
def test_mapping_saved_as_the_release_saves_it(tmp_path):
    path = tmp_path / "mapping_streams.npy"
    np.save(path, {0: "Unknown", 1: "early", 2: "midventral", 3: "midlateral"})
    assert load_mapping(path) == {0: "Unknown", 1: "early", 2: "midventral", 3: "midlateral"}


def test_mapping_with_numpy_integer_labels(tmp_path):
    path = tmp_path / "mapping_floc-faces.npy"
    np.save(path, {np.int64(0): "Unknown", np.int64(2): "FFA-1"})
    assert load_mapping(path) == {0: "Unknown", 2: "FFA-1"}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_mapping_any_pickle_protocol(tmp_path, protocol):
    from numpy.lib import format as npy_format

    path = tmp_path / "mapping_streams.npy"
    with path.open("wb") as fh:  # numpy's own header, then the pickle at that protocol
        npy_format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False,
                                               "shape": ()})
        pickle.dump(np.array({1: "early"}, dtype=object), fh, protocol=protocol)
    assert load_mapping(path) == {1: "early"}


def test_hostile_mapping_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "mapping_streams.npy"
    np.save(path, np.array(_System(f"touch {marker}"), dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError) as err:
        load_mapping(path)
    msg = str(err.value)
    assert str(path) in msg and "system" in msg and "Nothing in the file was run" in msg
    assert not marker.exists()


def test_hostile_mapping_in_a_release_stops_the_reader(tmp_path):
    sub = write_release(tmp_path)
    marker = tmp_path / "executed"
    np.save(sub / "roi_masks" / "mapping_floc-faces.npy",
            np.array({1: _System(f"touch {marker}")}, dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match=r"mapping_floc-faces\.npy.*system"):
        read_nsd_subject(sub)
    assert not marker.exists()


def test_raw_pickle_without_npy_header_is_refused(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "mapping_streams.npy"
    path.write_bytes(pickle.dumps(_System(f"touch {marker}")))
    with pytest.raises(ValueError, match=r"mapping_streams\.npy: not a readable \.npy file"):
        load_mapping(path)
    assert not marker.exists()


@pytest.mark.parametrize("obj, expected", [
    (np.arange(3), r"expected a 0-d object array holding a dict.*int64 \(3,\)"),
    (np.array(["early", "ventral"], dtype=object), r"0-d object array.*object \(2,\)"),
    (np.array(None), r"expected a dict of int labels to ROI names, found NoneType"),
])
def test_mapping_of_another_content_is_an_error(tmp_path, obj, expected):
    path = tmp_path / "mapping_streams.npy"
    np.save(path, obj, allow_pickle=True)
    with pytest.raises(ValueError, match=expected):
        load_mapping(path)


@pytest.mark.parametrize("mapping, expected", [
    ({"1": "early"}, r"label '1' is not an integer"),
    ({1: 7}, r"label 1 names 7, not a string"),
    ({True: "early"}, r"label True is not an integer"),
])
def test_mapping_with_bad_keys_or_names(tmp_path, mapping, expected):
    path = tmp_path / "mapping_streams.npy"
    np.save(path, mapping)
    with pytest.raises(ValueError, match=expected):
        load_mapping(path)


# ----------------------------------------------------------------- ROI names
def test_roi_names_as_the_release_spells_them(tmp_path):
    sub = read_nsd_subject(write_release(tmp_path))
    names = {n for names in MAPPINGS.values() for n in names}
    assert set(sub.rois) == names
    assert {"V1v", "FFA-1", "mTL-bodies", "early", "midventral"} <= set(sub.rois)
    # label 2 of streams ('midventral'): every vertex with that label, in both hemispheres
    labels = np.load(tmp_path / "subj01" / "roi_masks" / "lh.streams_challenge_space.npy")
    assert np.array_equal(sub.rois["midventral"]["lh"], labels == 2)
    assert sub.rois["midventral"]["rh"].any()
    assert [p.name for p in sub.test_images][:2] == ["test-0001_nsd-00845.png",
                                                      "test-0002_nsd-00852.png"]


def test_json_mapping_overrides_the_release_file(tmp_path):
    sub_dir = write_release(tmp_path)
    (sub_dir / "roi_masks" / "mapping_streams.json").write_text(
        json.dumps({str(i + 1): f"stream{i + 1}" for i in range(7)}))
    sub = read_nsd_subject(sub_dir)
    assert "stream2" in sub.rois and "midventral" not in sub.rois and "FFA-1" in sub.rois


def test_labels_without_a_mapping_are_named_by_class(tmp_path):
    sub_dir = write_release(tmp_path)
    (sub_dir / "roi_masks" / "mapping_floc-places.npy").unlink()
    sub = read_nsd_subject(sub_dir)
    assert {"floc-places1", "floc-places2", "floc-places3"} <= set(sub.rois)
    assert "PPA" not in sub.rois


def test_matsuyama_study_names_the_release_streams(tmp_path):
    """The shipped study's ROIs are the release's stream names, valid in the schema."""
    from wfutils import REPO

    cfg = load_study(REPO / "config" / "studies" / "matsuyama2023.yaml")
    sub = read_nsd_subject(write_release(tmp_path))
    assert set(cfg["rois"]) <= set(sub.rois)


def test_release_roi_names_pass_the_schema(tmp_path):
    from wfutils import REPO, write_yaml

    study = write_yaml(tmp_path / "s.yaml", {"rois": ["FFA-1", "mTL-bodies", "V1v"]})
    assert load_study(study, REPO / "config" / "config.yaml")["rois"][0] == "FFA-1"
    bad = write_yaml(tmp_path / "b.yaml", {"rois": ["FFA 1"]})
    with pytest.raises(ConfigError, match="rois"):
        load_study(bad, REPO / "config" / "config.yaml")


# ----------------------------------------------------------------- challenge score, submission
def test_noise_ceiling_as_the_challenge_computes_it():
    from cortexscale.encoding.noise_ceiling import (
        noise_ceiling_challenge,
        noise_ceiling_nsd,
        repeat_norm_term,
    )

    # A = 2 images shown 3 times, B = 1 twice, C = 1 once
    assert repeat_norm_term(np.array([3, 3, 2, 1])) == pytest.approx((2 / 3 + 1 / 2 + 1) / 4)
    snr = np.array([0.5, 1.0, 0.0])
    term = (2 / 3 + 1 / 2 + 1) / 4
    assert np.allclose(noise_ceiling_challenge(snr, np.array([3, 3, 2, 1])),
                       100 * snr**2 / (snr**2 + term))
    assert np.allclose(noise_ceiling_challenge(snr, np.array([3, 3])), noise_ceiling_nsd(snr, 3))
    with pytest.raises(ValueError, match="ints >= 1"):
        repeat_norm_term(np.array([0, 3]))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    from cortexscale.data.nsd import write_synthetic_nsd
    from cortexscale.models.vision import build_tiny

    root = tmp_path_factory.mktemp("nsd")
    write_synthetic_nsd(root, ["subj01"], ["early", "object"], seed=0, n_images=40,
                        n_vertices=(6, 5), size=32, snr=4.0, n_test_images=7, ncsnr=True,
                        test_fmri=True)
    model = build_tiny("vit", root / "model", seed=0, hidden=16, layers=2, image_size=32)
    pre = {"pool_kernels": [1, 4], "batch_size": 8, "image_split": {"n_test": 12},
           "sample_size": {"n_points": 0}}
    enc = {"alphas": {"min": -1, "max": 3, "n": 5}, "cv_folds": 2, "n_permutations": 0}
    sections = json.dumps({"encoding": enc, "pretrained_models": pre, "seed": 0,
                           "subjects": ["subj01"]})
    from cortexscale.cli import main

    assert main(["pretrained-features", "--sections", sections, "--name", "vit", "--model",
                 str(model), "--nsd-root", str(root), "--out", str(root / "f.h5")]) == 0
    out = root / "enc"
    assert main(["pretrained-encode", "--sections", sections, "--name", "vit", "--features",
                 str(root / "f.h5"), "--subject", "subj01", "--rois", "early", "object",
                 "--nsd-root", str(root), "--out-dir", str(out), "--submission-dir",
                 str(root / "submission" / "subj01")]) == 0
    return root, out


def test_test_images_are_extracted(encoded):
    import h5py

    root, _ = encoded
    with h5py.File(root / "f.h5", "r") as f:
        names = [k for k in f["subj01"].keys() if k.startswith("layer")]
        assert names and all(f[f"subj01/test_split/{n}"].shape[0] == 7 for n in names)
        assert all(f[f"subj01/{n}"].shape[0] == 40 for n in names)


def test_challenge_score_beside_r(encoded):
    import h5py
    import pandas as pd

    from cortexscale.stages.pretrained import TSV_COLUMNS

    root, out = encoded
    t = pd.read_csv(out / "early.tsv", sep="\t")
    assert list(t.columns) == list(TSV_COLUMNS)
    with h5py.File(root / "truth" / "subj01.h5", "r") as f:
        truth = np.concatenate([f["noise_ceiling_lh"][()], f["noise_ceiling_rh"][()]])
    # every held-out image shown once: NC = ncsnr^2 / (ncsnr^2 + 1) = the true r ceiling^2
    assert np.allclose(t["noise_ceiling"], 100 * truth[t["parcel"]] ** 2)
    expected = np.minimum(100, 100 * np.maximum(t["r"], 0) ** 2 / (t["noise_ceiling"] / 100))
    assert np.allclose(t["score_normalised"], expected)
    side = json.loads((out / "early.json").read_text())
    assert side["mean_normalised"] == pytest.approx(t["score_normalised"].mean())
    assert side["median_normalised"] == pytest.approx(t["score_normalised"].median())
    assert side["mean_noise_ceiling"] == pytest.approx(t["noise_ceiling"].mean())
    # the release's test images, scored with the organisers' noise ceiling
    assert np.isfinite(t["test_split_r"]).all() and np.isfinite(t["test_split_score"]).all()
    assert side["test_split"]["n_images"] == 7
    assert side["test_split"]["mean_normalised"] == pytest.approx(t["test_split_score"].mean())


def test_submission_layout(encoded):
    import pandas as pd

    from cortexscale.encoding.metrics import pearson_r

    root, out = encoded
    sub = root / "submission" / "subj01"
    lh, rh = np.load(sub / "lh_pred_test.npy"), np.load(sub / "rh_pred_test.npy")
    assert lh.dtype == rh.dtype == np.float32 and lh.shape == (7, 6) and rh.shape == (7, 5)
    assert np.isfinite(lh).all() and np.isfinite(rh).all()
    # rows in sorted test-image order: r of the submission on test_fmri is the table's
    test_dir = root / "subj01" / "test_split" / "test_fmri"
    y = np.concatenate([np.load(test_dir / "lh_test_fmri.npy"),
                        np.load(test_dir / "rh_test_fmri.npy")], axis=1)
    pred = np.concatenate([lh, rh], axis=1).astype(np.float64)
    t = pd.concat([pd.read_csv(out / f"{r}.tsv", sep="\t") for r in ("early", "object")])
    r = pearson_r(y[:, t["parcel"]], pred[:, t["parcel"]])
    assert np.allclose(r, t["test_split_r"], atol=1e-4)


def test_workflow_writes_submissions_when_the_release_has_test_images(tmp_path):
    from wfutils import run_snakemake, write_yaml

    write_release(tmp_path / "data")
    cfg = {"fmri": {"source": "algonauts2023", "root": str(tmp_path / "data")},
           "subjects": ["subj01"], "rois": ["early", "FFA-1"], "reference": {"enabled": False},
           "pretrained_models": {"only": True, "models": [{"name": "m", "build": "vit"}],
                                 "ensembles": [], "image_split": {"n_test": 5}}}
    res = run_snakemake(tmp_path, "-n", "--configfile", str(write_yaml(tmp_path / "s.yaml", cfg)))
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "submission/m/subj01/lh_pred_test.npy" in out and "--submission-dir" not in out
    assert "encoding/m/subj01/FFA-1.tsv" in out
