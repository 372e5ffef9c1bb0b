"""Tests of cortexscale.data.corpus: clip cutting, nested subsets, orders, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cortexscale.data.corpus import (
    build_corpus,
    cut_clips,
    n_clips_for,
    read_subset,
    subset_order,
    write_corpus,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _sources(rng, lengths=(40, 24, 33), h=4, w=6):
    return [(f"src{i}", rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))
            for i, n in enumerate(lengths)]


def test_n_clips_for():
    assert n_clips_for(2048, 16, 1) == 128
    assert n_clips_for(2047, 16, 1) == 127
    assert n_clips_for(2048, 16, 2) == 64
    with pytest.raises(ValueError, match="clip_len"):
        n_clips_for(10, 0, 1)


def test_cut_clips_takes_every_stride_frame(rng):
    frames = rng.integers(0, 256, (21, 2, 2, 3), dtype=np.uint8)
    clips, start = cut_clips(frames, clip_len=3, time_stride=2)
    assert clips.shape == (3, 3, 2, 2, 3)  # 21 // 6 clips
    np.testing.assert_array_equal(start, [0, 6, 12])
    np.testing.assert_array_equal(clips[1], frames[6:12:2])


def test_stratified_order_is_round_robin():
    source = np.array([0] * 5 + [1] * 2 + [2] * 3)
    order = subset_order(source, "stratified", seed=0)
    assert sorted(order.tolist()) == list(range(10))
    np.testing.assert_array_equal(source[order], [0, 1, 2, 0, 1, 2, 0, 2, 0, 0])
    for s in range(3):  # time order within each source
        picked = order[source[order] == s]
        assert np.all(np.diff(picked) > 0)
    np.testing.assert_array_equal(subset_order(source, "corpus"), np.arange(10))
    with pytest.raises(ValueError, match="'random'"):
        subset_order(source, "random")


def test_write_corpus_layout_and_nesting(tmp_path, rng):
    sources = _sources(rng)
    path = tmp_path / "frames.h5"
    # clip_len 4, stride 2: 5 + 3 + 4 = 12 clips of 8 source frames
    write_corpus(path, sources, clip_len=4, time_stride=2, fps=15, data_sizes=[96, 16, 40])
    with h5py.File(path, "r") as f:
        assert f["clips"].shape == (12, 4, 4, 6, 3)
        assert f["clips"].dtype == np.uint8
        assert f["clips"].chunks == (1, 4, 4, 6, 3)
        assert f["clips"].compression == "gzip"
        assert f["source"].dtype == np.int32
        assert f["start_frame"].dtype == np.int64
        assert [s.decode() for s in f["sources"][()]] == ["src0", "src1", "src2"]
        assert f.attrs["clip_len"] == 4 and f.attrs["time_stride"] == 2
        assert (f.attrs["height"], f.attrs["width"]) == (4, 6)
        np.testing.assert_array_equal(f.attrs["data_sizes"], [16, 40, 96])
        assert "cortexscale_version" in f.attrs
        src, start = f["source"][()], f["start_frame"][()]
        for k in (0, 6, 11):
            frames = sources[src[k]][1]
            np.testing.assert_array_equal(f["clips"][k], frames[start[k]:start[k] + 8:2])
    for order in ("corpus", "stratified"):
        subsets = [read_subset(path, n, order) for n in (16, 40, 96)]
        assert [len(s) for s in subsets] == [2, 5, 12]
        for small, big in zip(subsets, subsets[1:], strict=False):
            np.testing.assert_array_equal(big[: len(small)], small)
        assert all(s.dtype == np.int64 for s in subsets)
    np.testing.assert_array_equal(src[read_subset(path, 40, "stratified")], [0, 1, 2, 0, 1])
    assert [p.name for p in tmp_path.iterdir()] == ["frames.h5"]


def test_size_too_large_names_both_numbers(tmp_path, rng):
    with pytest.raises(ValueError, match=r"data size 200 needs 25 clips.*only 12 clips"):
        write_corpus(tmp_path / "f.h5", _sources(rng), 4, 2, 15, data_sizes=[16, 200])
    assert not list(tmp_path.iterdir())


def test_size_too_large_from_a_generator(tmp_path, rng):
    with pytest.raises(ValueError, match=r"needs 25 clips.*only 12"):
        write_corpus(tmp_path / "f.h5", iter(_sources(rng)), 4, 2, 15, data_sizes=[200])
    assert not list(tmp_path.iterdir())


def test_mismatched_source_size(tmp_path, rng):
    sources = _sources(rng)
    sources.append(("odd", np.zeros((16, 5, 6, 3), np.uint8)))
    with pytest.raises(ValueError, match="'odd'"):
        write_corpus(tmp_path / "f.h5", sources, 4, 1, 15, data_sizes=[8])


def test_read_subset_errors(tmp_path, rng):
    path = tmp_path / "frames.h5"
    write_corpus(path, _sources(rng), 4, 2, 15, data_sizes=[16])
    with pytest.raises(KeyError, match=r"subsets/corpus/32.*\[16\]"):
        read_subset(path, 32, "corpus")
    with pytest.raises(ValueError, match="order"):
        read_subset(path, 16, "shuffled")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_subset(tmp_path / "missing.h5", 16, "corpus")


def test_build_corpus_synthetic(tmp_path, capsys):
    cfg = {"source": "synthetic", "n_sources": 3, "frames_per_source": 40, "fps": 15,
           "time_stride": 1, "clip_len": 8, "height": 8, "width": 8}
    path = tmp_path / "frames.h5"
    build_corpus(path, cfg, data_sizes=[16, 120], seed=1)
    assert "corpus: source 3/3" in capsys.readouterr().err
    with h5py.File(path, "r") as f:
        assert f["clips"].shape == (15, 8, 8, 8, 3)
        first = f["clips"][()]
    build_corpus(tmp_path / "again.h5", cfg, data_sizes=[16, 120], seed=1)
    with h5py.File(tmp_path / "again.h5", "r") as f:
        np.testing.assert_array_equal(f["clips"][()], first)  # deterministic from the seed
    with pytest.raises(ValueError, match=r"needs 16 clips.*only 15"):
        build_corpus(tmp_path / "x.h5", cfg, data_sizes=[128], seed=1)


@pytest.mark.parametrize("source", ["frames_h5", "video_dir"])
def test_build_corpus_real_sources_need_a_path(tmp_path, source):
    with pytest.raises(ValueError, match=f"corpus.path is required.*{source}"):
        build_corpus(tmp_path / "f.h5", {"source": source}, [16], 0)
    missing = {"source": source, "path": str(tmp_path / "nowhere")}
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_corpus(tmp_path / "f.h5", missing, [16], 0)
    assert not (tmp_path / "f.h5").exists()
