"""The pretrained-model stage (``workflow/rules/pretrained.smk``; Matsuyama et al. 2023):
tiny models, feature caches, per-voxel layer x kernel encoding, ensembles, tables.

**Features** (``pretrained-features``; docs/formats.md, "Pretrained-model features"), of two
stimulus kinds:

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
(:func:`~cortexscale.models.vision.layer_maps`), max-pooled with each kernel of
``pool_kernels`` (:mod:`cortexscale.features.hidden_states`) and stored as
``/{group}/layer{k}_pool{s}`` float32 ``(n, d)``. Batches of ``batch_size`` images bound the
memory (only one batch of hidden states is alive at a time). An existing output file is a
cache: datasets already there (same model source and frame alignment) are not computed
again, and the model is not even loaded when nothing is missing. On a CUDA device the model
runs in bf16 (``precision: auto``); features are stored as float32.

**Encoding** (``pretrained-encode``): every candidate ``layer{k}_pool{s}`` is a feature set
of :func:`~cortexscale.encoding.selection.select_feature_sets`, which picks one per parcel
(vertex) by inner cross-validation on the training data and scores it once on the test set.

- Videos (``FmriDataset``): as the VideoGPT encoding stage: features cut to each run,
  z-scored per run, FIR delays, CV folds by run, test repeats averaged.
- Images (Algonauts 2023 / NSD): a seeded permutation of the images gives the test set (its
  first ``n_test``), the training pool (the rest) and its first ``n_train`` (0: all) as the
  training set; inner CV folds are contiguous blocks of the permuted training set; features
  and responses are z-scored with the training statistics.

Each fit writes a per-parcel TSV, a JSON sidecar (the row of the table) and an ``.npz`` of
the test predictions, which ensembles average (:func:`ensemble`, ``pretrained-ensemble``).
``pretrained-aggregate`` collects the sidecars into the tables of the sweep
(:func:`collect_pretrained`) and their scaling fits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cortexscale.config import section
from cortexscale.errors import ConfigError, InputError, MissingInputError
from cortexscale.logs import get_logger
from cortexscale.stages.common import settings

if TYPE_CHECKING:
    import h5py
    import pandas as pd

__all__ = [
    "CACHE_EXPECTED", "SAMPLE_COLUMNS", "TABLE_COLUMNS", "TSV_COLUMNS", "collect_pretrained",
    "encode_images", "encode_video", "ensemble", "extract_pretrained", "register",
    "write_submission",
]

#: What a pretrained feature cache is, for the errors of the stages that read one.
CACHE_EXPECTED = "a pretrained feature cache (cortexscale pretrained-features)"

# noise_ceiling (percent of variance) and score_normalised (the Algonauts 2023 challenge
# score, percent) beside r: NaN where no noise ceiling can be had; test_split_*: the release's
# own test images when their responses (test_split/test_fmri) are present
TSV_COLUMNS = ("parcel", "roi", "r", "alpha", "layer", "pool", "n_train", "n_test",
               "noise_ceiling", "score_normalised", "test_split_r", "test_split_score")
TABLE_COLUMNS = (
    "model", "kind", "family", "members", "n_params", "subject", "roi", "n_parcels",
    "n_train", "n_test", "mean_r", "median_r", "max_r", "mean_noise_ceiling",
    "mean_normalised", "median_normalised", "top_layer", "top_pool",
)
SAMPLE_COLUMNS = ("model", "family", "n_params", "subject", "roi", "n_train", "mean_r",
                  "median_r")

log = get_logger(__name__)


# =========================================================================== build
def _model_spec(s: dict[str, Any], name: str) -> dict[str, Any]:
    models = {m["name"]: m for m in s["pretrained_models"]["models"]}
    if name not in models:
        raise ConfigError(f"pretrained_models.models has no model {name!r}; "
                          f"configured: {sorted(models)}")
    return models[name]


def cmd_pretrained_build(args: argparse.Namespace) -> None:
    s = settings(args, ["pretrained_models", "seed"])
    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.models.vision import build_tiny

    prepare_outputs([args.out_dir / name for name in args.name], "pretrained-build")
    for name in args.name:
        m = _model_spec(s, name)
        if not m.get("build"):
            raise ConfigError(f"pretrained model {name!r} has no 'build' architecture; only "
                              "tiny random models (build: vit|clip|convnext|dinov2) are built")
        build_tiny(m["build"], args.out_dir / name, seed=s["seed"],
                   hidden=m.get("hidden", 32), layers=m.get("layers", 2),
                   image_size=s["pretrained_models"]["image_size"])


# =========================================================================== features
def _video_stimuli(fmri_root: Path, frames_per_tr: int) -> Iterator[tuple[str, int, Callable]]:
    from cortexscale.data.fmri import FmriDataset
    from cortexscale.features.hidden_states import frame_index_per_tr
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
                        raise InputError(f"{p}: image does not decode: {err}") from err
                yield out

        yield group, len(images), batches


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
    import h5py
    import torch

    from cortexscale.features.hidden_states import dataset_name
    from cortexscale.io.atomic import atomic_path, prepare_outputs
    from cortexscale.io.hdf5 import open_h5
    from cortexscale.io.provenance import config_hash, provenance
    from cortexscale.models.vision import resolve_layer_indices

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
                    log.info(f"{out_h5} was made from another model or alignment: recomputed")
        except ValueError as err:  # a damaged cache is rebuilt, not fatal
            log.info(f"{err}: recomputed")
    loaded = None
    if n_hidden is None:
        loaded, n_hidden = _load(model_source, device, cfg)
    layers = resolve_layer_indices(list(cfg["layers"]), n_hidden, str(model_source))
    names = [dataset_name(k, s) for k in layers for s in kernels]
    with open_h5(cached_file, CACHE_EXPECTED) if cached_file else _null() as f:
        missing = _wanted(f, groups, names)
        n_cached = sum(len(names) for _ in groups) - sum(len(v) for v in missing.values())
        n_params = int(f.attrs["n_params"]) if f is not None and "n_params" in f.attrs else None
    if not missing:
        log.info(f"{out_h5}: all {n_cached} datasets cached; nothing computed")
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
                log.info(f"{group}: {len(missing[group])} dataset(s), {n} rows")
    seconds = time.perf_counter() - start
    computed = sum(len(v) for v in missing.values())
    log.info(f"{name}: {computed} computed, {n_cached} cached, {seconds:.1f} s")
    return {"computed": computed, "cached": n_cached, "seconds": seconds,
            "n_params": loaded.n_params}


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _load(source, device: str, cfg: dict[str, Any]):
    """The model at the config's precision, and its number of hidden states."""
    import torch

    from cortexscale.models.vision import hidden_state_count, load_pretrained

    precision = cfg["precision"]
    if precision == "auto":
        precision = "bf16" if str(device).startswith("cuda") else "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    loaded = load_pretrained(source, device=device, dtype=dtype)
    return loaded, hidden_state_count(loaded, device, dtype)


