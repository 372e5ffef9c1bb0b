"""The pretraining corpus: clips cut from sources, with nested data-size subsets.

``frames.h5`` (see ``docs/formats.md``) holds non-overlapping clips of ``clip_len``
frames taken every ``time_stride``-th source frame, the source of each clip, one held-out
validation set, and for every data size (counted in source frames) the indices of the clips
of that subset in two orders: ``corpus`` (the order of the sources and of time within each)
and ``stratified`` (round robin over the sources, so that small subsets already see every
source).

The validation set (``eval_clips`` clips, :func:`validation_clips`) is reserved first, drawn
evenly from every source, so that it is the same for every data size and not confounded
with one source; the rest is the *training pool*. Subsets of one order are nested prefixes
of the pool in that order (``pool/{order}``), so the largest data size trains on all of
its clips and no subset ever holds a validation clip.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cortexscale.errors import ConfigError, InputError, MissingInputError
from cortexscale.io.atomic import atomic_path, prepare_outputs
from cortexscale.io.hdf5 import open_h5
from cortexscale.io.provenance import provenance
from cortexscale.logs import Progress, get_logger

__all__ = [
    "FRAMES_EXPECTED",
    "ORDERS",
    "build_corpus",
    "cut_clips",
    "n_clips_for",
    "read_subset",
    "read_validation",
    "subset_order",
    "validation_clips",
    "write_corpus",
]

#: What a frames.h5 is, for the errors of every stage that reads one.
FRAMES_EXPECTED = "the corpus frames.h5 (cortexscale corpus)"

ORDERS = ("corpus", "stratified")

log = get_logger(__name__)


def n_clips_for(data_size: int, clip_len: int, time_stride: int) -> int:
    """Number of clips in a subset of ``data_size`` source frames.

    Each clip spans ``clip_len * time_stride`` source frames, so the subset holds
    ``data_size // (clip_len * time_stride)`` non-overlapping clips.
    """
    if int(clip_len) < 1 or int(time_stride) < 1:
        raise ValueError(
            f"clip_len and time_stride: expected >= 1, found {clip_len} and {time_stride}"
        )
    if int(data_size) < 0:
        raise ValueError(f"data size: expected >= 0, found {data_size}")
    return int(data_size) // (int(clip_len) * int(time_stride))


def subset_order(source_ids: np.ndarray, order: str, seed: int = 0) -> np.ndarray:
    """The ordering of all clips from which every subset is a prefix.

    Parameters
    ----------
    source_ids : ndarray of int, shape (n_clips,)
        Source of each clip; clips of a source appear in time order.
    order : {"corpus", "stratified"}
        ``corpus``: clip index order. ``stratified``: round robin over the sources in
        increasing source id (first clip of every source, then the second, ...),
        skipping sources that have run out; within a source, time order.
    seed : int, optional
        Unused by both (deterministic) orders; kept so that randomised orders can be
        added without changing callers.

    Returns
    -------
    index : ndarray of int64, shape (n_clips,)
        A permutation of ``arange(n_clips)``.
    """
    del seed
    source_ids = np.asarray(source_ids)
    if source_ids.ndim != 1:
        raise ValueError(f"source_ids: expected a 1-D array, found shape {source_ids.shape}")
    n = len(source_ids)
    if order == "corpus":
        return np.arange(n, dtype=np.int64)
    if order != "stratified":
        raise ValueError(f"order: expected one of {list(ORDERS)}, found {order!r}")
    # rank of each clip within its source (clips of a source keep their relative order)
    by_source = np.argsort(source_ids, kind="stable")
    sorted_ids = source_ids[by_source]
    first = np.searchsorted(sorted_ids, sorted_ids, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[by_source] = np.arange(n) - first
    return np.lexsort((source_ids, rank)).astype(np.int64)


def validation_clips(source_ids: np.ndarray, n: int) -> np.ndarray:
    """The held-out validation clips: ``n`` clips drawn evenly from every source.

    Each source gives the same number of clips (``n // n_sources``; the first
    ``n % n_sources`` sources, in source-id order, one more), a source that has too few
    giving all it has and the others making up the difference; within a source the picks are
    evenly spaced in time (the centres of equal segments), so neither the start nor the end
    of an episode dominates. Deterministic: no seed.

    Parameters
    ----------
    source_ids : ndarray of int, shape (n_clips,)
        Source of each clip; clips of a source appear in time order.
    n : int
        Validation clips (``pretrain.eval_clips``), ``0 <= n < n_clips``: at least one clip
        must remain for training.

    Returns
    -------
    index : ndarray of int64, shape (n,)
        Sorted clip indices.
    """
    source_ids = np.asarray(source_ids)
    if source_ids.ndim != 1:
        raise ValueError(f"source_ids: expected a 1-D array, found shape {source_ids.shape}")
    if not 0 <= int(n) < len(source_ids):
        raise ConfigError(
            f"validation clips (pretrain.eval_clips): expected 0 <= n < {len(source_ids)} "
            f"(the corpus's clips, leaving at least one for training), found {n}"
        )
    ids, counts = np.unique(source_ids, return_counts=True)
    quota = np.zeros(len(ids), dtype=np.int64)
    remaining = int(n)
    while remaining > 0:  # equal shares, capped at each source's clips
        open_ = np.flatnonzero(counts - quota > 0)
        add = np.full(open_.size, remaining // open_.size, dtype=np.int64)
        add[: remaining % open_.size] += 1
        add = np.minimum(add, (counts - quota)[open_])
        quota[open_] += add
        remaining -= int(add.sum())
    picks = []
    for sid, m, q in zip(ids, counts, quota, strict=True):
        if q:
            members = np.flatnonzero(source_ids == sid)  # time order
            picks.append(members[((np.arange(q) + 0.5) * m / q).astype(np.int64)])
    return np.sort(np.concatenate(picks)).astype(np.int64) if picks else np.zeros(0, np.int64)


def cut_clips(frames: np.ndarray, clip_len: int, time_stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut non-overlapping clips from one source.

    Parameters
    ----------
    frames : ndarray of uint8, shape (n_frames, H, W, 3)
    clip_len, time_stride : int
        Clip ``k`` holds source frames ``k * clip_len * time_stride + j * time_stride``
        for ``j < clip_len``; a trailing partial clip is dropped.

    Returns
    -------
    clips : ndarray of uint8, shape (n_clips, clip_len, H, W, 3)
    start_frame : ndarray of int64, shape (n_clips,)
    """
    span = clip_len * time_stride
    n_clips = len(frames) // span
    kept = frames[: n_clips * span : time_stride]  # (n_clips * clip_len, H, W, 3)
    clips = kept.reshape(n_clips, clip_len, *frames.shape[1:])
    return clips, np.arange(n_clips, dtype=np.int64) * span


