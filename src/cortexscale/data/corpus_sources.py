"""Pretraining sources read from the user's data, one source at a time.

``frames_h5``: an HDF5 file with one uint8 dataset per source (any depth of groups), of
shape ``(n_frames, H, W, 3)`` (channels-last) or ``(n_frames, 3, H, W)`` (channels-first),
detected from the shape; a dataset attribute ``layout`` (``"NHWC"`` or ``"NCHW"``) settles
an ambiguous shape such as ``(n, 3, H, 3)``, and an ``fps`` attribute (on the dataset or
the file) gives the frame rate when it differs from ``corpus.fps``; it must be a positive
finite number (an error names the file, the dataset and the attribute otherwise).
``video_dir``: a folder of videos (``.mkv .mp4 .avi .mov .webm``, searched recursively,
sorted by path) decoded with PyAV.

Both yield ``(name, frames)`` with frames uint8 ``(n, height, width, 3)`` resampled to the
corpus frame rate (nearest frame in time) and size (area averaging), ready for
:func:`cortexscale.data.corpus.write_corpus`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from cortexscale.data.fmri import open_h5
from cortexscale.errors import InputError, MissingInputError
from cortexscale.io.video import read_video_resampled, resample_frames
from cortexscale.logs import Progress, get_logger

__all__ = ["VIDEO_SUFFIXES", "frames_h5_sources", "list_frames_h5", "list_videos",
           "video_dir_sources"]

VIDEO_SUFFIXES = (".mkv", ".mp4", ".avi", ".mov", ".webm")
_EXPECTED = "uint8 datasets (n_frames, H, W, 3) or (n_frames, 3, H, W), one per source"

log = get_logger(__name__)


def _layout(dset: h5py.Dataset, where: str) -> str:
    shape = dset.shape
    if dset.dtype != np.uint8 or len(shape) != 4:
        raise InputError(f"{where}: expected {_EXPECTED}, found {dset.dtype} {shape}")
    stated = dset.attrs.get("layout")
    if stated is not None:
        stated = stated.decode() if isinstance(stated, bytes) else str(stated)
        if stated not in ("NHWC", "NCHW"):
            raise InputError(f"{where}: attribute layout must be 'NHWC' or 'NCHW', found "
                             f"{stated!r}")
        if (stated == "NHWC" and shape[3] != 3) or (stated == "NCHW" and shape[1] != 3):
            raise InputError(f"{where}: attribute layout {stated!r} does not fit shape {shape}")
        return stated
    last, first = shape[3] == 3, shape[1] == 3
    if last and first:
        raise InputError(f"{where}: shape {shape} could be channels-first or channels-last; "
                         "set the dataset attribute layout to 'NHWC' or 'NCHW'")
    if not (last or first):
        raise InputError(f"{where}: expected 3 colour channels in axis 1 or 3, found {shape}")
    return "NHWC" if last else "NCHW"


def _source_fps(dset: h5py.Dataset, file_attrs: h5py.AttributeManager, default: float,
                where: str) -> float:
    """The frame rate of a source: its ``fps`` attribute, the file's, else ``default``."""
    if "fps" in dset.attrs:
        raw, owner = dset.attrs["fps"], f"{where} attribute fps"
    elif "fps" in file_attrs:
        raw, owner = file_attrs["fps"], f"{where.rsplit('[', 1)[0]} (file) attribute fps"
    else:
        return float(default)
    try:
        value = float(np.asarray(raw).item())
    except (TypeError, ValueError):
        value = None
    if value is None or not np.isfinite(value) or value <= 0:
        raise InputError(f"{owner}: expected a positive finite frame rate (frames per "
                         f"second), found {raw!r}")
    return value


def list_frames_h5(path: str | os.PathLike) -> list[str]:
    """Dataset names of a frames file, in sorted order, each validated (shape, dtype, fps)."""
    path = Path(path)
    names: list[str] = []
    with open_h5(path, _EXPECTED) as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        names.sort()
        if not names:
            raise InputError(f"{path} holds no dataset; expected {_EXPECTED}")
        for n in names:
            _layout(f[n], f"{path}[{n!r}]")
            _source_fps(f[n], f.attrs, 1.0, f"{path}[{n!r}]")
    return names


def frames_h5_sources(
    path: str | os.PathLike, fps: float, height: int, width: int, chunk: int = 512
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, frames)`` for every dataset of a frames file, one at a time.

    Parameters
    ----------
    path : path-like
    fps : float
        Corpus frame rate; a source with an ``fps`` attribute is resampled to it.
    height, width : int
        Corpus frame size.
    chunk : int, optional
        Frames read and resized at once.

    Yields
    ------
    name : str
    frames : ndarray of uint8, shape (n, height, width, 3)
    """
    path = Path(path)
    names = list_frames_h5(path)
    progress = Progress(log, len(names), "source")
    with open_h5(path, _EXPECTED) as f:
        for k, name in enumerate(names):
            dset = f[name]
            where = f"{path}[{name!r}]"
            layout = _layout(dset, where)
            src_fps = _source_fps(dset, f.attrs, fps, where)
            n = dset.shape[0]
            if n == 0:
                raise InputError(f"{where}: holds 0 frames")
            idx = np.arange(n) if src_fps == fps else _time_index(n, src_fps, fps)
            parts = []
            for s in range(0, len(idx), chunk):
                sel = idx[s : s + chunk]
                lo, hi = int(sel.min()), int(sel.max()) + 1
                block = dset[lo:hi][sel - lo]  # (b, ...) frames of this chunk
                if layout == "NCHW":
                    block = block.transpose(0, 2, 3, 1)  # (b, H, W, 3)
                parts.append(resample_frames(np.ascontiguousarray(block), fps, fps,
                                             height, width))
            progress.update(k + 1, f"{where} ({layout}, {n} frames at {src_fps:g} fps)")
            yield name, np.concatenate(parts)


def _time_index(n: int, src_fps: float, dst_fps: float) -> np.ndarray:
    from cortexscale.io.video import frame_times_index

    return frame_times_index(n, src_fps, dst_fps)


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files of a folder (recursive, sorted); an error if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingInputError(f"video folder {folder} does not exist (corpus.path)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES
                   and p.is_file())
    if not files:
        raise InputError(f"{folder} holds no video file; expected files ending in "
                         f"{list(VIDEO_SUFFIXES)}")
    return files


def video_dir_sources(
    folder: str | os.PathLike, fps: float, height: int, width: int
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(relative path, frames)`` for every video of a folder, one at a time.

    An undecodable video raises ``ValueError`` naming the file (see
    :func:`cortexscale.io.video.read_video_resampled`).
    """
    folder = Path(folder)
    files = list_videos(folder)
    progress = Progress(log, len(files), "source")
    for k, path in enumerate(files):
        frames = read_video_resampled(path, fps, height, width)
        progress.update(k + 1, f"{path} ({len(frames)} frames)")
        yield str(path.relative_to(folder)), frames
