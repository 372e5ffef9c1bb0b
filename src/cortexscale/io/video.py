"""Video files: lossless writing, decoding and resampling of RGB frame arrays.

Frames are channels-last RGB ``uint8`` arrays of shape ``(n_frames, height, width, 3)``.
:func:`write_video` encodes them losslessly with FFV1 in Matroska (``.mkv``) using the
``bgr0`` pixel format, which round-trips RGB exactly; :func:`read_video` decodes any
file PyAV can open.

A file that yields fewer frames than its container states (a truncated download or copy) is
an error naming the file, the frames promised and the frames found, in every reader here
(:func:`read_video`, :func:`read_video_resampled`, :func:`video_info`). The stated length is
the stream's frame count (MP4), else the stream's duration (its own or the Matroska
``DURATION`` tag) times the frame rate, else the container's duration when the file has a
single stream. Up to :data:`SHORTFALL_TOLERANCE_S` seconds (at least 2 frames) may be
missing: muxers round durations, and that is less than one TR of any fMRI dataset here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from cortexscale.errors import InputError, MissingInputError
from cortexscale.io.atomic import atomic_path

__all__ = [
    "frame_times_index",
    "read_video",
    "read_video_resampled",
    "resample_frames",
    "stated_frames",
    "video_info",
    "write_video",
]

#: Frames a video may lack against its stated length, in seconds (at least 2 frames).
SHORTFALL_TOLERANCE_S = 1.0

_CODEC = "ffv1"
_PIX_FMT = "bgr0"  # FFV1 stores it losslessly; RGB -> bgr0 -> RGB is exact


def _check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """Validate a ``uint8 (n, H, W, 3)`` frame array and return it contiguous."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"{name}: expected shape (n_frames, height, width, 3), found {frames.shape}"
        )
    if frames.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8, found {frames.dtype}")
    return np.ascontiguousarray(frames)