def _extract_group(f: h5py.File, loaded, group: str, n: int, batches: Callable,
                   names: list[str], cfg: dict[str, Any]) -> None:
    from cortexscale.features.hidden_states import parse_dataset_name, pooled_features
    from cortexscale.models.vision import layer_maps

    m = cfg["frames_per_tr"] if f.attrs["kind"] == "videos" else 1
    wanted = [parse_dataset_name(d) for d in names]
    device = next(loaded.model.parameters()).device
    row = 0
    for images in batches(cfg["batch_size"]):
        pix = loaded.processor(images=images, return_tensors="pt")["pixel_values"]
        maps = layer_maps(loaded, pix.to(device))  # layer_maps runs under torch.no_grad
        k_rows = len(images) // m
        for (layer, kernel), dname in zip(wanted, names, strict=True):
            x = pooled_features(maps[layer], kernel, m)
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


def cmd_pretrained_features(args: argparse.Namespace) -> None:
    s = settings(args, ["pretrained_models", "subjects"])
    extract_pretrained(
        args.model, args.name, args.out, s["pretrained_models"], fmri_root=args.fmri_root,
        nsd_root=args.nsd_root, subjects=s.get("subjects"), device=args.device,
        threads=args.threads,
    )


# =========================================================================== encoding
def _candidates(f: h5py.File, path: Path, group: str) -> list[str]:
    if group not in f:
        raise InputError(f"{path} has no group {group!r}; stored: {sorted(f.keys())[:10]}")
    names = sorted(k for k in f[group].keys() if k.startswith("layer") and "_pool" in k)
    if not names:
        raise InputError(f"{path}[{group!r}] holds no layer{{k}}_pool{{s}} datasets")
    return names


def _select_names(names: list[str], layers: Sequence[int] | None,
                  pools: Sequence[int] | None, path: Path) -> list[str]:
    """Keep the candidates of the given layers / pools (None: all)."""
    from cortexscale.features.hidden_states import parse_dataset_name

    keep = [n for n in names
            if (layers is None or parse_dataset_name(n)[0] in layers)
            and (pools is None or parse_dataset_name(n)[1] in pools)]
    if not keep:
        raise InputError(f"{path}: no candidate among {names} matches layers={layers} "
                         f"pools={pools}")
    return keep


