"""Stage 4 (``workflow/rules/features.smk``): TR-aligned features of one pretrained grid point.

Command: ``features``. Reads the tokenizer's ``vqvae.pt``, the grid point's ``model.pt``, the
corpus's ``frames.h5`` attributes (the model's frame rate ``fps / time_stride``,
``clip_len``, ``height``, ``width``) and every stimulus of the fMRI dataset, computes the
features with :func:`cortexscale.features.extract.stimulus_features` and writes
``features.h5`` as in docs/formats.md: ``/{stimulus}/layer{k}`` float32 ``(n_TR, hidden)``,
root attrs ``layers``, ``tr``, ``grid`` and provenance.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cortexscale.config import section
from cortexscale.errors import InputError, MissingInputError
from cortexscale.logs import get_logger
from cortexscale.stages.common import settings

__all__ = ["check_cfg", "cmd_features", "extract_features", "register"]

log = get_logger(__name__)


def check_cfg(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the ``features:`` config section (``layers``, ``pooling``), with defaults.

    Raises
    ------
    ConfigError
        Naming the key, what was expected and what was found.
    """
    return section("features", cfg)


def _frames_attrs(frames_h5: Path) -> dict[str, float]:
    from cortexscale.data.corpus import FRAMES_EXPECTED
    from cortexscale.io.hdf5 import open_h5

    with open_h5(frames_h5, FRAMES_EXPECTED) as f:
        missing = [k for k in ("fps", "time_stride", "clip_len", "height", "width")
                   if k not in f.attrs]
        if missing:
            raise InputError(f"{frames_h5}: root attributes {missing} are missing")
        a = {k: f.attrs[k] for k in ("fps", "time_stride", "clip_len", "height", "width")}
    return {
        "fps": float(a["fps"]) / int(a["time_stride"]),
        "clip_len": int(a["clip_len"]),
        "height": int(a["height"]),
        "width": int(a["width"]),
    }


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
    import h5py
    import numpy as np

    from cortexscale.data.fmri import FmriDataset
    from cortexscale.features.extract import resolve_layers, stimulus_features
    from cortexscale.grid import parse_name
    from cortexscale.io.atomic import atomic_path, prepare_outputs
    from cortexscale.io.provenance import provenance
    from cortexscale.logs import Progress
    from cortexscale.models.device import setup_device
    from cortexscale.models.gpt import GPT
    from cortexscale.models.vqvae import VQVAE

    cfg = check_cfg(cfg)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, found {batch_size!r}")
    frames_h5, out_h5 = Path(frames_h5), Path(out_h5)
    for path in (vqvae_ckpt, model_ckpt, frames_h5):
        if not Path(path).is_file():
            raise MissingInputError(f"features input not found: {path}")
    prepare_outputs([out_h5], "features")
    dev = setup_device(device, threads)
    attrs = _frames_attrs(frames_h5)
    vqvae = VQVAE.from_checkpoint(vqvae_ckpt, map_location=dev).eval()
    gpt = GPT.from_checkpoint(model_ckpt, map_location=dev)
    mcfg = gpt.config
    latent = vqvae.config.latent_shape((attrs["clip_len"], attrs["height"], attrs["width"]))
    if tuple(latent) != mcfg.shape:
        raise InputError(
            f"{vqvae_ckpt} turns {frames_h5}'s {attrs['clip_len']}x{attrs['height']}x"
            f"{attrs['width']} clips into a {tuple(latent)} token grid, but {model_ckpt} "
            f"expects {mcfg.shape}"
        )
    if vqvae.config.codebook_size != mcfg.vocab_size:
        raise InputError(
            f"{vqvae_ckpt} has {vqvae.config.codebook_size} codes but {model_ckpt} expects "
            f"a vocabulary of {mcfg.vocab_size}"
        )
    try:
        point = parse_name(grid)
    except ValueError:
        point = None  # not a sweep name: nothing to check
    if point is not None and point.model_key != (mcfg.hidden, mcfg.layers, mcfg.heads):
        raise InputError(
            f"grid {grid!r} names (hidden, layers, heads) = {point.model_key}, but "
            f"{model_ckpt} holds {(mcfg.hidden, mcfg.layers, mcfg.heads)}"
        )
    layers = resolve_layers(cfg["layers"], mcfg.layers)

    ds = FmriDataset(fmri_root)
    tr, fps = ds.tr, attrs["fps"]
    stimuli = ds.stimuli
    for stim in stimuli:
        if "/" in stim or not stim:
            raise InputError(f"{fmri_root}/runs.tsv: stimulus name {stim!r} cannot be an HDF5 "
                             "group name (empty or containing '/')")
    prov = provenance(cfg, stage="features", grid=grid, model=os.fspath(model_ckpt))
    progress = Progress(log, len(stimuli), f"{grid}: stimulus")
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
                raise InputError(
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
                    raise InputError(f"features of {stim!r} layer {k} hold NaN/inf values")
                g.create_dataset(f"layer{k}", data=x)
            progress.update(i + 1, f"{stim}: {n_tr} TRs, {frames.shape[0]} frames")


def cmd_features(args: argparse.Namespace) -> None:
    """Extract the features of one grid point (``--grid``) for every stimulus."""
    s = settings(args, ["features"])
    extract_features(
        args.vqvae, args.model, args.fmri_root, args.frames, args.out, s["features"],
        grid=args.grid, threads=args.threads, device=args.device,
    )


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare the features stage's command (``add`` as in :func:`cortexscale.cli.build_parser`)."""
    p = add("features", cmd_features, "extract TR-aligned features of one grid point",
            threads=True, device=True)
    p.add_argument("--grid", required=True)
    p.add_argument("--vqvae", required=True, type=Path)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--fmri-root", required=True, type=Path)
    p.add_argument("--frames", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
