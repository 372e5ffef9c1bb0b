"""Features of a pretrained VideoGPT for the fMRI stimuli: one vector per TR and kept layer.

For TR ``i`` of a stimulus the model sees the clip of ``clip_len`` frames that ends at the
TR's onset ``i * tr`` (DESIGN.md, "From video to a feature per TR"), at the model's frame
rate ``fps / time_stride`` and size (``frames.h5`` attrs): its last frame is frame
``floor(i * tr * fps_model)``, frames before the movie's start repeat the first frame. The
clip is tokenised by the VQ-VAE, the GPT runs over the codes (a conditioned GPT also gets the
clip that ends ``clip_len`` frames earlier), and each kept block's output is pooled over the
clip's tokens (mean or max), giving ``(n_TR, hidden)`` per layer. The model runs in fp32.

The output is ``features.h5`` as in docs/formats.md: ``/{stimulus}/layer{k}`` float32
``(n_TR, hidden)``, root attrs ``layers``, ``tr``, ``grid`` and provenance.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from cortexscale.config import section
from cortexscale.data.corpus import FRAMES_EXPECTED
from cortexscale.data.fmri import FmriDataset
from cortexscale.grid import parse_name
from cortexscale.io.atomic import atomic_path, prepare_outputs
from cortexscale.io.hdf5 import open_h5
from cortexscale.io.provenance import provenance
from cortexscale.models.gpt import GPT
from cortexscale.models.vqvae import VQVAE
from cortexscale.train.common import setup_device

__all__ = ["POOLINGS", "check_cfg", "clip_frame_index", "extract_features", "resolve_layers"]

POOLINGS = ("mean", "max")


def check_cfg(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the ``features:`` config section (``layers``, ``pooling``), with defaults.

    Raises
    ------
    ValueError
        Naming the key, what was expected and what was found.
    """
    return section("features", cfg)


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


def _frames_attrs(frames_h5: Path) -> dict[str, float]:
    with open_h5(frames_h5, FRAMES_EXPECTED) as f:
        missing = [k for k in ("fps", "time_stride", "clip_len", "height", "width")
                   if k not in f.attrs]
        if missing:
            raise ValueError(f"{frames_h5}: root attributes {missing} are missing")
        a = {k: f.attrs[k] for k in ("fps", "time_stride", "clip_len", "height", "width")}
    return {
        "fps": float(a["fps"]) / int(a["time_stride"]),
        "clip_len": int(a["clip_len"]),
        "height": int(a["height"]),
        "width": int(a["width"]),
    }


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