def _ridge_kw(enc: dict[str, Any]) -> dict[str, Any]:
    """The ridge options of a checked ``encoding`` section."""
    return {"score": enc["score"], "dtype": enc["dtype"], "chunk_size": enc["chunk_size"],
            "backend": enc["backend"]}


def _fit(sets, y_train, groups, y_test, alphas, enc, n_folds):
    from cortexscale.encoding.selection import select_feature_sets

    return select_feature_sets(sets, y_train, groups, y_test, alphas, n_folds=n_folds,
                               **_ridge_kw(enc))


def _curve(sets, y_train, y_test, alphas, enc, pre) -> list[tuple[int, np.ndarray]]:
    """The sample-size curve of ``pretrained_models.sample_size`` (inner folds:
    ``encoding.cv_folds`` contiguous blocks)."""
    from cortexscale.encoding.model_sweep import sample_size_curve

    ss = pre["sample_size"]
    return sample_size_curve(sets, y_train, y_test, alphas, n_folds=enc["cv_folds"],
                             n_points=ss["n_points"], smallest=ss["min"], largest=ss["max"],
                             **_ridge_kw(enc))


def _write(out_tsv: Path, table: pd.DataFrame, sidecar: dict[str, Any], y_pred: np.ndarray,
           y_test: np.ndarray, parcels: np.ndarray,
           noise_ceiling: np.ndarray | None = None) -> dict[str, Any]:
    from cortexscale.io.atomic import atomic_path, write_json, write_tsv

    write_tsv(out_tsv, table[list(TSV_COLUMNS)])
    with atomic_path(out_tsv.with_suffix(".npz")) as tmp:
        with open(tmp, "wb") as fh:
            nc = np.full(parcels.shape, np.nan) if noise_ceiling is None else noise_ceiling
            np.savez(fh, y_pred=y_pred.astype(np.float32), y_test=y_test.astype(np.float32),
                     parcels=parcels, noise_ceiling=np.asarray(nc, dtype=np.float64))
    write_json(out_tsv.with_suffix(".json"), sidecar)
    return sidecar


def _write_rois(out_dir: Path, rois: list[str], cols: list[np.ndarray], parcels: list[np.ndarray],
                res, names: list[str], y_test: np.ndarray, n_train: int,
                curve: list[tuple[int, np.ndarray]], nc: np.ndarray | None,
                meta: dict[str, Any], test_split: dict[str, Any] | None = None
                ) -> dict[str, dict[str, Any]]:
    """Split one fit over all ROIs' parcels into per-ROI outputs.

    ``nc`` (percent, one per fit column) gives the challenge score beside r; ``test_split``
    (``r`` and ``nc`` per fit column, ``n_images``) the scores on the release's test images.
    """
    import pandas as pd

    from cortexscale.encoding.metrics import r_stats
    from cortexscale.encoding.model_sweep import score_stats
    from cortexscale.features.hidden_states import parse_dataset_name

    out = {}
    for roi, c, par in zip(rois, cols, parcels, strict=True):
        choice = res.choice[c]
        layer = np.array([parse_dataset_name(names[k])[0] if k >= 0 else -1 for k in choice])
        pool = np.array([parse_dataset_name(names[k])[1] if k >= 0 else -1 for k in choice])
        r = res.r_test[c]
        score, scores = score_stats(r, None if nc is None else nc[c])
        ts: dict[str, Any] = {"test_split": None}
        ts_r = ts_score = np.full(r.shape, np.nan)
        if test_split is not None:
            ts_r = test_split["r"][c]
            ts_score, ts_stats = score_stats(
                ts_r, None if test_split["nc"] is None else test_split["nc"][c])
            ts = {"test_split": {"n_images": test_split["n_images"],
                                 **{k: v for k, v in r_stats(ts_r).items() if k != "max_r"},
                                 **ts_stats}}
        table = pd.DataFrame({"parcel": par, "roi": roi, "r": r, "alpha": res.best_alpha[c],
                              "layer": layer, "pool": pool, "n_train": n_train,
                              "n_test": y_test.shape[0],
                              "noise_ceiling": np.nan if nc is None else nc[c],
                              "score_normalised": score, "test_split_r": ts_r,
                              "test_split_score": ts_score})

        def mode(a):
            return int(np.bincount(a[a >= 0]).argmax()) if (a >= 0).any() else None

        chosen = choice[choice >= 0]
        sidecar = {
            **meta, "roi": roi, "n_parcels": int(par.size),
            "n_excluded": int(np.isnan(r).sum()), "n_train": int(n_train),
            "n_test": int(y_test.shape[0]), **r_stats(r), **scores, **ts,
            "top_layer": mode(layer), "top_pool": mode(pool),
            "choice_counts": {names[i]: int((chosen == i).sum()) for i in np.unique(chosen)},
            "candidates": names,
            "sample_size": [{"n_train": n, **{k: v for k, v in r_stats(rr[c]).items()
                                              if k != "max_r"}} for n, rr in curve],
        }
        out[roi] = _write(out_dir / f"{roi}.tsv", table, sidecar, res.y_pred[:, c],
                          y_test[:, c], par, None if nc is None else nc[c])
    return out


