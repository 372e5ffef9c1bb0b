"""Bad data and damaged files as a user meets them: one case per kind (issue "Hardening").

Every case asserts the exit code (2 for an error through ``cortexscale.cli.main``), that the
message names the file, run or attribute, and that no partial output is left: no output file,
no temporary (``.NAME.XXXXXXXX*.tmp``) beside it. The config-side kinds (schema, YAML) are in
the config tests; these are the data, I/O and stage kinds. Everything is tiny and built here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from pretrainutils import CFG as PRETRAIN_CFG
from wfutils import BIN, load_default_config, tool_env

from cortexscale.cli import main
from cortexscale.data.algonauts2025 import write_synthetic_algonauts2025
from cortexscale.data.layout import write_dataset
from cortexscale.data.nsd import write_synthetic_nsd
from cortexscale.grid import GridPoint
from cortexscale.io.atomic import check_writable, stale_temporaries
from cortexscale.io.checkpoint import load_checkpoint
from cortexscale.io.video import write_video
from cortexscale.logs import setup as setup_logging
from cortexscale.models.vision import build_tiny
from cortexscale.stages.pretrain import pretrain

SMALL = {"tr": 1.0, "n_runs": 3, "repeated_runs": 1, "trs_per_run": 40, "n_parcels": 8,
         "snr": [1.0], "ar1": 0.3}
CORPUS = {"fps": 8, "time_stride": 1, "clip_len": 4, "height": 8, "width": 8}
PRE = {"pool_kernels": [1, 4], "batch_size": 7, "image_split": {"n_test": 12},
       "sample_size": {"n_points": 3, "min": 8}}
# pretraining inputs exactly as test_pretrain builds them (its `corpus` fixture follows the
# corpus format), with a few steps
PRETRAIN = {**PRETRAIN_CFG, "steps": 6, "eval_every": 3}


# ----------------------------------------------------------------------------- helpers
def cli(capsys, *argv: object) -> tuple[int, str]:
    """Run the CLI; return its exit code and stderr."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def error_line(err: str) -> str:
    """The CLI's error line (exactly one; no traceback)."""
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def assert_nothing_left(*outputs) -> None:
    """No output and no temporary of it beside it."""
    for out in outputs:
        assert not os.path.lexists(out), f"{out} was left behind"
        assert not stale_temporaries(out), stale_temporaries(out)


def fmri_sections(source: str, root, subjects=("sub-01",)) -> str:
    return json.dumps({"fmri": {"source": source, "root": str(root), "tr": 1.0},
                       "subjects": list(subjects)})


def corpus_sections(**source) -> str:
    grid = {**load_default_config()["grid"], "data_sizes": [16]}
    return json.dumps({"corpus": {**CORPUS, **source}, "grid": grid, "seed": 0,
                       "pretrain": {"eval_clips": 2}})


def replace_dataset(path, key, data) -> None:
    with h5py.File(path, "a") as f:
        del f[key]
        f.create_dataset(key, data=data)