def _as_rate(fps: float) -> Fraction:
    """A frame rate as a fraction (``29.97`` -> ``2997/100``)."""
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps: expected a positive finite number, found {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Write RGB frames to a lossless FFV1 ``.mkv`` file, atomically.

    Parameters
    ----------
    path : path-like
        Target file (Matroska container; the suffix should be ``.mkv``).
    frames : ndarray of uint8, shape (n_frames, height, width, 3)
        RGB frames; ``n_frames >= 1``.
    fps : float
        Frame rate stored in the file.
    """
    import av

    frames = _check_frames(frames)
    if frames.shape[0] == 0:
        raise ValueError(f"cannot write an empty video to {path}: frames has 0 frames")
    rate = _as_rate(fps)
    _, height, width, _ = frames.shape
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="matroska") as out:
            stream = out.add_stream(_CODEC, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, _PIX_FMT
            for frame in frames:
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                for packet in stream.encode(vf):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)


def _to_rgb(frame) -> np.ndarray:
    """A decoded ``av.VideoFrame`` as uint8 RGB (H, W, 3).

    ``bgr0`` frames (what :func:`write_video` stores) are reordered in numpy, which is
    about 3x faster than a swscale conversion for small frames.
    """
    if frame.format.name == "bgr0":
        plane = frame.planes[0]
        buf = np.frombuffer(plane, dtype=np.uint8)
        rows = buf.reshape(frame.height, plane.line_size // 4, 4)  # (H, padded W, BGR0)
        return rows[:, : frame.width, 2::-1].copy()
    return frame.to_ndarray(format="rgb24")


def _parse_duration(text: str) -> float | None:
    """``HH:MM:SS.fffffffff`` (a Matroska ``DURATION`` tag) in seconds."""
    parts = str(text).strip().split(":")
    try:
        h, m, sec = (float(x) for x in parts) if len(parts) == 3 else (0.0, 0.0, float(text))
    except ValueError:
        return None
    return h * 3600 + m * 60 + sec


def stated_frames(container: Any, stream: Any, rate: float) -> tuple[int | None, str]:
    """Frames a video's container promises, and where that number comes from.

    Returns
    -------
    n : int or None
        ``None`` when the file states no length.
    source : str
        For messages: "its frame count" or "its duration 29.80 s".
    """
    if stream.frames:
        return int(stream.frames), "its frame count"
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif stream.metadata.get("DURATION"):
        seconds = _parse_duration(stream.metadata["DURATION"])
    elif container.duration and len(container.streams) == 1:
        seconds = container.duration / 1e6  # microseconds (av.time_base)
    if not seconds or seconds <= 0:
        return None, ""
    return int(round(seconds * rate)), f"its duration {seconds:.2f} s at {rate:g} fps"


def _check_complete(path: Path, n_found: int, stated: tuple[int | None, str], rate: float,
                    what: str) -> None:
    """An error if ``n_found`` frames fall short of the stated length beyond the tolerance."""
    n_stated, source = stated
    if n_stated is None:
        return
    tolerance = max(2, int(np.ceil(SHORTFALL_TOLERANCE_S * rate)))
    if n_found < n_stated - tolerance:
        raise InputError(
            f"video file {path} is shorter than its container states (truncated?): "
            f"{source} promises {n_stated} frames, {n_found} {what}; expected at least "
            f"{n_stated - tolerance} (tolerance {SHORTFALL_TOLERANCE_S:g} s)"
        )


@contextlib.contextmanager
def _video_stream(path: Path, verb: str) -> Iterator[tuple[Any, Any, float]]:
    """Open a video's first video stream: yield (container, stream, frame rate).

    Errors name the file: missing (FileNotFoundError), no video stream, no frame rate, or
    anything FFmpeg rejects while the block runs (ValueError, "could not {verb} ...").
    """
    import av

    if not path.is_file():
        raise MissingInputError(f"video file {path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"video file {path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if rate is None:
                raise InputError(f"video file {path} does not state a frame rate")
            yield container, stream, float(rate)
    except av.error.FFmpegError as err:
        raise InputError(f"could not {verb} video file {path}: {err}") from err


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode every frame of a video file.

    Parameters
    ----------
    path : path-like
        Any video PyAV can decode.

    Returns
    -------
    frames : ndarray of uint8, shape (n_frames, height, width, 3)
        RGB frames.
    fps : float
        The stream's average frame rate.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be decoded, has no video stream or no frames, or decodes to
        fewer frames than its container states (beyond :data:`SHORTFALL_TOLERANCE_S`).
    """
    path = Path(path)
    with _video_stream(path, "decode") as (container, stream, rate):
        stated = stated_frames(container, stream, rate)
        frames = [_to_rgb(f) for f in container.decode(stream)]
    if not frames:
        raise InputError(f"video file {path} contains no decodable frames")
    _check_complete(path, len(frames), stated, rate, "decoded")
    return np.stack(frames), rate


def frame_times_index(n_src: int, src_fps: float, dst_fps: float) -> np.ndarray:
    """Indices of the source frames nearest in time to each output frame.

    Output frame ``j`` is shown at ``j / dst_fps`` seconds; the output covers the
    source's duration ``n_src / src_fps``.

    Parameters
    ----------
    n_src : int
        Number of source frames.
    src_fps, dst_fps : float
        Source and target frame rates.

    Returns
    -------
    index : ndarray of int64, shape (n_dst,)
        ``n_dst = round(n_src * dst_fps / src_fps)`` (at least 1).
    """
    if n_src < 1:
        raise ValueError(f"source frames: expected at least one, found {n_src}")
    n_dst = max(1, int(round(n_src * dst_fps / src_fps)))
    t = np.arange(n_dst) / dst_fps
    idx = np.floor(t * src_fps + 0.5 + 1e-9).astype(np.int64)
    return np.clip(idx, 0, n_src - 1)


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``uint8 (n, H, W, 3)`` frames; area averaging to shrink, bilinear to grow."""
    import torch  # lazy: readers that never resize should not pay for importing torch
    import torch.nn.functional as F

    n, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames
    if h % height == 0 and w % width == 0:  # integer factors: block means, no torch needed
        fh, fw = h // height, w // width
        blocks = frames.reshape(n, height, fh, width, fw, 3)
        return np.rint(blocks.mean(axis=(2, 4), dtype=np.float32)).astype(np.uint8)
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    mode = "area" if height <= h and width <= w else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    for start in range(0, n, 256):  # bound memory for long movies
        x = torch.from_numpy(frames[start : start + 256]).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(height, width), mode=mode, **kwargs)  # (b, 3, height, width)
        y = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        out[start : start + 256] = y.numpy()
    return out


def resample_frames(
    frames: np.ndarray, src_fps: float, dst_fps: float, height: int, width: int
) -> np.ndarray:
    """Resample frames in time (nearest frame) and space (area or bilinear).

    Parameters
    ----------
    frames : ndarray of uint8, shape (n_src, H, W, 3)
        Source frames.
    src_fps, dst_fps : float
        Source and target frame rates.
    height, width : int
        Target frame size.

    Returns
    -------
    out : ndarray of uint8, shape (n_dst, height, width, 3)
        ``n_dst = round(n_src * dst_fps / src_fps)``; frame ``j`` is the source frame
        nearest to time ``j / dst_fps``.
    """
    frames = _check_frames(frames)
    _as_rate(src_fps)
    _as_rate(dst_fps)
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width: expected positive, found {height}x{width}")
    idx = frame_times_index(frames.shape[0], src_fps, dst_fps)
    return _resize(np.ascontiguousarray(frames[idx]), int(height), int(width))


def video_info(path: str | os.PathLike) -> tuple[int, float]:
    """Frame count and frame rate of a video, by demuxing (no decoding).

    Parameters
    ----------
    path : path-like
        Any video PyAV can open.

    Returns
    -------
    n_frames : int
        Number of video packets with a payload (one per frame for intra-only codecs such
        as FFV1 and for the usual inter-frame codecs).
    fps : float
        The stream's average frame rate.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file cannot be opened, has no video stream, states no frame rate, or stores
        fewer frames than its container states (beyond :data:`SHORTFALL_TOLERANCE_S`).
    """
    path = Path(path)
    with _video_stream(path, "open") as (container, stream, rate):
        stated = stated_frames(container, stream, rate)
        n = sum(1 for p in container.demux(stream) if p.size)
    if n == 0:
        raise InputError(f"video file {path} contains no frames")
    _check_complete(path, n, stated, rate, "stored")
    return n, rate


def read_video_resampled(
    path: str | os.PathLike, fps: float, height: int, width: int, batch: int = 256
) -> np.ndarray:
    """Decode a video and resample it while decoding (bounded memory for long movies).

    Same result as ``resample_frames(*read_video(path), fps, height, width)`` but only
    the kept frames are stored, resized in batches of ``batch`` frames.

    Parameters
    ----------
    path : path-like
    fps : float
        Target frame rate.
    height, width : int
        Target frame size.
    batch : int, optional
        Frames resized at once.

    Returns
    -------
    frames : ndarray of uint8, shape (n_dst, height, width, 3)
        ``n_dst = round(n_src * fps / src_fps)``; frame ``j`` is the source frame nearest
        to ``j / fps`` seconds.
    """
    path = Path(path)
    _as_rate(fps)
    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    n_src, j = 0, 0
    with _video_stream(path, "decode") as (container, stream, src_fps):
        stated = stated_frames(container, stream, src_fps)
        for frame in container.decode(stream):
            rgb = None
            # output frame j takes source frame floor(j * src / dst + 0.5)
            while int(np.floor(j / fps * src_fps + 0.5 + 1e-9)) <= n_src:
                rgb = _to_rgb(frame) if rgb is None else rgb
                pending.append(rgb)
                j += 1
            n_src += 1
            if len(pending) >= batch:
                out.append(_resize(np.stack(pending), int(height), int(width)))
                pending = []
    if pending:
        out.append(_resize(np.stack(pending), int(height), int(width)))
    if n_src == 0:
        raise InputError(f"video file {path} contains no decodable frames")
    _check_complete(path, n_src, stated, src_fps, "decoded")
    n_dst = max(1, int(round(n_src * fps / src_fps)))
    frames = np.concatenate(out)
    if len(frames) < n_dst:  # the last source frames cover the tail
        frames = np.concatenate([frames, np.repeat(frames[-1:], n_dst - len(frames), 0)])
    return frames[:n_dst]