def encode_video(features_h5, fmri_root, subject: str, rois: list[str], out_dir, enc_cfg,
                 pre_cfg, model: str, layers=None, pools=None, seed: int = 0
                 ) -> dict[str, dict[str, Any]]:
    """Per-parcel layer x kernel selection for a video fMRI dataset: one subject, every ROI
    of ``rois`` fit at once (parcels are independent), written per ROI to
    ``out_dir/{roi}.tsv`` (+ ``.json``, ``.npz``)."""
    from cortexscale.data.fmri import FmriDataset
    from cortexscale.encoding.design import (
        align,
        average_repeats,
        feature_design,
        features_only,
        repeat_stack,
        response_design,
    )
    from cortexscale.encoding.noise_ceiling import ncsnr, noise_ceiling_nsd
    from cortexscale.io.hdf5 import open_h5
    from cortexscale.io.provenance import provenance
    from cortexscale.stages.encoding import alpha_grid

    enc, pre = section("encoding", enc_cfg), section("pretrained_models", pre_cfg)
    features_h5, out_dir = Path(features_h5), Path(out_dir)
    ds = FmriDataset(fmri_root)
    parcels = [ds.roi_parcels(roi) for roi in rois]
    allp = np.concatenate(parcels)
    cols = np.split(np.arange(allp.size), np.cumsum([p.size for p in parcels])[:-1])
    runs = ds.runs[ds.runs["subject"] == subject]
    if runs.empty:
        raise InputError(f"subject {subject!r} has no runs in {ds.root / 'runs.tsv'}")
    per_set: dict[str, list[dict[str, Any]]] = {}
    with open_h5(features_h5, CACHE_EXPECTED) as f:
        first = str(runs.iloc[0]["stimulus"])
        names = _select_names(_candidates(f, features_h5, first), layers, pools, features_h5)
        for row in runs.itertuples(index=False):
            y = ds.responses(subject, row.run)[:, allp]
            for name in names:
                key = f"{row.stimulus}/{name}"
                if key not in f:
                    raise InputError(f"{features_h5} has no dataset {key!r}")
                x, yy = align(f[key][()], y, row.run, key, features_h5, ds.subject_path(subject))
                per_set.setdefault(name, []).append(
                    {"run": row.run, "stimulus": row.stimulus, "split": row.split, "x": x,
                     "y": yy})
    # the responses are the same for every candidate set (cut to the last set's TRs): the
    # train/test split, the averaged test repeats and their stack are made once
    y_runs = per_set[names[-1]]
    train_y = [r for r in y_runs if r["split"] == "train"]
    test_raw = [r for r in y_runs if r["split"] == "test"]
    test_y = average_repeats(test_raw)
    if len(train_y) < 2 or not test_y:
        raise InputError(f"subject {subject!r}: {len(train_y)} train run(s), {len(test_y)} test "
                         "stimulus(es); need at least 2 and 1")
    repeats = repeat_stack(test_raw)
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, runs_ in per_set.items():
        train = [r for r in runs_ if r["split"] == "train"]
        test = average_repeats(features_only([r for r in runs_ if r["split"] == "test"]))
        x_tr, groups = feature_design(train, enc["delays"])
        x_te, test_groups = feature_design(test, enc["delays"])
        sets[name] = (x_tr, x_te)
    y_train = response_design(train_y, groups)
    y_test = response_design(test_y, test_groups)
    alphas = alpha_grid(enc)
    n_folds = min(enc["cv_folds"], np.unique(groups).size)
    res = _fit(sets, y_train, groups, y_test, alphas, enc, n_folds)
    nc = noise_ceiling_nsd(ncsnr(repeats), repeats.shape[0]) if repeats is not None else None
    curve = _curve(sets, y_train, y_test, alphas, enc, pre)
    meta = {"model": model, "subject": subject, "features": str(features_h5),
            **provenance({"encoding": enc, "pretrained_models": pre})}
    return _write_rois(out_dir, list(rois), cols, parcels, res, names, y_test,
                       y_train.shape[0], curve, nc, meta)


