"""Tests of cortexscale.io.video: lossless round trip, errors, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from cortexscale.io.video import read_video, resample_frames, write_video


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_round_trip_is_exact(tmp_path, rng):
    frames = rng.integers(0, 256, size=(12, 18, 26, 3), dtype=np.uint8)
    path = tmp_path / "clip.mkv"
    write_video(path, frames, fps=15)
    out, fps = read_video(path)
    assert out.dtype == np.uint8
    assert out.shape == frames.shape
    np.testing.assert_array_equal(out, frames)
    assert fps == pytest.approx(15.0)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mkv"]  # no temporary left


def test_fractional_frame_rate(tmp_path, rng):
    frames = rng.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    write_video(tmp_path / "a.mkv", frames, fps=29.97)
    _, fps = read_video(tmp_path / "a.mkv")
    assert fps == pytest.approx(29.97, abs=1e-3)


def test_read_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mkv"):
        read_video(tmp_path / "nothere.mkv")


def test_read_garbage_names_file(tmp_path):
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="bad.mkv"):
        read_video(bad)


@pytest.mark.parametrize(
    ("shape", "dtype", "match"),
    [((4, 8, 8), np.uint8, "shape"), ((4, 8, 8, 3), np.float32, "uint8")],
)
def test_write_rejects_bad_frames(tmp_path, shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        write_video(tmp_path / "x.mkv", np.zeros(shape, dtype=dtype), fps=10)
    assert not list(tmp_path.iterdir())


def _numbered(n, h=4, w=4):
    """Frames whose every pixel holds the frame index."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, h, w, 3)).copy()


def test_resample_time_nearest_frame():
    frames = _numbered(10)
    down = resample_frames(frames, 10, 5, 4, 4)
    np.testing.assert_array_equal(down[:, 0, 0, 0], [0, 2, 4, 6, 8])
    up = resample_frames(frames, 10, 20, 4, 4)
    assert up.shape[0] == 20
    np.testing.assert_array_equal(up[:6, 0, 0, 0], [0, 1, 1, 2, 2, 3])  # t = j / 20 s
    same = resample_frames(frames, 15, 15, 4, 4)
    np.testing.assert_array_equal(same, frames)


def test_resample_space_area_average():
    frame = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    frame[0, :2, :2] = 200  # top-left 2x2 block
    frame[0, 2:, 2:] = 100
    out = resample_frames(frame, 10, 10, 2, 2)
    assert out.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(out[0, :, :, 0], [[200, 0], [0, 100]])
    big = resample_frames(np.full((2, 3, 3, 3), 77, np.uint8), 10, 10, 7, 5)
    assert big.shape == (2, 7, 5, 3)
    assert (big == 77).all()
