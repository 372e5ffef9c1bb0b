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
