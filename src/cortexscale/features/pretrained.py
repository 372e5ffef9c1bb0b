"""Features of an existing vision model: every layer, max-pooled at several kernel sizes.

Two stimulus kinds (docs/formats.md, "Pretrained-model features"):

- **videos** (the fMRI dataset layout of ``FmriDataset``): for TR ``i`` of a stimulus the
  model sees the movie frame at or just before the TR's onset ``i * tr`` (frame
  ``floor(i * tr * fps)`` of the decoded movie, the same alignment as the VideoGPT path's
  last clip frame). With ``frames_per_tr = m > 1`` it sees ``m`` frames spread evenly over
  the TR that ends at the onset (``i * tr - j * tr / m``, ``j < m``, clamped at 0), and the
  pooled features are averaged over them. Group ``/{stimulus}``, ``n_TR`` rows (the longest
  run of the stimulus).
- **images** (Algonauts 2023 / NSD layout, one folder per subject): one row per image in
  the subject's sorted order (= response rows). Group ``/{subject}``.

Every kept hidden state (``layers``; ``[]`` = every block) is turned into a map
(``models.pretrained.layer_maps``), max-pooled with each kernel of ``pool_kernels`` and
stored as ``/{group}/layer{k}_pool{s}`` float32 ``(n, d)``. Batches of ``batch_size``
images bound the memory (only one batch of hidden states is alive at a time). An existing
output file is a cache: datasets already there (same model source and frame alignment) are
not computed again, and the model is not even loaded when nothing is missing. On a CUDA
device the model runs in bf16 (``precision: auto``); features are stored as float32.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cortexscale.config import section
from cortexscale.io.atomic import atomic_path, prepare_outputs
from cortexscale.io.hdf5 import open_h5
from cortexscale.io.provenance import config_hash, provenance

__all__ = ["CACHE_EXPECTED", "dataset_name", "extract_pretrained", "frame_index_per_tr", "parse_dataset_name"]

#: What a pretrained feature cache is, for the errors of the stages that read one.
CACHE_EXPECTED = "a pretrained feature cache (cortexscale pretrained-features)"


def _log(msg: str) -> None:
    print(f"cortexscale pretrained-features: {msg}", file=sys.stderr, flush=True)


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


# --------------------------------------------------------------------------- stimuli
def _video_stimuli(fmri_root: Path, frames_per_tr: int) -> Iterator[tuple[str, int, Callable]]:
    from cortexscale.data.fmri import FmriDataset
    from cortexscale.io.video import read_video

    ds = FmriDataset(fmri_root)
    tr = ds.tr
    for stim in ds.stimuli:
        n_tr = ds.stimulus_n_tr(stim)

        def batches(batch_size: int, stim: str = stim, n_tr: int = n_tr):
            frames, fps = read_video(ds.stimulus_path(stim))
            idx = frame_index_per_tr(n_tr, tr, fps, frames.shape[0], frames_per_tr).ravel()
            step = max(frames_per_tr, batch_size - batch_size % frames_per_tr)
            for start in range(0, idx.size, step):
                yield [frames[j] for j in idx[start:start + step]]

        yield stim, n_tr, batches


def _image_stimuli(root: Path, subjects: list[str]) -> Iterator[tuple[str, int, Callable]]:
    from cortexscale.data.nsd import read_nsd_subject

    for subject in subjects:
        sub = read_nsd_subject(root / subject)  # checks image count == response rows
        # the challenge's test images (a submission's rows) as group {subject}/test_split
        groups = [(subject, sub.images)] + (
            [(f"{subject}/test_split", sub.test_images)] if sub.test_images else [])
        yield from _image_groups(groups)


def _image_groups(groups: list[tuple[str, list[Path]]]) -> Iterator[tuple[str, int, Callable]]:
    from PIL import Image

    for group, images in groups:

        def batches(batch_size: int, paths: list[Path] = images):
            for start in range(0, len(paths), batch_size):
                out = []
                for p in paths[start:start + batch_size]:
                    try:
                        with Image.open(p) as im:
                            out.append(np.asarray(im.convert("RGB")))
                    except OSError as err:
                        raise ValueError(f"{p}: image does not decode: {err}") from err
                yield out

        yield group, len(images), batches


# --------------------------------------------------------------------------- extraction
def _wanted(f: h5py.File | None, groups: list[tuple[str, int, Callable]], names: list[str]
            ) -> dict[str, list[str]]:
    missing = {}
    for group, n, _ in groups:
        miss = [d for d in names
                if f is None or f"{group}/{d}" not in f or f[f"{group}/{d}"].shape[0] != n]
        if miss:
            missing[group] = miss
    return missing


def extract_pretrained(
    model_source: str | os.PathLike,
    name: str,
    out_h5: str | os.PathLike,
    cfg: dict[str, Any] | None,
    *,
    fmri_root: str | os.PathLike | None = None,
    nsd_root: str | os.PathLike | None = None,
    subjects: list[str] | None = None,
    device: str = "cpu",
    threads: int = 1,
) -> dict[str, Any]:
    """Extract (or complete) the feature cache of one model.

    Parameters
    ----------
    model_source : path-like or str
        A ``save_pretrained`` folder or a hub id in the local cache.
    name : str
        The model's name in the study (recorded in the file).
    out_h5 : path-like
        The feature file; an existing one is completed, not recomputed.
    cfg : dict
        The ``pretrained_models`` config section.
    fmri_root : path-like, optional
        A video fMRI dataset (``FmriDataset`` layout); or
    nsd_root, subjects : optional
        An image dataset (Algonauts 2023 layout, ``nsd_root/{subject}``).
    device : str
        Torch device; ``cuda`` runs in bf16 unless ``precision: fp32``.

    Returns
    -------
    info : dict
        ``computed`` (datasets written), ``cached`` (datasets reused), ``seconds``,
        ``n_params``.
    """
    import torch

    cfg = section("pretrained_models", cfg)
    torch.set_num_threads(max(1, threads))
    out_h5 = Path(out_h5)
    prepare_outputs([out_h5], "pretrained-features")
    if (fmri_root is None) == (nsd_root is None):
        raise ValueError("give exactly one of fmri_root (videos) or nsd_root (images)")
    kernels = sorted({int(k) for k in cfg["pool_kernels"]})
    if nsd_root is not None:
        kind = "images"
        groups = list(_image_stimuli(Path(nsd_root), list(subjects or [])))
    else:
        kind = "videos"
        groups = list(_video_stimuli(Path(fmri_root), cfg["frames_per_tr"]))
    ident = {"source": str(model_source), "kind": kind, "frames_per_tr": cfg["frames_per_tr"]}
    ident_hash = config_hash(ident)
    start = time.perf_counter()
    cached_file = None
    # layer indices need the model's depth: stored in the cache, else from the model
    n_hidden = None
    if out_h5.is_file():
        try:
            with open_h5(out_h5, CACHE_EXPECTED) as f:
                if f.attrs.get("extract_hash") == ident_hash:
                    cached_file = out_h5
                    n_hidden = int(f.attrs["n_hidden_states"])
                else:
                    _log(f"{out_h5} was made from another model or alignment: recomputed")
        except ValueError as err:  # a damaged cache is rebuilt, not fatal
            _log(f"{err}: recomputed")
    loaded = None
    if n_hidden is None:
        loaded, n_hidden = _load(model_source, device, cfg)
    from cortexscale.models.pretrained import resolve_layer_indices

    layers = resolve_layer_indices(list(cfg["layers"]), n_hidden, str(model_source))
    names = [dataset_name(k, s) for k in layers for s in kernels]
    with open_h5(cached_file, CACHE_EXPECTED) if cached_file else _null() as f:
        missing = _wanted(f, groups, names)
        n_cached = sum(len(names) for _ in groups) - sum(len(v) for v in missing.values())
        n_params = int(f.attrs["n_params"]) if f is not None and "n_params" in f.attrs else None
    if not missing:
        _log(f"{out_h5}: all {n_cached} datasets cached; nothing computed")
        return {"computed": 0, "cached": n_cached, "seconds": 0.0, "n_params": n_params}
    if loaded is None:
        loaded, n_hidden = _load(model_source, device, cfg)
    with atomic_path(out_h5) as tmp:
        if cached_file is not None:
            shutil.copyfile(cached_file, tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs.update({
                "model": name, "source": str(model_source), "kind": kind,
                "architecture": loaded.architecture, "n_params": loaded.n_params,
                "n_hidden_states": n_hidden, "extract_hash": ident_hash,
                "frames_per_tr": cfg["frames_per_tr"],
            })
            layers_all = sorted(set(layers) | {int(x) for x in f.attrs.get("layers", [])})
            kernels_all = sorted(set(kernels) | {int(x) for x in f.attrs.get("pool_kernels", [])})
            f.attrs["layers"] = np.asarray(layers_all, dtype=np.int64)
            f.attrs["pool_kernels"] = np.asarray(kernels_all, dtype=np.int64)
            if fmri_root is not None:
                from cortexscale.data.fmri import FmriDataset

                f.attrs["tr"] = FmriDataset(fmri_root).tr
            for key, value in provenance(cfg, model=name).items():
                f.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)
            for group, n, batches in groups:
                if group not in missing:
                    continue
                _extract_group(f, loaded, group, n, batches, missing[group], cfg)
                _log(f"{group}: {len(missing[group])} dataset(s), {n} rows")
    seconds = time.perf_counter() - start
    computed = sum(len(v) for v in missing.values())
    _log(f"{name}: {computed} computed, {n_cached} cached, {seconds:.1f} s")
    return {"computed": computed, "cached": n_cached, "seconds": seconds,
            "n_params": loaded.n_params}


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _load(source, device: str, cfg: dict[str, Any]):
    import torch

    from cortexscale.models.pretrained import load_pretrained

    precision = cfg["precision"]
    if precision == "auto":
        precision = "bf16" if str(device).startswith("cuda") else "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    loaded = load_pretrained(source, device=device, dtype=dtype)
    # the depth: one forward pass of a blank image
    blank = np.zeros((32, 32, 3), np.uint8)
    pix = loaded.processor(images=[blank], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = loaded.model(pixel_values=pix.to(device, dtype), output_hidden_states=True)
    hidden = getattr(out, "hidden_states", None)
    if not hidden:
        raise ValueError(f"{source}: the model returns no hidden_states; only models that "
                         "return hidden states of images are supported")
    return loaded, len(hidden)


def _extract_group(f: h5py.File, loaded, group: str, n: int, batches: Callable,
                   names: list[str], cfg: dict[str, Any]) -> None:
    import torch

    from cortexscale.models.pretrained import layer_maps, max_pool_features

    m = cfg["frames_per_tr"] if f.attrs["kind"] == "videos" else 1
    wanted = [parse_dataset_name(d) for d in names]
    device = next(loaded.model.parameters()).device
    row = 0
    for images in batches(cfg["batch_size"]):
        pix = loaded.processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            maps = layer_maps(loaded, pix.to(device))
        k_rows = len(images) // m
        for (layer, kernel), dname in zip(wanted, names, strict=True):
            x = max_pool_features(maps[layer], kernel).cpu().numpy()
            x = x.reshape(k_rows, m, -1).mean(axis=1).astype(np.float32)
            key = f"{group}/{dname}"
            if row == 0:
                if key in f:
                    del f[key]
                f.create_dataset(key, shape=(n, x.shape[1]), dtype=np.float32,
                                 chunks=True)
            f[key][row:row + k_rows] = x
        row += k_rows
        del maps
    if row != n:
        raise ValueError(f"{group}: {row} rows extracted, expected {n}")