def _nsd_roi(sub, roi: str, path: Path) -> np.ndarray:
    """Vertex ids of an ROI (lh: 0.., rh: offset by the lh count)."""
    if roi not in sub.rois:
        raise InputError(f"ROI {roi!r} is not in the masks of {path}; found {sorted(sub.rois)}")
    mask = sub.rois[roi]
    n_lh = sub.responses["lh"].shape[1]
    return np.concatenate([np.flatnonzero(mask["lh"]), n_lh + np.flatnonzero(mask["rh"])])


def _both(per_hemi: dict[str, np.ndarray] | None, axis: int = -1) -> np.ndarray | None:
    return None if per_hemi is None else np.concatenate([per_hemi["lh"], per_hemi["rh"]], axis)


def _read_sets(f: h5py.File, path: Path, group: str, names: list[str], n: int, what: str
               ) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        key = f"{group}/{name}"
        if key not in f:
            raise InputError(f"{path} has no dataset {key!r} ({what}); rerun "
                             "pretrained-features to complete the cache")
        x = f[key][()]
        if x.shape[0] != n:
            raise InputError(f"{path}[{key}] has {x.shape[0]} rows; expected {n} ({what}, one "
                             "row per image)")
        out[name] = x.astype(np.float64)
    return out


def write_submission(out_dir: str | os.PathLike, pred: np.ndarray, n_lh: int) -> list[Path]:
    """The challenge's submission files of one subject: ``lh_pred_test.npy`` and
    ``rh_pred_test.npy``, float32 (n_test_images, n_vertices[hemi]), rows in the sorted
    order of ``test_split/test_images``.

    Parameters
    ----------
    out_dir : path-like
        ``.../subjXX`` (created).
    pred : ndarray, shape (n_test_images, n_lh + n_rh)
        Predictions of every challenge-space vertex, lh first.
    n_lh : int
    """
    from cortexscale.io.atomic import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for h, part in (("lh", pred[:, :n_lh]), ("rh", pred[:, n_lh:])):
        path = out_dir / f"{h}_pred_test.npy"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(part, dtype=np.float32))
        paths.append(path)
    return paths


