"""Features from the hidden states of a vision model: frames per TR, pooling, dataset names.

Every kept hidden state, as a map ``(B, C, H, W)`` (:func:`~cortexscale.models.vision.
layer_maps`), is max-pooled at a kernel size (stride = kernel, partial windows kept), the
Matsuyama et al. (2023) reduction, and flattened (:func:`max_pool_features`); the rows of
the frames shown in one TR are averaged (:func:`pooled_features`). A video TR ``i`` sees the
frame(s) of :func:`frame_index_per_tr`. The feature cache stores each pooled state as
``layer{k}_pool{s}`` (:func:`dataset_name`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["dataset_name", "frame_index_per_tr", "max_pool_features", "parse_dataset_name",
           "pooled_features"]


def dataset_name(layer: int, kernel: int) -> str:
    """``layer{k}_pool{s}``: the HDF5 dataset of hidden state ``k`` max-pooled at ``s``."""
    return f"layer{int(layer)}_pool{int(kernel)}"


def parse_dataset_name(name: str) -> tuple[int, int]:
    """Inverse of :func:`dataset_name`."""
    layer, _, pool = name.partition("_pool")
    if not layer.startswith("layer") or not pool:
        raise ValueError(f"{name!r} is not a feature dataset name layer{{k}}_pool{{s}}")
    return int(layer[5:]), int(pool)


def frame_index_per_tr(n_tr: int, tr: float, fps: float, n_frames: int,
                       frames_per_tr: int = 1) -> np.ndarray:
    """Movie frame(s) seen for each TR, int64 ``(n_tr, frames_per_tr)``.

    Column ``j`` is the frame at or just before ``i * tr - j * tr / frames_per_tr`` seconds,
    clamped to ``[0, n_frames - 1]`` (the last frame repeats past the movie's end).
    """
    t = np.arange(n_tr)[:, None] * tr - np.arange(frames_per_tr)[None] * tr / frames_per_tr
    idx = np.floor(t * fps + 1e-6).astype(np.int64)
    return np.clip(idx, 0, max(0, n_frames - 1))


def max_pool_features(fmap: torch.Tensor, kernel: int) -> torch.Tensor:
    """Max-pool (B, C, H, W) with a ``kernel`` x ``kernel`` window (stride = kernel, partial
    windows at the edges kept; a kernel larger than the map is the global max) and flatten
    to (B, C * ceil(H / k) * ceil(W / k))."""
    k_h, k_w = min(kernel, fmap.shape[-2]), min(kernel, fmap.shape[-1])
    pooled = torch.nn.functional.max_pool2d(fmap, (k_h, k_w), stride=(k_h, k_w), ceil_mode=True)
    return pooled.flatten(1)


def pooled_features(fmap: torch.Tensor, kernel: int, frames_per_row: int = 1) -> np.ndarray:
    """One hidden-state map (B, C, H, W) max-pooled at ``kernel`` and averaged over each run
    of ``frames_per_row`` consecutive images: float32 (B / frames_per_row, d)."""
    x = max_pool_features(fmap, kernel).cpu().numpy()
    rows = fmap.shape[0] // frames_per_row
    return x.reshape(rows, frames_per_row, -1).mean(axis=1).astype(np.float32)
