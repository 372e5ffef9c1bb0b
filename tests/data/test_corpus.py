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
    read_validation,
    subset_order,
    validation_clips,
    write_corpus,
)
from cortexscale.errors import InputError
from cortexscale.logs import setup as setup_logging


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
    with pytest.raises(InputError, match=r"subsets/corpus/32.*\[16\]"):
        read_subset(path, 32, "corpus")
    with pytest.raises(ValueError, match="order"):
        read_subset(path, 16, "shuffled")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_subset(tmp_path / "missing.h5", 16, "corpus")


def test_build_corpus_synthetic(tmp_path, capsys):
    cfg = {"source": "synthetic", "n_sources": 3, "frames_per_source": 40, "fps": 15,
           "time_stride": 1, "clip_len": 8, "height": 8, "width": 8}
    path = tmp_path / "frames.h5"
    setup_logging("corpus")  # progress lines on stderr, as the CLI sets them up
    build_corpus(path, cfg, data_sizes=[16, 120], seed=1)
    err = capsys.readouterr().err
    assert "cortexscale corpus: source 3/3, elapsed " in err and ", ETA " in err
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


def test_validation_clips_are_drawn_evenly_from_every_source():
    source = np.array([0] * 10 + [1] * 2 + [2] * 6)
    val = validation_clips(source, 7)
    assert np.all(np.diff(val) > 0) and val.dtype == np.int64
    # equal shares (3, 2, 2) but source 1 has only 2 clips: it gives both
    np.testing.assert_array_equal(np.bincount(source[val], minlength=3), [3, 2, 2])
    np.testing.assert_array_equal(val[source[val] == 0], [1, 5, 8])  # centres of 3 segments
    np.testing.assert_array_equal(validation_clips(source, 7), val)  # deterministic
    short = validation_clips(source, 15)  # source 1 runs out: the others make up for it
    np.testing.assert_array_equal(np.bincount(source[short], minlength=3), [7, 2, 6])
    assert validation_clips(source, 0).size == 0
    with pytest.raises(ValueError, match=r"expected 0 <= n < 18 .* found 18"):
        validation_clips(source, 18)


@pytest.mark.parametrize("order", ["corpus", "stratified"])
def test_validation_reserve_is_shared_and_disjoint_from_every_subset(tmp_path, rng, order):
    path = tmp_path / "frames.h5"
    # 5 + 3 + 4 = 12 clips; 3 validation clips (one per source) leave a pool of 9
    write_corpus(path, _sources(rng), 4, 2, 15, data_sizes=[16, 40, 72], eval_clips=3)
    val = read_validation(path)
    with h5py.File(path) as f:
        src = f["source"][()]
        assert f.attrs["eval_clips"] == 3
    np.testing.assert_array_equal(np.sort(src[val]), [0, 1, 2])
    pool = read_subset(path, 0, order)
    assert len(pool) == 9 and not np.intersect1d(pool, val).size
    assert sorted(np.concatenate([pool, val]).tolist()) == list(range(12))
    subsets = [read_subset(path, n, order) for n in (16, 40, 72)]
    assert [len(x) for x in subsets] == [2, 5, 9]
    for sub in subsets:  # nested prefixes of the pool, none holding a validation clip
        np.testing.assert_array_equal(pool[: len(sub)], sub)
        assert not np.intersect1d(sub, val).size
    np.testing.assert_array_equal(np.sort(subsets[-1]), np.sort(pool))  # largest = the pool
    # the reserve does not depend on the data sizes asked for
    write_corpus(tmp_path / "other.h5", _sources(np.random.default_rng(0)), 4, 2, 15,
                 data_sizes=[16], eval_clips=3)
    np.testing.assert_array_equal(read_validation(tmp_path / "other.h5"), val)


def test_a_data_size_that_leaves_no_room_for_validation_is_an_error(tmp_path, rng):
    # 12 clips: 96 frames (12 clips) fits the corpus but not the pool of 12 - 3 = 9
    with pytest.raises(ValueError, match=r"data size 96 needs 12 clips .* training pool holds "
                                         r"9: the corpus's 12 clips less the 3 validation"):
        write_corpus(tmp_path / "f.h5", _sources(rng), 4, 2, 15, data_sizes=[96],
                     eval_clips=3)
    with pytest.raises(ValueError, match=r"eval_clips = 12 validation clips leave no training"):
        write_corpus(tmp_path / "f.h5", _sources(rng), 4, 2, 15, data_sizes=[], eval_clips=12)
    assert not list(tmp_path.iterdir())


def test_an_old_corpus_without_a_reserve_names_the_fix(tmp_path, rng):
    path = tmp_path / "frames.h5"
    write_corpus(path, _sources(rng), 4, 2, 15, data_sizes=[16])
    with h5py.File(path, "a") as f:
        del f["validation"], f["pool"]
    with pytest.raises(InputError, match="no dataset 'validation'.*rebuild it"):
        read_validation(path)
    with pytest.raises(InputError, match="pool/corpus.*rebuild it"):
        read_subset(path, 0, "corpus")


def test_cli_corpus_takes_the_validation_clips_and_sizes(tmp_path):
    import json

    from cortexscale.cli import main

    corpus = {"source": "synthetic", "n_sources": 2, "frames_per_source": 32, "clip_len": 8,
              "height": 8, "width": 8}
    sections = json.dumps({"corpus": corpus, "seed": 0, "pretrain": {"eval_clips": 2}})
    out = tmp_path / "frames.h5"
    assert main(["corpus", "--sections", sections, "--data-sizes", "16", "48",
                 "--out", str(out)]) == 0
    assert len(read_validation(out)) == 2 and len(read_subset(out, 48, "stratified")) == 6
    isoflop = json.dumps({"corpus": corpus, "seed": 0, "pretrain": {"eval_clips": 2},
                          "grid": {"mode": "isoflop", "budgets": [1e9],
                                   "models": [{"hidden": 8, "layers": 1, "heads": 1}],
                                   "precision": ["fp32"]}})
    assert main(["corpus", "--sections", isoflop, "--out", str(tmp_path / "iso.h5")]) == 0
    with h5py.File(tmp_path / "iso.h5") as f:
        assert "subsets" not in f and len(f["pool/corpus"]) == 6
