"""Features of a pretrained VideoGPT for the fMRI stimuli: one vector per TR and kept layer.

For TR ``i`` of a stimulus the model sees the clip of ``clip_len`` frames that ends at the
TR's onset ``i * tr`` (DESIGN.md, "From video to a feature per TR"), at the model's frame
rate and size: its last frame is frame ``floor(i * tr * fps_model)`` (:func:`clip_frame_index`),
frames before the movie's start repeat the first frame. The clip is tokenised by the VQ-VAE,
the GPT runs over the codes (a conditioned GPT also gets the clip that ends ``clip_len``
frames earlier), and each kept block's output is pooled over the clip's tokens (mean or max),
giving ``(n_TR, hidden)`` per layer (:func:`stimulus_features`). The model runs in fp32.

The features stage (:mod:`cortexscale.stages.features`) reads the models, the corpus's
attributes and the movies, and writes ``features.h5``.
"""

from __future__ import annotations

import numpy as np
import torch

from cortexscale.models.gpt import GPT
from cortexscale.models.vqvae import VQVAE

__all__ = ["POOLINGS", "clip_frame_index", "resolve_layers", "stimulus_features"]

POOLINGS = ("mean", "max")


def resolve_layers(layers: list[int], n_blocks: int) -> list[int]:
    """Turn layer indices (negative: from the end) into unique non-negative block indices.

    Raises
    ------
    ValueError
        If an index lies outside ``-n_blocks .. n_blocks - 1``.
    """
    out: list[int] = []
    for k in layers:
        if not -n_blocks <= k < n_blocks:
            raise ValueError(
                f"features.layers: layer {k} is outside the model, which has {n_blocks} "
                f"blocks (valid: {-n_blocks} .. {n_blocks - 1})"
            )
        k = k % n_blocks
        if k not in out:
            out.append(k)
    return out


def clip_frame_index(n_tr: int, tr: float, fps: float, clip_len: int, lag: int = 0) -> np.ndarray:
    """Frame indices of the clip that ends at each TR's onset.

    Parameters
    ----------
    n_tr : int
        Number of TRs.
    tr : float
        Repetition time (s).
    fps : float
        The model's frame rate.
    clip_len : int
        Frames per clip.
    lag : int
        Shift every clip ``lag`` frames earlier (``clip_len`` gives the conditioning clip).

    Returns
    -------
    index : int64 (n_tr, clip_len)
        Row ``i`` ends at frame ``floor(i * tr * fps) - lag``; indices before 0 are 0 (the
        first frame repeats). Indices past the movie's end are *not* clipped here.
    """
    # the small epsilon keeps an onset that falls exactly on a frame (i * tr * fps integer in
    # exact arithmetic) on that frame despite floating-point rounding
    end = np.floor(np.arange(n_tr) * tr * fps + 1e-6).astype(np.int64) - lag  # (n_tr,)
    idx = end[:, None] - np.arange(clip_len - 1, -1, -1)[None]  # (n_tr, clip_len)
    return np.maximum(idx, 0)


def _pool(h: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, N, hidden) -> (B, hidden)."""
    return h.mean(dim=1) if pooling == "mean" else h.amax(dim=1)


@torch.no_grad()
def stimulus_features(
    vqvae: VQVAE,
    gpt: GPT,
    frames: np.ndarray,
    n_tr: int,
    tr: float,
    fps: float,
    clip_len: int,
    layers: list[int],
    pooling: str,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[int, np.ndarray]:
    """Features of one stimulus.

    Parameters
    ----------
    vqvae, gpt : VQVAE, GPT
        In eval mode on ``device``.
    frames : uint8 (n_frames, H, W, 3)
        The movie at the model's frame rate and size.
    n_tr : int
    tr, fps : float
        Repetition time (s) and the model's frame rate.
    clip_len : int
        Frames per clip.
    layers : list of int
        Non-negative block indices.
    pooling : {"mean", "max"}
    batch_size : int
        Clips per forward pass (bounds memory).
    device : str or torch.device

    Returns
    -------
    features : dict of int -> float32 (n_tr, hidden)
    """
    last = frames.shape[0] - 1  # a movie shorter than the scan: its last frame repeats
    idx = np.minimum(clip_frame_index(n_tr, tr, fps, clip_len), last)  # (n_tr, clip_len)
    cond_idx = None
    if gpt.config.conditioned:
        cond_idx = np.minimum(clip_frame_index(n_tr, tr, fps, clip_len, lag=clip_len), last)
    n_blocks = max(layers) + 1
    out = {k: np.empty((n_tr, gpt.config.hidden), np.float32) for k in layers}
    for s in range(0, n_tr, batch_size):
        rows = slice(s, min(s + batch_size, n_tr))
        clips = frames[idx[rows]]  # (B, clip_len, H, W, 3)
        if cond_idx is not None:
            clips = np.concatenate([clips, frames[cond_idx[rows]]])  # (2B, clip_len, H, W, 3)
        x = VQVAE.preprocess(clips).to(device)  # (B', 3, clip_len, H, W)
        codes = vqvae.encode(x)  # (B', t, h, w)
        cond = None
        if cond_idx is not None:
            codes, cond = codes.chunk(2)  # (B, t, h, w) each
        hidden = gpt.hidden_states(codes, cond, n_blocks=n_blocks)  # n_blocks x (B, N, hidden)
        for k in layers:
            out[k][rows] = _pool(hidden[k].float(), pooling).cpu().numpy()  # (B, hidden)
    return out