# ----------------------------------------------------------------------------- worlds
@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A tiny Algonauts 2025 release: sub-01, 4 runs of (40, 8), movies at 4 fps."""
    root = tmp_path_factory.mktemp("bad_a25") / "release"
    write_synthetic_algonauts2025(root, SMALL, ["sub-01"], ["early", "object"], seed=2,
                                  fps=4, height=8, width=8)
    return root


@pytest.fixture
def a25(release, tmp_path):
    """A private copy: (root, the subject's HDF5 file, its sorted keys)."""
    root = tmp_path / "release"
    shutil.copytree(release, root)
    h5 = next((root / "fmri" / "sub-01" / "func").glob("*.h5"))
    with h5py.File(h5, "r") as f:
        keys = sorted(f.keys())
    return root, h5, keys


@pytest.fixture(scope="module")
def internal(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("bad_internal") / "fmri"
    assert main(["fmri-import", "--sections", fmri_sections("algonauts2025", release),
                 "--out-dir", str(out)]) == 0
    return out


@pytest.fixture
def prepared(internal, tmp_path):
    """A private copy of the internal layout (stimuli are links to the release)."""
    root = tmp_path / "fmri"
    shutil.copytree(internal, root, symlinks=True)
    return root


def import_a25(capsys, root, out):
    return cli(capsys, "fmri-import", "--sections", fmri_sections("algonauts2025", root),
               "--out-dir", out)


def a25_refused(capsys, root, out) -> str:
    """Import the Algonauts 2025 release at ``root``: it must fail with exit code 2 and leave
    nothing at ``out``; the error line."""
    code, err = import_a25(capsys, root, out)
    assert code == 2, err
    assert_nothing_left(out)
    return error_line(err)


def fmri_check(capsys, root, out):
    sections = json.dumps({"subjects": ["sub-01"], "rois": ["early"]})
    return cli(capsys, "fmri-check", "--sections", sections, "--fmri-root", root, "--out", out)


@pytest.fixture(autouse=True)
def _keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


POINT = GridPoint(32, 8, 1, 1, "fp32")


# ===================================================== 1. fMRI runs: silent data loss
@pytest.mark.parametrize(("kind", "fill", "found"), [
    ("all_nan", np.nan, r"every value is NaN/inf \(320 NaN and 0 inf"),
    ("all_inf", np.inf, r"every value is NaN/inf \(0 NaN and 320 inf"),
    ("all_zero", 0.0, r"8 of 8 parcels constant"),
    ("nan_tr", "row", r"TR\(s\) \[5\] NaN/inf in every parcel"),
])
def test_unusable_run_is_an_error_naming_file_and_run(capsys, a25, tmp_path, kind, fill, found):
    root, h5, keys = a25
    victim = keys[1]
    with h5py.File(h5, "r") as f:
        y = f[victim][()]
    if fill == "row":
        y[5] = np.nan
    else:
        y[:] = fill
    replace_dataset(h5, victim, y)
    line = a25_refused(capsys, root, tmp_path / "fmri")
    assert f"{h5}['{victim}']" in line and f"run '{victim}' of sub-01 is unusable" in line
    assert pd.Series([line]).str.contains(found).all(), line


def test_partially_nan_parcel_is_reported_and_only_it_excluded(capsys, a25, tmp_path):
    """The documented behaviour: the parcel is zeroed in every run and listed; the others
    keep their values."""
    root, h5, keys = a25
    with h5py.File(h5, "r") as f:
        src = {k: f[k][()] for k in keys}
    y = src[keys[0]].copy()
    y[3:9, 2] = np.nan
    replace_dataset(h5, keys[0], y)
    code, err = import_a25(capsys, root, tmp_path / "fmri")
    assert code == 0, err
    assert "1 parcel(s) with NaN/inf [2]" in err
    report = json.loads((tmp_path / "fmri" / "import.json").read_text())
    assert report["bad_parcels"]["sub-01"] == {"nonfinite": [2], "constant": []}
    with h5py.File(tmp_path / "fmri" / "sub-01.h5", "r") as f:
        for k in keys:
            keep = np.arange(8) != 2
            np.testing.assert_array_equal(f[k][()][:, keep], src[k][:, keep])
            assert not f[k][()][:, 2].any()


@pytest.mark.parametrize("with_table", [True, False], ids=["parcels_tsv", "majority"])
@pytest.mark.parametrize("which", [0, 2], ids=["first_run", "later_run"])
def test_transposed_run_names_that_run(capsys, a25, tmp_path, with_table, which):
    root, h5, keys = a25
    if not with_table:
        (root / "parcels.tsv").unlink()
    with h5py.File(h5, "r") as f:
        y = f[keys[which]][()]
    replace_dataset(h5, keys[which], y.T)  # (parcels, TRs)
    line = a25_refused(capsys, root, tmp_path / "fmri")
    assert (f"{h5}['{keys[which]}']: expected (n_TR, n_parcels) = (n_TR, 8), found (8, 40) "
            "(transposed?") in line
    assert all(k not in line for k in keys if k != keys[which]), line  # no other run blamed


def test_integer_run_is_an_error(capsys, a25, tmp_path):
    root, h5, keys = a25
    replace_dataset(h5, keys[1], np.zeros((40, 8), np.int32))
    line = a25_refused(capsys, root, tmp_path / "fmri")
    assert f"['{keys[1]}']: expected float (n_TR, n_parcels), found int32" in line


def test_bad_key_name_is_an_error(capsys, a25, tmp_path):
    root, h5, keys = a25
    with h5py.File(h5, "a") as f:
        f.move(keys[0], "run1")
    line = a25_refused(capsys, root, tmp_path / "fmri")
    assert f"{h5}: key 'run1' does not look like ses-NNN_task-NAME" in line


def test_missing_movie_is_an_error(capsys, a25, tmp_path):
    root, _, _ = a25
    (root / "stimuli" / "movies" / "synthetic" / "movie02.mkv").unlink()
    line = a25_refused(capsys, root, tmp_path / "fmri")
    assert "expected one movie named movie02.mkv" in line


def test_truncated_subject_file_is_an_error(capsys, a25, tmp_path):
    root, h5, _ = a25
    h5.write_bytes(h5.read_bytes()[:3000])
    line = a25_refused(capsys, root, tmp_path / "fmri")
    assert f"{h5} is not a readable HDF5 file (truncated or corrupt? 3000 bytes)" in line


def test_truncated_stimulus_movie_is_an_error(capsys, a25, tmp_path):
    root, _, _ = a25
    movie = root / "stimuli" / "movies" / "synthetic" / "movie01.mkv"
    data = movie.read_bytes()
    movie.write_bytes(data[: len(data) // 4])
    line = a25_refused(capsys, root, tmp_path / "fmri")
    assert f"video file {movie} is shorter than its container states" in line
    assert "promises 160 frames" in line


def test_prepared_run_with_nan_fails_fmri_check(capsys, prepared, tmp_path):
    run = "ses-001_task-movie01"
    with h5py.File(prepared / "sub-01.h5", "a") as f:
        y = f[run][()]
        y[0, :3] = np.nan
        f[run][...] = y
    code, err = fmri_check(capsys, prepared, tmp_path / "check.json")
    assert code == 2
    assert f"sub-01.h5['{run}'] holds 3 NaN/inf value(s)" in error_line(err)
    assert_nothing_left(tmp_path / "check.json")


def test_prepared_transposed_run_names_that_run(capsys, prepared, tmp_path):
    runs = pd.read_csv(prepared / "runs.tsv", sep="\t")
    victim = runs["run"].iloc[2]
    with h5py.File(prepared / "sub-01.h5", "r") as f:
        y = f[victim][()]
    replace_dataset(prepared / "sub-01.h5", victim, y.T)
    code, err = fmri_check(capsys, prepared, tmp_path / "check.json")
    assert code == 2
    line = error_line(err)
    assert (f"sub-01.h5['{victim}'] has shape (8, 40) (transposed?); expected (n_TR, n_parcels) "
            "= (40, 8)") in line
    assert_nothing_left(tmp_path / "check.json")


@pytest.mark.parametrize(("change", "found"), [
    (lambda df: df.drop(columns="split"), r"runs.tsv lacks column\(s\) \['split'\]"),
    (lambda df: df.assign(n_tr=df["n_tr"] + 0.5), r"runs.tsv: column 'n_tr' must hold positive"),
    (lambda df: pd.concat([df, df.iloc[:1]]), r"runs.tsv: \(subject, run\) pairs must be unique"),
], ids=["missing_column", "fractional_n_tr", "duplicate_run"])
def test_prepared_bad_run_table(capsys, prepared, tmp_path, change, found):
    path = prepared / "runs.tsv"
    change(pd.read_csv(path, sep="\t")).to_csv(path, sep="\t", index=False)
    code, err = fmri_check(capsys, prepared, tmp_path / "check.json")
    assert code == 2
    assert pd.Series([error_line(err)]).str.contains(found).all(), err
    assert_nothing_left(tmp_path / "check.json")


def test_all_nan_run_of_any_importer_is_an_error(tmp_path):
    """write_dataset is the path of the NIfTI importer too: the source is named."""
    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"subject": ["sub-01"] * 2, "run": ["task-a", "task-b"],
                         "stimulus": ["a", "b"], "n_tr": [10, 10], "split": ["train", "test"],
                         "source": ["/data/sub-01_task-a_bold.nii.gz",
                                    "/data/sub-01_task-b_bold.nii.gz"]})
    parcels = pd.DataFrame({"parcel": range(4), "roi": "all", "label": list("abcd")})
    arrays = {"task-a": rng.standard_normal((10, 4)), "task-b": np.full((10, 4), np.nan)}
    with pytest.raises(ValueError, match=r"^/data/sub-01_task-b_bold\.nii\.gz: run 'task-b' of "
                       r"sub-01 is unusable: every value is NaN/inf"):
        write_dataset(tmp_path / "fmri", runs, parcels, 1.0, iter([("sub-01", arrays)]), {},
                      {"source": "nifti"})
    assert_nothing_left(tmp_path / "fmri")


def test_nsd_image_row_all_nan_is_an_error(capsys, tmp_path, nsd_world):
    nsd_root, model = nsd_world
    path = nsd_root / "subj01" / "training_split" / "training_fmri" / "lh_training_fmri.npy"
    y = np.load(path)
    y[3] = np.nan
    np.save(path, y)
    code, err = pretrained_features(capsys, nsd_root, model, tmp_path / "f.h5")
    assert code == 2
    assert f"{path}: row(s) [3]" in error_line(err) and "NaN/inf in every vertex" in err
    assert_nothing_left(tmp_path / "f.h5")


def test_fmri_import_refuses_an_image_dataset_before_reading_it(capsys, tmp_path):
    # algonauts2023 goes through the pretrained-model path; its folder is not even looked at
    code, err = cli(capsys, "fmri-import", "--sections",
                    fmri_sections("algonauts2023", tmp_path / "absent", ["subj01"]),
                    "--out-dir", tmp_path / "out")
    assert code == 2
    line = error_line(err)
    assert "fmri.source: fmri-import expected one of ['algonauts2025', 'nifti'], found " \
        "'algonauts2023'" in line and "pretrained-model path" in line
    assert_nothing_left(tmp_path / "out")


# ===================================================== 2. pretraining sources
@pytest.fixture(scope="module")
def truncated_video(tmp_path_factory):
    """A 894-frame, 30 fps FFV1 video cut after about 21 frames' worth of bytes."""
    root = tmp_path_factory.mktemp("video")
    frames = np.random.default_rng(0).integers(0, 256, (894, 16, 16, 3), np.uint8)
    write_video(root / "full.mkv", frames, 30)
    data = (root / "full.mkv").read_bytes()
    return data[: len(data) * 21 // 894 + 2000]


def build(capsys, out, **source):
    return cli(capsys, "corpus", "--sections", corpus_sections(**source), "--out", out)


def test_truncated_corpus_video_is_an_error(capsys, tmp_path, truncated_video):
    videos = tmp_path / "videos"
    write_video(videos / "a.mkv", np.zeros((24, 16, 16, 3), np.uint8), 24)
    (videos / "b.mkv").write_bytes(truncated_video)
    code, err = build(capsys, tmp_path / "c.h5", source="video_dir", path=str(videos))
    assert code == 2
    line = error_line(err)
    assert f"video file {videos / 'b.mkv'} is shorter than its container states" in line
    assert "promises 894 frames, 22 decoded" in line
    assert_nothing_left(tmp_path / "c.h5")


def test_undecodable_corpus_video_is_an_error(capsys, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "x.mp4").write_bytes(b"not a video" * 50)
    code, err = build(capsys, tmp_path / "c.h5", source="video_dir", path=str(videos))
    assert code == 2
    assert f"video file {videos / 'x.mp4'}" in error_line(err)
    assert_nothing_left(tmp_path / "c.h5")


def test_empty_video_folder_is_an_error(capsys, tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "notes.txt").write_text("no videos here")
    code, err = build(capsys, tmp_path / "c.h5", source="video_dir",
                      path=str(tmp_path / "videos"))
    assert code == 2
    assert f"{tmp_path / 'videos'} holds no video file" in error_line(err)
    assert_nothing_left(tmp_path / "c.h5")


@pytest.mark.parametrize(("owner", "value"), [
    ("dataset", 0.0), ("file", 0), ("dataset", float("nan")), ("dataset", -2.0),
    ("dataset", "fast"),
], ids=["zero", "zero_file_attr", "nan", "negative", "text"])
def test_frames_h5_bad_fps_attribute(capsys, tmp_path, owner, value):
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f["ep1"] = np.zeros((16, 8, 8, 3), np.uint8)
        (f["ep1"] if owner == "dataset" else f).attrs["fps"] = value
    code, err = build(capsys, tmp_path / "c.h5", source="frames_h5", path=str(path))
    assert code == 2
    line = error_line(err)
    where = f"{path}['ep1'] attribute fps" if owner == "dataset" else f"{path} (file) attribute fps"
    assert where in line and "expected a positive finite frame rate" in line, line
    assert_nothing_left(tmp_path / "c.h5")


@pytest.mark.parametrize(("data", "found"), [
    (np.zeros((16, 8, 8, 3), np.float32), "found float32 (16, 8, 8, 3)"),
    (np.zeros((16, 8, 8), np.uint8), "found uint8 (16, 8, 8)"),
    (np.zeros((16, 3, 8, 3), np.uint8), "could be channels-first or channels-last"),
], ids=["float", "three_dims", "ambiguous_layout"])
def test_frames_h5_bad_dataset(capsys, tmp_path, data, found):
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f["ep1"] = data
    code, err = build(capsys, tmp_path / "c.h5", source="frames_h5", path=str(path))
    assert code == 2
    assert f"{path}['ep1']" in error_line(err) and found in err
    assert_nothing_left(tmp_path / "c.h5")


def test_frames_h5_truncated(capsys, tmp_path):
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f["ep1"] = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3), np.uint8)
    path.write_bytes(path.read_bytes()[:4000])
    code, err = build(capsys, tmp_path / "c.h5", source="frames_h5", path=str(path))
    assert code == 2
    assert f"{path} is not a readable HDF5 file (truncated or corrupt?" in error_line(err)
    assert_nothing_left(tmp_path / "c.h5")


# ===================================================== 3. checkpoints and model weights
class _Evil:
    """Unpickling this runs a shell command: what weights_only=True must refuse."""

    def __init__(self, mark):
        self.mark = str(mark)

    def __reduce__(self):
        return (os.system, (f"touch {self.mark}",))


def test_pickled_checkpoint_is_refused_not_called_truncated(corpus, tmp_path):  # noqa: F811 (fixture)
    """A checkpoint.pt that pickles objects: pretrain's resume refuses it, nothing runs."""
    tokens, frames = corpus
    out = tmp_path / "run"
    out.mkdir()
    mark = tmp_path / "PWNED"
    torch.save({"model": _Evil(mark)}, out / "checkpoint.pt")
    with pytest.raises(ValueError) as info:
        pretrain(tokens, frames, POINT, "corpus", PRETRAIN, out, seed=0)
    msg = str(info.value)
    assert msg.startswith(f"{out / 'checkpoint.pt'}: expected the checkpoint of an interrupted")
    assert "refused: it holds pickled objects other than tensors (posix.system)" in msg
    assert "truncated" not in msg and "weights_only` set to `False`" not in msg
    assert not mark.exists()
    assert_nothing_left(out / "model.pt", out / "summary.json")


@pytest.mark.parametrize("cut", ["zip", "legacy"])
def test_truncated_checkpoint_is_called_truncated(tmp_path, cut):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1000)}, path, _use_new_zipfile_serialization=cut == "zip")
    data = path.read_bytes()
    path.write_bytes(data[: 30 if cut == "legacy" else len(data) // 2])
    with pytest.raises(ValueError, match=rf"^{path} is not a readable torch checkpoint "
                       r"\(truncated or corrupt\? \d+ bytes\); expected a GPT model\.pt"):
        load_checkpoint(path, "a GPT model.pt")


@pytest.fixture
def nsd_world(tmp_path):
    write_synthetic_nsd(tmp_path / "nsd", ["subj01"], ["early", "object"], seed=0,
                        n_images=24, n_vertices=(12, 10), size=16)
    model = build_tiny("vit", tmp_path / "vit", seed=0, hidden=16, layers=1, image_size=32)
    return tmp_path / "nsd", model


def pretrained_features(capsys, nsd_root, model, out):
    sections = json.dumps({"pretrained_models": PRE, "subjects": ["subj01"]})
    return cli(capsys, "pretrained-features", "--sections", sections, "--name", "m",
               "--model", model, "--nsd-root", nsd_root, "--out", out)


def test_malicious_hf_bin_is_refused_in_one_line(capsys, tmp_path, nsd_world):
    nsd_root, model = nsd_world
    (model / "model.safetensors").unlink()
    mark = tmp_path / "PWNED"
    torch.save({"w": _Evil(mark)}, model / "pytorch_model.bin")
    code, err = pretrained_features(capsys, nsd_root, model, tmp_path / "f.h5")
    assert code == 2
    line = error_line(err)
    assert f"{model / 'pytorch_model.bin'} (" in line
    assert "refused: it holds pickled objects other than tensors (posix.system)" in line
    assert "only safetensors or weights-only" in line and "UnpicklingError" not in err
    assert not mark.exists()
    assert_nothing_left(tmp_path / "f.h5")


def test_truncated_safetensors_names_the_file(capsys, tmp_path, nsd_world):
    nsd_root, model = nsd_world
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    code, err = pretrained_features(capsys, nsd_root, model, tmp_path / "f.h5")
    assert code == 2
    assert f"{weights} (5000 bytes): model weights are not readable (truncated or corrupt?)" \
        in error_line(err)
    assert_nothing_left(tmp_path / "f.h5")


# ===================================================== 4. leftovers and output folders
def test_stale_checkpoint_temporaries_are_removed_by_the_next_run(corpus, tmp_path, capsys):  # noqa: F811 (fixture)
    tokens, frames = corpus
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".checkpoint.pt.k3j9x_2a.pt.tmp", out / ".model.pt.abcdefgh.pt.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")  # what SIGKILL during torch.save leaves
    other = out / ".notes.txt.abcdefgh.txt.tmp"  # not an output of pretrain: kept
    other.write_text("x")
    setup_logging("pretrain")  # the removals are logged, as the CLI sets logging up
    pretrain(tokens, frames, POINT, "corpus", PRETRAIN, out, seed=0)
    assert not any(p.exists() for p in stale)
    assert other.exists()
    assert (out / "model.pt").is_file() and (out / "summary.json").is_file()
    assert f"removed {stale[0]}: a temporary of checkpoint.pt" in capsys.readouterr().err


def test_stale_import_folder_is_removed_by_the_next_import(capsys, release, tmp_path):
    stale = tmp_path / ".fmri.abcd_123.tmp"
    (stale / "stimuli").mkdir(parents=True)
    (stale / "sub-01.h5").write_bytes(b"partial")
    code, err = import_a25(capsys, release, tmp_path / "fmri")
    assert code == 0, err
    assert not stale.exists() and (tmp_path / "fmri" / "runs.tsv").is_file()
    assert not list(tmp_path.glob(".fmri.*"))


def test_stale_corpus_temporary_is_removed(capsys, tmp_path):
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f["ep1"] = np.zeros((32, 8, 8, 3), np.uint8)
    stale = tmp_path / ".c.h5.q1w2e3r4.h5.tmp"
    stale.write_bytes(b"partial")
    code, err = build(capsys, tmp_path / "c.h5", source="frames_h5", path=str(path))
    assert code == 0, err
    assert not stale.exists() and (tmp_path / "c.h5").is_file()


def _unwritable_out(tmp_path):
    """An output folder that cannot be created: a file is in the way."""
    (tmp_path / "blocked").write_text("a file, not a folder")
    return tmp_path / "blocked" / "out"


@pytest.mark.parametrize("stage", ["corpus", "fmri-import", "fmri-check", "tokenizer",
                                   "pretrain", "pretrained-features", "aggregate"])
def test_unwritable_output_folder_fails_before_any_work(capsys, tmp_path, corpus, release,  # noqa: F811 (fixture)
                                                       stage):
    out = _unwritable_out(tmp_path)
    cfg = load_default_config()
    tokens, frames = corpus
    argv = {
        "corpus": ["corpus", "--sections", corpus_sections(source="synthetic"),
                   "--out", out / "c.h5"],
        "fmri-import": ["fmri-import", "--sections", fmri_sections("algonauts2025", release),
                        "--out-dir", out / "fmri"],
        "fmri-check": ["fmri-check", "--sections",
                       json.dumps({"subjects": ["sub-01"], "rois": ["early"]}),
                       "--fmri-root", release, "--out", out / "check.json"],
        "aggregate": ["aggregate", "--encoding", tmp_path / "e.json", "--summaries",
                      tmp_path / "s.json", "--out", out / "encoding.tsv", "--figures",
                      out / "a.png"],
        "tokenizer": ["tokenizer", "--sections",
                      json.dumps({"tokenizer": cfg["tokenizer"], "seed": 0}),
                      "--frames", frames, "--checkpoint", out / "vqvae.pt",
                      "--tokens", out / "tokens.h5", "--summary", out / "summary.json"],
        "pretrain": ["pretrain", "--sections",
                     json.dumps({"pretrain": cfg["pretrain"], "corpus": cfg["corpus"],
                                 "seed": 0}),
                     "--grid", POINT.name, "--tokens", tokens, "--frames", frames,
                     "--out-dir", out],
        "pretrained-features": ["pretrained-features", "--sections",
                                json.dumps({"pretrained_models": PRE, "subjects": ["s"]}),
                                "--name", "m", "--model", tmp_path / "no-model",
                                "--nsd-root", tmp_path, "--out", out / "f.h5"],
    }[stage]
    code, err = cli(capsys, *argv)
    assert code == 2
    line = error_line(err)
    assert f"output folder {out}" in line and "is not writable" in line, line
    assert f"a file is in the way: {tmp_path / 'blocked'}" in line
    assert f"{POINT.name}: " not in err and "corpus: source" not in err  # no work began


def test_pretrain_checks_its_folder_before_training(corpus, tmp_path):  # noqa: F811 (fixture)
    tokens, frames = corpus
    steps = []
    with pytest.raises(PermissionError, match=r"output folder .*blocked/out is not writable"):
        pretrain(tokens, frames, POINT, "corpus", PRETRAIN, _unwritable_out(tmp_path), seed=0,
                 on_step=steps.append)
    assert steps == []


def test_read_only_mount_is_refused_before_the_stage_works(tmp_path):
    """A real read-only file system (a private bind mount; root passes every permission
    check, so chmod would not do), and the corpus stage on it."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        with pytest.raises(PermissionError, match=rf"output folder {folder}/x is not writable"):
            check_writable(folder / "x")
        return
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not available for a private read-only mount")
    cmd = [str(BIN / "cortexscale"), "corpus", "--sections", corpus_sections(source="synthetic"),
           "--out", str(folder / "c.h5")]
    script = 'mount --bind -o ro "$0" "$0" || exit 99; exec "$@"'
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, str(folder), *cmd],
                          capture_output=True, text=True, env=tool_env(), timeout=120,
                          check=False)
    if proc.returncode == 99:
        pytest.skip(f"no private mounts here: {proc.stderr.strip()}")
    assert proc.returncode == 2, proc.stderr
    assert f"output folder {folder} is not writable (Read-only file system" in proc.stderr
    assert "corpus: source" not in proc.stderr
    assert_nothing_left(folder / "c.h5")