def encode_images(features_h5, nsd_root, subject: str, rois: list[str], out_dir, enc_cfg,
                  pre_cfg, model: str, layers=None, pools=None, seed: int = 0,
                  submission_dir=None) -> dict[str, dict[str, Any]]:
    """Per-vertex layer x kernel selection for an image dataset (Algonauts 2023 layout),
    every ROI of ``rois`` fit at once, written per ROI to ``out_dir/{roi}.tsv``.

    The held-out images (``image_split.n_test``) give r; their noise ceiling, when the
    subject has NSD's ncsnr and trial counts (``training_split/training_ncsnr``,
    ``training_trials.npy``), the challenge score (:func:`~cortexscale.encoding.
    noise_ceiling.noise_ceiling_challenge` over the held-out images' counts). When the
    release's test images are there (``test_split/test_images``, features in group
    ``{subject}/test_split``), the same fit predicts them: scored when
    ``test_split/test_fmri`` is present (with the organisers' noise ceiling when present),
    and, with ``submission_dir``, written as the challenge's submission (every vertex; see
    :func:`write_submission`), in response units.
    """
    from cortexscale.data.nsd import read_nsd_subject
    from cortexscale.encoding.model_sweep import image_split, pearson_or_nan, zscore_with
    from cortexscale.encoding.noise_ceiling import noise_ceiling_challenge
    from cortexscale.io.hdf5 import open_h5
    from cortexscale.io.provenance import provenance
    from cortexscale.stages.encoding import alpha_grid

    enc, pre = section("encoding", enc_cfg), section("pretrained_models", pre_cfg)
    features_h5, out_dir = Path(features_h5), Path(out_dir)
    sub = read_nsd_subject(Path(nsd_root) / subject)
    parcels = [_nsd_roi(sub, roi, sub.root) for roi in rois]
    n_lh = sub.n_vertices["lh"]
    y_all = np.concatenate([sub.responses["lh"], sub.responses["rh"]], axis=1)
    n_ct = len(sub.test_images)
    if submission_dir is not None and not n_ct:
        raise MissingInputError(f"{sub.root / 'test_split' / 'test_images'} holds no PNG "
                                "image; a submission predicts the release's test images")
    # every vertex once: all of them for a submission, else the union of the ROIs' (targets
    # are independent, so a vertex in several ROIs is fit once and shared)
    ids = (np.arange(y_all.shape[1]) if submission_dir is not None
           else np.unique(np.concatenate(parcels)))
    cols = [np.searchsorted(ids, p) for p in parcels]
    y = y_all[:, ids].astype(np.float64)
    split = pre["image_split"]
    test, pool = image_split(y.shape[0], split["n_test"], 0, seed)
    train = pool[:split["n_train"]] if split["n_train"] else pool
    with open_h5(features_h5, CACHE_EXPECTED) as f:
        names = _select_names(_candidates(f, features_h5, subject), layers, pools, features_h5)
        raw = _read_sets(f, features_h5, subject, names, y.shape[0],
                         f"the {y.shape[0]} training images of {sub.root}")
        raw_ct = (_read_sets(f, features_h5, f"{subject}/test_split", names, n_ct,
                             f"the {n_ct} test images of {sub.root}") if n_ct else {})
    n_folds = enc["cv_folds"]
    alphas = alpha_grid(enc)

    def design(idx_train, with_ct=False):
        out = {}
        for name, x in raw.items():
            parts = zscore_with(x[idx_train], x[test], *([raw_ct[name]] if with_ct else []))
            out[name] = (parts[0], np.concatenate(parts[1:]))
        ya, yb = zscore_with(y[idx_train], y[test])
        return out, ya, yb

    # one fit predicts the held-out images and the release's test images (rows after them;
    # their responses are not used in the fit, r is computed on each part apart)
    sets, y_tr, y_te = design(train, with_ct=bool(n_ct))
    groups = np.arange(train.size) * n_folds // train.size
    y_fit_test = np.concatenate([y_te, np.zeros((n_ct, y.shape[1]))]) if n_ct else y_te
    fit = _fit(sets, y_tr, groups, y_fit_test, alphas, enc, n_folds)
    n_te = y_te.shape[0]
    res = type(fit)(fit.names, fit.choice, fit.inner_scores, fit.best_alpha,
                    pearson_or_nan(y_te, fit.y_pred[:n_te], fit.choice), fit.y_pred[:n_te])
    nc = None
    if sub.ncsnr is not None:
        nc = noise_ceiling_challenge(_both(sub.ncsnr)[ids], sub.trials[test])
    test_split = None
    if n_ct:
        mu, sd = y[train].mean(0), y[train].std(0)
        pred_ct = fit.y_pred[n_te:] * np.where(sd > 0, sd, 1.0) + mu  # response units
        if sub.test_responses is not None:
            test_nc = _both(sub.test_noise_ceiling)
            test_split = {"n_images": n_ct, "nc": None if test_nc is None else test_nc[ids],
                          "r": pearson_or_nan(_both(sub.test_responses, 1)[:, ids], pred_ct,
                                              fit.choice)}
        if submission_dir is not None:
            write_submission(submission_dir, pred_ct, n_lh)
    curve = []
    if pre["sample_size"]["n_points"]:
        # the subsets are prefixes of the whole (seeded) pool, z-scored with its statistics
        psets, p_tr, p_te = design(pool)
        curve = _curve(psets, p_tr, p_te, alphas, enc, pre)
    meta = {"model": model, "subject": subject, "features": str(features_h5),
            **provenance({"encoding": enc, "pretrained_models": pre})}
    return _write_rois(out_dir, list(rois), cols, parcels, res, names, y_te, train.size,
                       curve, nc, meta, test_split)


def cmd_pretrained_encode(args: argparse.Namespace) -> None:
    s = settings(args, ["encoding", "pretrained_models", "seed"])
    fn, root = (encode_images, args.nsd_root) if args.nsd_root else (encode_video,
                                                                      args.fmri_root)
    if root is None:
        raise ConfigError("give --fmri-root (videos) or --nsd-root (images)")
    from cortexscale.io.atomic import prepare_outputs

    sub_dir = args.submission_dir
    if sub_dir is not None and not args.nsd_root:
        raise ConfigError("--submission-dir: submissions are of the Algonauts 2023 test images "
                          "(give --nsd-root)")
    prepare_outputs([args.out_dir / f"{roi}.tsv" for roi in args.rois]
                    + ([sub_dir / f"{h}_pred_test.npy" for h in ("lh", "rh")] if sub_dir else []),
                    "pretrained-encode")
    fn(args.features, root, args.subject, args.rois, args.out_dir, s.get("encoding"),
       s["pretrained_models"], args.name, layers=args.layers, pools=args.pools,
       seed=s["seed"], **({"submission_dir": sub_dir} if sub_dir else {}))