def extract_features(
    vqvae_ckpt: str | os.PathLike,
    model_ckpt: str | os.PathLike,
    fmri_root: str | os.PathLike,
    frames_h5: str | os.PathLike,
    out_h5: str | os.PathLike,
    cfg: dict[str, Any],
    grid: str,
    threads: int = 1,
    device: str = "cpu",
    batch_size: int = 64,
) -> None:
    """Write ``features.h5``: per stimulus and kept layer, one pooled vector per TR.

    Parameters
    ----------
    vqvae_ckpt : path-like
        ``vqvae.pt`` of the tokenizer.
    model_ckpt : path-like
        ``model.pt`` of the pretrained GPT.
    fmri_root : path-like
        The fMRI dataset folder (:class:`~cortexscale.data.fmri.FmriDataset`); every stimulus
        of its ``runs.tsv`` gets features for its longest run's TR count.
    frames_h5 : path-like
        The pretraining corpus; its attrs give the model's frame rate (``fps / time_stride``),
        ``clip_len``, ``height`` and ``width``.
    out_h5 : path-like
        Output file (written atomically).
    cfg : dict
        The config's ``features:`` section: ``layers`` (block indices, negative from the end)
        and ``pooling`` (``"mean"`` or ``"max"`` over the clip's tokens).
    grid : str
        Grid-point name, stored in the attrs (and checked against the model when it parses).
    threads : int
    device : str
    batch_size : int
        Clips per forward pass.
    """
    t0 = time.perf_counter()
    cfg = check_cfg(cfg)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, found {batch_size!r}")
    frames_h5, out_h5 = Path(frames_h5), Path(out_h5)
    for path in (vqvae_ckpt, model_ckpt, frames_h5):
        if not Path(path).is_file():
            raise FileNotFoundError(f"features input not found: {path}")
    prepare_outputs([out_h5], "features")
    dev = setup_device(device, threads)
    attrs = _frames_attrs(frames_h5)
    vqvae = VQVAE.from_checkpoint(vqvae_ckpt, map_location=dev).eval()
    gpt = GPT.from_checkpoint(model_ckpt, map_location=dev)
    mcfg = gpt.config
    latent = vqvae.config.latent_shape((attrs["clip_len"], attrs["height"], attrs["width"]))
    if tuple(latent) != mcfg.shape:
        raise ValueError(
            f"{vqvae_ckpt} turns {frames_h5}'s {attrs['clip_len']}x{attrs['height']}x"
            f"{attrs['width']} clips into a {tuple(latent)} token grid, but {model_ckpt} "
            f"expects {mcfg.shape}"
        )
    if vqvae.config.codebook_size != mcfg.vocab_size:
        raise ValueError(
            f"{vqvae_ckpt} has {vqvae.config.codebook_size} codes but {model_ckpt} expects "
            f"a vocabulary of {mcfg.vocab_size}"
        )
    try:
        point = parse_name(grid)
    except ValueError:
        point = None  # not a sweep name: nothing to check
    if point is not None and point.model_key != (mcfg.hidden, mcfg.layers, mcfg.heads):
        raise ValueError(
            f"grid {grid!r} names (hidden, layers, heads) = {point.model_key}, but "
            f"{model_ckpt} holds {(mcfg.hidden, mcfg.layers, mcfg.heads)}"
        )
    layers = resolve_layers(cfg["layers"], mcfg.layers)

    ds = FmriDataset(fmri_root)
    tr, fps = ds.tr, attrs["fps"]
    stimuli = ds.stimuli
    for stim in stimuli:
        if "/" in stim or not stim:
            raise ValueError(f"{fmri_root}/runs.tsv: stimulus name {stim!r} cannot be an HDF5 "
                             "group name (empty or containing '/')")
    prov = provenance(cfg, stage="features", grid=grid, model=os.fspath(model_ckpt))
    with atomic_path(out_h5) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["layers"] = np.asarray(layers, dtype=np.int64)
        f.attrs["tr"] = tr
        f.attrs["grid"] = grid
        f.attrs["pooling"] = cfg["pooling"]
        f.attrs["fps"] = fps
        f.attrs["clip_len"] = attrs["clip_len"]
        f.attrs.update(prov)
        for i, stim in enumerate(stimuli):
            n_tr = ds.stimulus_n_tr(stim)
            frames = ds.stimulus_frames(stim, fps, attrs["height"], attrs["width"])
            movie_s, scan_s = frames.shape[0] / fps, n_tr * tr
            if abs(movie_s - scan_s) > tr:
                raise ValueError(
                    f"stimulus {stim!r} ({ds.stimulus_path(stim)}) lasts {movie_s:.2f} s but "
                    f"its longest run has {n_tr} TRs of {tr} s ({scan_s:.2f} s); expected at "
                    "most one TR of difference"
                )
            feats = stimulus_features(
                vqvae, gpt, frames, n_tr, tr, fps, attrs["clip_len"], layers, cfg["pooling"],
                batch_size, dev,
            )
            g = f.create_group(stim)
            for k, x in feats.items():
                if not np.isfinite(x).all():
                    raise ValueError(f"features of {stim!r} layer {k} hold NaN/inf values")
                g.create_dataset(f"layer{k}", data=x)
            print(
                f"[features {grid}] {i + 1}/{len(stimuli)} {stim}: {n_tr} TRs, "
                f"{frames.shape[0]} frames, {time.perf_counter() - t0:.1f}s",
                file=sys.stderr,
            )