def _check_source(name: str, frames: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(
            f"source {name!r}: expected uint8 frames (n_frames, height, width, 3), "
            f"found {frames.dtype} {frames.shape}"
        )
    if shape is not None and frames.shape[1:] != shape:
        raise InputError(
            f"source {name!r}: frames have size {frames.shape[1:3]}, expected {shape[:2]} "
            "like the first source"
        )
    return frames


def _check_sizes(data_sizes: Sequence[int], n_clips: int, clip_len: int, time_stride: int,
                 where: str, eval_clips: int = 0) -> list[int]:
    sizes = sorted({int(s) for s in data_sizes})
    if any(s < 1 for s in sizes):
        raise ConfigError(f"data_sizes: expected positive integers, found {list(data_sizes)}")
    if not 0 <= eval_clips < n_clips:
        raise ConfigError(
            f"{where}: pretrain.eval_clips = {eval_clips} validation clips leave no training "
            f"clip in a corpus of {n_clips} clips; expected fewer than {n_clips}"
        )
    pool = n_clips - eval_clips
    for size in sizes:
        need = n_clips_for(size, clip_len, time_stride)
        if need > n_clips:
            raise ConfigError(
                f"{where}: data size {size} needs {need} clips of {clip_len} x stride "
                f"{time_stride} frames but the corpus has only {n_clips} clips"
            )
        if need > pool:
            raise ConfigError(
                f"{where}: data size {size} needs {need} clips of {clip_len} x stride "
                f"{time_stride} frames but the training pool holds {pool}: the corpus's "
                f"{n_clips} clips less the {eval_clips} validation clips "
                "(pretrain.eval_clips) reserved before the subsets are drawn"
            )
        if need == 0:
            raise ConfigError(
                f"{where}: data size {size} is smaller than one clip "
                f"({clip_len * time_stride} source frames)"
            )
    return sizes


def write_corpus(
    out_path: str | os.PathLike,
    clips_by_source: Iterable[tuple[str, np.ndarray]],
    clip_len: int,
    time_stride: int,
    fps: float,
    data_sizes: Sequence[int],
    seed: int = 0,
    cfg: Any = None,
    compression_level: int = 4,
    eval_clips: int = 0,
) -> None:
    """Cut clips from every source and write ``frames.h5``, atomically.

    Parameters
    ----------
    out_path : path-like
        The ``frames.h5`` to write.
    clips_by_source : iterable of (name, frames)
        Sources in order; ``frames`` is uint8 ``(n_frames, H, W, 3)``, the same size
        for every source. A generator keeps only one source in memory.
    clip_len, time_stride : int
        See :func:`cut_clips`.
    fps : float
        Source frame rate (stored as an attribute).
    data_sizes : sequence of int
        Subset sizes in source frames; each needs ``n_clips_for(size, ...)`` clips of the
        training pool (the corpus less the validation set). May be empty (isoflop studies
        train on the whole pool, ``pool/{order}``).
    seed : int, optional
        Recorded in the provenance and passed to :func:`subset_order`.
    cfg : JSON-serialisable, optional
        Config recorded (hashed) in the provenance.
    compression_level : int, optional
        gzip level of ``clips``.
    eval_clips : int, optional
        Validation clips (``pretrain.eval_clips``) reserved before the subsets are drawn
        (:func:`validation_clips`), stored as ``validation``.

    Raises
    ------
    ConfigError
        If a data size needs more clips than the training pool holds (the message names the
        size, the pool and the validation clips).
    """
    out_path = Path(out_path)
    clip_len, time_stride = int(clip_len), int(time_stride)
    n_clips_for(1, clip_len, time_stride)  # validates clip_len and time_stride
    if isinstance(clips_by_source, Sequence):  # fail before any work when we can
        total = sum(len(f) // (clip_len * time_stride) for _, f in clips_by_source)
        _check_sizes(data_sizes, total, clip_len, time_stride, str(out_path), eval_clips)
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as f:
        names, sources, starts, shape = _write_clips(
            f, clips_by_source, clip_len, time_stride, compression_level
        )
        sizes = _check_sizes(data_sizes, len(sources), clip_len, time_stride, str(out_path),
                             eval_clips)
        val = validation_clips(np.asarray(sources), eval_clips)
        f.create_dataset("validation", data=val)
        f.create_dataset("source", data=np.asarray(sources, dtype=np.int32))
        f.create_dataset("start_frame", data=np.asarray(starts, dtype=np.int64))
        f.create_dataset("sources", data=names, dtype=h5py.string_dtype("utf-8"))
        for order in ORDERS:
            index = subset_order(np.asarray(sources), order, seed)
            index = index[~np.isin(index, val)]  # the training pool, in this order
            f.create_dataset(f"pool/{order}", data=index)
            for size in sizes:
                n = n_clips_for(size, clip_len, time_stride)
                f.create_dataset(f"subsets/{order}/{size}", data=index[:n])
        f.attrs.update({
            "clip_len": clip_len, "height": shape[0], "width": shape[1], "fps": float(fps),
            "time_stride": time_stride, "data_sizes": np.asarray(sizes, dtype=np.int64),
            "eval_clips": int(eval_clips),
            **provenance(cfg, seed=seed),
        })


def _write_clips(
    f: h5py.File, clips_by_source: Iterable[tuple[str, np.ndarray]], clip_len: int,
    time_stride: int, level: int,
) -> tuple[list[str], list[int], list[int], tuple[int, int]]:
    """Append every source's clips to a resizable ``clips`` dataset."""
    names: list[str] = []
    sources: list[int] = []
    starts: list[int] = []
    shape = None
    dset = None
    for k, (name, frames) in enumerate(clips_by_source):
        frames = _check_source(name, frames, shape)
        shape = frames.shape[1:]
        clips, start = cut_clips(frames, clip_len, time_stride)  # (n, T, H, W, 3)
        if dset is None:
            dset = f.create_dataset(
                "clips", shape=(0, clip_len, *shape), maxshape=(None, clip_len, *shape),
                dtype=np.uint8, chunks=(1, clip_len, *shape), compression="gzip",
                compression_opts=level,
            )
        n0 = dset.shape[0]
        dset.resize(n0 + len(clips), axis=0)
        dset[n0:] = clips
        names.append(str(name))
        sources.extend([k] * len(clips))
        starts.extend(start.tolist())
        log.info(f"{name}: {len(clips)} clips written")
    if dset is None or shape is None:
        raise ValueError("clips_by_source is empty; the corpus needs at least one source")
    return names, sources, starts, (int(shape[0]), int(shape[1]))


def read_subset(path: str | os.PathLike, data_size: int, order: str) -> np.ndarray:
    """Clip indices of one data-size subset of ``frames.h5``.

    Parameters
    ----------
    path : path-like
        A ``frames.h5`` written by :func:`write_corpus`.
    data_size : int
        One of the file's ``data_sizes``, or 0: the whole training pool (``pool/{order}``,
        every clip but the validation set; isoflop points train on it).
    order : {"corpus", "stratified"}

    Returns
    -------
    index : ndarray of int64, shape (n_clips(data_size),)
    """
    path = Path(path)
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {list(ORDERS)}, found {order!r}")
    if not path.is_file():
        raise MissingInputError(f"corpus file {path} does not exist (run `cortexscale corpus`)")
    key = f"subsets/{order}/{int(data_size)}" if int(data_size) else f"pool/{order}"
    with open_h5(path, FRAMES_EXPECTED) as f:
        if key not in f:
            if not int(data_size):
                raise InputError(f"{path} has no key {key!r} (the training pool): it was written "
                               "by an older cortexscale; rebuild it with `cortexscale corpus`")
            have = sorted(int(k) for k in f.get(f"subsets/{order}", {}))
            raise InputError(f"{path} has no key {key!r}; data sizes stored: {have}")
        index = f[key][()]
        n_total = f["clips"].shape[0] if "clips" in f else None
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
        raise InputError(f"{path}[{key!r}]: expected a 1-D integer array, found {index.dtype} "
                         f"{index.shape}")
    if n_total is not None and index.size and (index.min() < 0 or index.max() >= n_total):
        raise InputError(f"{path}[{key!r}] holds clip indices outside [0, {n_total})")
    return index.astype(np.int64, copy=False)


def read_validation(path: str | os.PathLike) -> np.ndarray:
    """The held-out validation clips of ``frames.h5`` (``validation``, sorted int64).

    Raises
    ------
    InputError
        If the file has no ``validation`` dataset (written before the validation reserve),
        or it is not a sorted 1-D array of distinct clip indices of the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"corpus file {path} does not exist (run `cortexscale corpus`)")
    with open_h5(path, FRAMES_EXPECTED) as f:
        if "validation" not in f:
            raise InputError(
                f"{path} has no dataset 'validation' (the held-out clips shared by every data "
                "size): it was written by an older cortexscale; rebuild it with "
                "`cortexscale corpus`"
            )
        val = f["validation"][()]
        n_total = f["clips"].shape[0] if "clips" in f else None
    if val.ndim != 1 or not np.issubdtype(val.dtype, np.integer) or np.any(np.diff(val) <= 0):
        raise InputError(f"{path}['validation'] must be sorted, distinct 1-D integer clip "
                         f"indices; found {val.dtype} {val.shape}")
    if n_total is not None and val.size and (val.min() < 0 or val.max() >= n_total):
        raise InputError(f"{path}['validation'] holds clip indices outside [0, {n_total})")
    return val.astype(np.int64, copy=False)


def _synthetic_sources(n_sources: int, n_frames: int, height: int, width: int, seed: int):
    """Yield ``(name, frames)`` of synthetic episodes, one at a time."""
    from cortexscale.data.synthetic import render_episode

    progress = Progress(log, n_sources, "source")
    for i in range(n_sources):
        frames, _ = render_episode(n_frames, height, width, np.random.default_rng([seed, 0, i]))
        progress.update(i + 1, f"synthetic, {n_frames} frames")
        yield f"episode{i + 1:03d}", frames


def build_corpus(
    out_path: str | os.PathLike, corpus_cfg: dict[str, Any], data_sizes: Sequence[int], seed: int,
    eval_clips: int = 0,
) -> None:
    """Build ``frames.h5`` from the config's ``corpus`` section.

    Parameters
    ----------
    out_path : path-like
    corpus_cfg : dict
        ``source`` (``synthetic``, ``frames_h5`` or ``video_dir``; the latter two read
        ``path``, see :mod:`cortexscale.data.corpus_sources`, resampled to ``fps`` and
        ``height`` x ``width``), ``n_sources``, ``frames_per_source`` (synthetic),
        ``fps``, ``time_stride``, ``clip_len``, ``height``, ``width``.
    data_sizes : sequence of int
        The grid's data sizes (source frames); empty for an isoflop grid.
    seed : int
    eval_clips : int, optional
        ``pretrain.eval_clips``: the validation clips reserved before the subsets.
    """
    prepare_outputs([out_path], "corpus")
    source = corpus_cfg.get("source", "synthetic")
    clip_len = int(corpus_cfg.get("clip_len", 16))
    stride = int(corpus_cfg.get("time_stride", 1))
    height, width = int(corpus_cfg.get("height", 32)), int(corpus_cfg.get("width", 32))
    fps = float(corpus_cfg.get("fps", 15))
    if source in ("frames_h5", "video_dir"):
        from cortexscale.data import corpus_sources as cs

        if not corpus_cfg.get("path"):
            raise ConfigError(f"corpus.path is required when corpus.source is {source!r}")
        path = Path(corpus_cfg["path"])
        if source == "frames_h5":
            cs.list_frames_h5(path)  # validate every dataset before writing anything
            sources = cs.frames_h5_sources(path, fps, height, width)
        else:
            cs.list_videos(path)
            sources = cs.video_dir_sources(path, fps, height, width)
        write_corpus(out_path, sources, clip_len, stride, fps, data_sizes, seed=seed,
                     cfg=corpus_cfg, eval_clips=eval_clips)
        return
    if source != "synthetic":
        raise ConfigError(
            f"corpus.source: expected one of ['synthetic', 'frames_h5', 'video_dir'], "
            f"found {source!r}"
        )
    n_sources = int(corpus_cfg.get("n_sources", 8))
    n_frames = int(corpus_cfg.get("frames_per_source", 1024))
    total = n_sources * n_clips_for(n_frames, clip_len, stride)
    _check_sizes(data_sizes, total, clip_len, stride, f"corpus config (writing {out_path})",
                 eval_clips)
    write_corpus(
        out_path, _synthetic_sources(n_sources, n_frames, height, width, seed), clip_len,
        stride, fps, data_sizes, seed=seed, cfg=corpus_cfg, eval_clips=eval_clips,
    )