# =========================================================================== ensembles
def ensemble(member_npzs: Sequence[str | os.PathLike], out_tsv, name: str, members: list[str],
             subject: str, roi: str) -> dict[str, Any]:
    """Average the test predictions of several models (same subject, ROI and test set).

    The noise-normalised score uses the members' per-parcel noise ceiling (the same test
    set, so the same ceiling), when they have one.
    """
    import pandas as pd

    from cortexscale.encoding.metrics import r_stats
    from cortexscale.encoding.model_sweep import mean_prediction, score_stats
    from cortexscale.io.provenance import provenance

    out_tsv = Path(out_tsv)
    preds, y_test, parcels, nc = [], None, None, None
    for path in map(Path, member_npzs):
        if not path.is_file():
            raise MissingInputError(f"member predictions {path} do not exist")
        with np.load(path) as z:
            if y_test is None:
                y_test, parcels = z["y_test"].astype(np.float64), z["parcels"]
                nc = z["noise_ceiling"] if "noise_ceiling" in z.files else None
            elif z["y_pred"].shape != y_test.shape or not np.array_equal(z["parcels"], parcels):
                raise InputError(f"{path}: predictions {z['y_pred'].shape} do not match the "
                                 f"first member's {y_test.shape} (same test set and parcels)")
            preds.append(z["y_pred"].astype(np.float64))
    if not preds:
        raise ValueError(f"ensemble {name!r} has no members")
    y_pred, r = mean_prediction(preds, y_test)
    if nc is not None and not np.isfinite(nc).any():
        nc = None  # the members had no noise ceiling (saved as NaN)
    score, scores = score_stats(r, nc)
    first = json.loads(Path(member_npzs[0]).with_suffix(".json").read_text())
    n_train = first.get("n_train")
    table = pd.DataFrame({"parcel": parcels, "roi": roi, "r": r, "alpha": np.nan,
                          "layer": -1, "pool": -1, "n_train": n_train,
                          "n_test": y_test.shape[0],
                          "noise_ceiling": np.nan if nc is None else nc,
                          "score_normalised": score, "test_split_r": np.nan,
                          "test_split_score": np.nan})
    sidecar = {
        "model": name, "members": members, "subject": subject, "roi": roi,
        "n_parcels": int(parcels.size), "n_excluded": int(np.isnan(r).sum()),
        "n_train": n_train, "n_test": int(y_test.shape[0]), **r_stats(r), **scores,
        "test_split": None,
        "top_layer": None, "top_pool": None, "sample_size": [], **provenance(None),
    }
    return _write(out_tsv, table, sidecar, y_pred, y_test, parcels, nc)


def cmd_pretrained_ensemble(args: argparse.Namespace) -> None:
    from cortexscale.io.atomic import prepare_outputs

    prepare_outputs([args.out_dir / subject / f"{roi}.tsv" for subject in args.subjects
                     for roi in args.rois], "pretrained-ensemble")
    for subject in args.subjects:
        for roi in args.rois:
            preds = [args.encoding_root / m / subject / f"{roi}.npz" for m in args.members]
            ensemble(preds, args.out_dir / subject / f"{roi}.tsv", args.name, args.members,
                     subject, roi)


# =========================================================================== tables
def collect_pretrained(sidecars: Sequence[str | os.PathLike], models: list[dict[str, Any]],
                       n_params: dict[str, int] | None = None
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model table (one row per model or ensemble x subject x ROI) and the sample-size
    table (one row per model x subject x ROI x training size)."""
    import pandas as pd

    spec = {m["name"]: m for m in models}
    n_params = n_params or {}
    rows, curve = [], []
    for path in map(Path, sidecars):
        s = json.loads(path.read_text())
        name = s["model"]
        m = spec.get(name, {})
        members = s.get("members")
        params = (sum(n_params.get(k) or 0 for k in members) if members
                  else n_params.get(name, m.get("n_params")))
        family = m.get("family", "") if not members else "ensemble"
        rows.append({
            "model": name, "kind": "ensemble" if members else "model", "family": family,
            "members": "+".join(members) if members else "", "n_params": params,
            **{k: s.get(k) for k in ("subject", "roi", "n_parcels", "n_train", "n_test",
                                     "mean_r", "median_r", "max_r", "mean_noise_ceiling",
                                     "mean_normalised", "median_normalised", "top_layer",
                                     "top_pool")},
        })
        for pt in s.get("sample_size", []):
            curve.append({"model": name, "family": family, "n_params": params,
                          "subject": s["subject"], "roi": s["roi"], **pt})
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table = table.sort_values(["kind", "family", "n_params", "model", "subject", "roi"],
                              kind="stable", na_position="last").reset_index(drop=True)
    curves = pd.DataFrame(curve, columns=list(SAMPLE_COLUMNS))
    return table, curves


def cmd_pretrained_aggregate(args: argparse.Namespace) -> None:
    s = settings(args, ["pretrained_models"])

    from cortexscale.encoding.model_sweep import scaling_fits
    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.io.hdf5 import open_h5
    from cortexscale.report.html import page_path, write_table_pages
    from cortexscale.stages.aggregate import write_table

    tables = [args.out, args.sample_size, args.fits]  # each with its HTML page (the report)
    prepare_outputs([*tables, *map(page_path, tables), *([args.figure] * bool(args.figure))],
                    "pretrained-aggregate")
    n_params = {}
    for path in args.features:
        with open_h5(path, CACHE_EXPECTED) as f:
            n_params[str(f.attrs["model"])] = int(f.attrs["n_params"])
    for m in s["pretrained_models"]["models"]:  # a configured count wins (e.g. full model)
        if m.get("n_params"):
            n_params[m["name"]] = int(m["n_params"])
    table, curves = collect_pretrained(args.encoding, s["pretrained_models"]["models"],
                                       n_params)
    write_table(table, args.out)
    write_table(curves, args.sample_size)
    write_table(scaling_fits(table, curves), args.fits)
    write_table_pages(tables)
    if args.figure:
        from cortexscale.report.figures import plot_pretrained

        plot_pretrained(table, curves, args.figure)


# =========================================================================== commands
def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare the stage's commands on the CLI (see :mod:`cortexscale.stages`)."""
    p = add("pretrained-build", cmd_pretrained_build,
            "save a tiny random vision model of the synthetic study (save_pretrained)")
    p.add_argument("--name", required=True, nargs="+",
                   help="model names in pretrained_models.models")
    p.add_argument("--out-dir", required=True, type=Path, help="each model goes to OUT_DIR/NAME")

    p = add("pretrained-features", cmd_pretrained_features,
            "max-pooled layer features of a pretrained vision model (HDF5 cache)",
            threads=True, device=True)
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--model", required=True, help="save_pretrained folder or cached hub id")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fmri-root", type=Path, help="video fMRI dataset (runs.tsv layout)")
    src.add_argument("--nsd-root", type=Path, help="image dataset (Algonauts 2023 layout)")
    p.add_argument("--out", required=True, type=Path)

    p = add("pretrained-encode", cmd_pretrained_encode,
            "per-voxel layer x pool selection and ridge for one model and subject",
            threads=True)
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--features", required=True, type=Path)
    p.add_argument("--subject", required=True)
    p.add_argument("--rois", required=True, nargs="+", help="ROIs (fit at once, written apart)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fmri-root", type=Path)
    src.add_argument("--nsd-root", type=Path)
    p.add_argument("--layers", type=int, nargs="+", help="candidate layers (default all)")
    p.add_argument("--pools", type=int, nargs="+", help="candidate pool kernels (default all)")
    p.add_argument("--out-dir", required=True, type=Path,
                   help="writes OUT_DIR/ROI.tsv, .json, .npz")
    p.add_argument("--submission-dir", type=Path,
                   help="images: writes the challenge submission DIR/{lh,rh}_pred_test.npy")

    p = add("pretrained-ensemble", cmd_pretrained_ensemble,
            "average the test predictions of several models", common=False)
    p.add_argument("--name", required=True)
    p.add_argument("--members", required=True, nargs="+")
    p.add_argument("--subjects", required=True, nargs="+")
    p.add_argument("--rois", required=True, nargs="+")
    p.add_argument("--encoding-root", required=True, type=Path,
                   help="reads ENCODING_ROOT/MEMBER/SUBJECT/ROI.npz")
    p.add_argument("--out-dir", required=True, type=Path, help="writes OUT_DIR/SUBJECT/ROI.*")

    p = add("pretrained-aggregate", cmd_pretrained_aggregate,
            "tables and scaling fits of the pretrained-model sweep")
    p.add_argument("--encoding", required=True, nargs="+", type=Path, help="JSON sidecars")
    p.add_argument("--features", required=True, nargs="+", type=Path, help="feature files")
    p.add_argument("--out", required=True, type=Path, help="tables/pretrained.tsv")
    p.add_argument("--sample-size", required=True, type=Path)
    p.add_argument("--figure", type=Path,
                   help="figures/pretrained.png: r against parameters and training samples")
    p.add_argument("--fits", required=True, type=Path)
