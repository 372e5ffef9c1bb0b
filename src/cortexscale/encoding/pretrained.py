"""Encoding with pretrained-model features: per-voxel layer x kernel choice, sample-size
curves, ensembles and the tables of the pretrained-model sweep (Matsuyama et al. 2023).

Arrays only (no torch). The feature cache (``features/pretrained.py``) holds
``/{group}/layer{k}_pool{s}`` per candidate; every candidate is a feature set of
:func:`~cortexscale.encoding.selection.select_feature_sets`, which picks one per parcel
(vertex) by inner cross-validation on the training data and scores it once on the test set.

- Videos (``FmriDataset``): as the VideoGPT encoding stage: features cut to each run,
  z-scored per run, FIR delays, CV folds by run, test repeats averaged.
- Images (Algonauts 2023 / NSD): a seeded permutation of the images gives the test set (its
  first ``n_test``), the training pool (the rest) and its first ``n_train`` (0: all) as the
  training set; inner CV folds are contiguous blocks of the permuted training set; features
  and responses are z-scored with the training statistics.

Each fit writes a per-parcel TSV, a JSON sidecar (the row of the table) and an ``.npz`` of
the test predictions, which ensembles average (:func:`ensemble`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from cortexscale.config import POOLED, section
from cortexscale.encoding.metrics import pearson_r
from cortexscale.encoding.selection import select_feature_sets
from cortexscale.features.pretrained import CACHE_EXPECTED
from cortexscale.io.atomic import atomic_path, write_json, write_tsv
from cortexscale.io.hdf5 import open_h5
from cortexscale.io.provenance import provenance

__all__ = [
    "FIT_COLUMNS", "SAMPLE_COLUMNS", "TABLE_COLUMNS", "collect_pretrained", "encode_images",
    "encode_video", "ensemble", "image_split", "scaling_fits", "write_submission",
]

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
FIT_COLUMNS = ("axis", "series", "subject", "roi", "n_points", "a", "b", "r2",
               "gain_per_decade")


def _log(msg: str) -> None:
    print(f"cortexscale pretrained-encode: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs
def _candidates(f: h5py.File, path: Path, group: str) -> list[str]:
    if group not in f:
        raise KeyError(f"{path} has no group {group!r}; stored: {sorted(f.keys())[:10]}")
    names = sorted(k for k in f[group].keys() if k.startswith("layer") and "_pool" in k)
    if not names:
        raise ValueError(f"{path}[{group!r}] holds no layer{{k}}_pool{{s}} datasets")
    return names


def _select_names(names: list[str], layers: Sequence[int] | None,
                  pools: Sequence[int] | None, path: Path) -> list[str]:
    """Keep the candidates of the given layers / pools (None: all)."""
    from cortexscale.features.pretrained import parse_dataset_name

    keep = [n for n in names
            if (layers is None or parse_dataset_name(n)[0] in layers)
            and (pools is None or parse_dataset_name(n)[1] in pools)]
    if not keep:
        raise ValueError(f"{path}: no candidate among {names} matches layers={layers} "
                         f"pools={pools}")
    return keep


def image_split(n: int, n_test: int, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Test indices and the training pool (in its seeded order) of ``n`` images.

    ``n_test`` images form the test set; the training pool is the rest, cut to its first
    ``n_train`` when ``n_train > 0``. Raises ValueError when the sizes do not fit.
    """
    if not 0 < n_test < n:
        raise ValueError(f"image split: n_test {n_test} must lie in [1, {n - 1}] for {n} "
                         "images")
    order = np.random.default_rng([seed, 7]).permutation(n)
    test, pool = np.sort(order[:n_test]), order[n_test:]
    if n_train:
        if n_train > pool.size:
            raise ValueError(f"image split: n_train {n_train} + n_test {n_test} exceed the "
                             f"{n} images")
        pool = pool[:n_train]
    return test, pool


def _zscore_with(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(a - mu) / sd for a in (train, *others)]


# --------------------------------------------------------------------------- fitting
def _ridge_kw(enc: dict[str, Any], n_folds: int) -> dict[str, Any]:
    return {"n_folds": n_folds, "score": enc["score"], "dtype": enc["dtype"],
            "chunk_size": enc["chunk_size"], "backend": enc["backend"]}


def _fit(sets: dict[str, tuple[np.ndarray, np.ndarray]], y_train, groups, y_test, alphas,
         enc, n_folds) -> Any:
    return select_feature_sets(sets, y_train, groups, y_test, alphas, **_ridge_kw(enc, n_folds))


def _curve(sets, y_train, groups, y_test, alphas, enc, pre, seed: int
           ) -> list[tuple[int, np.ndarray]]:
    """Selection refit on nested log-spaced prefixes of the training set, scored on the fixed
    test set: ``(n_train, r (v,))`` per size. Inner folds are contiguous blocks."""
    ss = pre["sample_size"]
    if not ss["n_points"]:
        return []
    n_folds = enc["cv_folds"]
    total = groups.size if not ss["max"] else min(ss["max"], groups.size)
    lo = min(max(ss["min"], 2 * n_folds), total)
    sizes = np.unique(np.round(np.geomspace(lo, total, ss["n_points"])).astype(int))
    out = []
    for size in sizes:
        g = np.arange(size) * n_folds // size
        sub = {k: (x[:size], xt) for k, (x, xt) in sets.items()}
        res = _fit(sub, y_train[:size], g, y_test, alphas, enc, n_folds)
        out.append((int(size), res.r_test))
    return out


def _stats(r: np.ndarray) -> dict[str, float | None]:
    ok = r[~np.isnan(r)]
    return {"mean_r": float(ok.mean()) if ok.size else None,
            "median_r": float(np.median(ok)) if ok.size else None,
            "max_r": float(ok.max()) if ok.size else None}


def _score_stats(r: np.ndarray, nc: np.ndarray | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Per-parcel challenge score and its summary: ``mean_noise_ceiling`` (percent),
    ``mean_normalised``, ``median_normalised`` (None without a noise ceiling)."""
    from cortexscale.encoding.noise_ceiling import normalised_score

    if nc is None:
        return np.full(r.shape, np.nan), {"mean_noise_ceiling": None, "mean_normalised": None,
                                          "median_normalised": None}
    score = normalised_score(r, nc)
    ok, ok_nc = score[~np.isnan(score)], nc[np.isfinite(nc)]
    return score, {"mean_noise_ceiling": float(ok_nc.mean()) if ok_nc.size else None,
                   "mean_normalised": float(ok.mean()) if ok.size else None,
                   "median_normalised": float(np.median(ok)) if ok.size else None}


def _pearson_or_nan(y: np.ndarray, pred: np.ndarray, choice: np.ndarray) -> np.ndarray:
    r = pearson_r(y, pred)
    r[(choice < 0) | (np.std(pred, axis=0) == 0)] = np.nan
    return r


def _write(out_tsv: Path, table: pd.DataFrame, sidecar: dict[str, Any], y_pred: np.ndarray,
           y_test: np.ndarray, parcels: np.ndarray,
           noise_ceiling: np.ndarray | None = None) -> dict[str, Any]:
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
    from cortexscale.features.pretrained import parse_dataset_name

    out = {}
    for roi, c, par in zip(rois, cols, parcels, strict=True):
        choice = res.choice[c]
        layer = np.array([parse_dataset_name(names[k])[0] if k >= 0 else -1 for k in choice])
        pool = np.array([parse_dataset_name(names[k])[1] if k >= 0 else -1 for k in choice])
        r = res.r_test[c]
        score, score_stats = _score_stats(r, None if nc is None else nc[c])
        ts: dict[str, Any] = {"test_split": None}
        ts_r = ts_score = np.full(r.shape, np.nan)
        if test_split is not None:
            ts_r = test_split["r"][c]
            ts_score, ts_stats = _score_stats(
                ts_r, None if test_split["nc"] is None else test_split["nc"][c])
            ts = {"test_split": {"n_images": test_split["n_images"],
                                 **{k: v for k, v in _stats(ts_r).items() if k != "max_r"},
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
            "n_test": int(y_test.shape[0]), **_stats(r), **score_stats, **ts,
            "top_layer": mode(layer), "top_pool": mode(pool),
            "choice_counts": {names[i]: int((chosen == i).sum()) for i in np.unique(chosen)},
            "candidates": names,
            "sample_size": [{"n_train": n, **{k: v for k, v in _stats(rr[c]).items()
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
    from cortexscale.encoding.noise_ceiling import ncsnr, noise_ceiling_nsd
    from cortexscale.encoding.stage import (
        _align,
        _average_repeats,
        _design,
        _repeat_stack,
        alpha_grid,
    )

    enc, pre = section("encoding", enc_cfg), section("pretrained_models", pre_cfg)
    features_h5, out_dir = Path(features_h5), Path(out_dir)
    ds = FmriDataset(fmri_root)
    parcels = [ds.roi_parcels(roi) for roi in rois]
    allp = np.concatenate(parcels)
    cols = np.split(np.arange(allp.size), np.cumsum([p.size for p in parcels])[:-1])
    runs = ds.runs[ds.runs["subject"] == subject]
    if runs.empty:
        raise KeyError(f"subject {subject!r} has no runs in {ds.root / 'runs.tsv'}")
    per_set: dict[str, list[dict[str, Any]]] = {}
    with open_h5(features_h5, CACHE_EXPECTED) as f:
        first = str(runs.iloc[0]["stimulus"])
        names = _select_names(_candidates(f, features_h5, first), layers, pools, features_h5)
        for row in runs.itertuples(index=False):
            y = ds.responses(subject, row.run)[:, allp]
            for name in names:
                key = f"{row.stimulus}/{name}"
                if key not in f:
                    raise KeyError(f"{features_h5} has no dataset {key!r}")
                x, yy = _align(f[key][()], y, row.run, key, features_h5, ds.subject_path(subject))
                per_set.setdefault(name, []).append(
                    {"run": row.run, "stimulus": row.stimulus, "split": row.split, "x": x,
                     "y": yy})
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    y_train = y_test = groups = repeats = None
    for name, runs_ in per_set.items():
        train = [r for r in runs_ if r["split"] == "train"]
        test_raw = [r for r in runs_ if r["split"] == "test"]
        test = _average_repeats(test_raw)
        if len(train) < 2 or not test:
            raise ValueError(f"subject {subject!r}: {len(train)} train run(s), {len(test)} test "
                             "stimulus(es); need at least 2 and 1")
        x_tr, y_tr, g = _design(train, enc["delays"])
        x_te, y_te, _ = _design(test, enc["delays"])
        sets[name] = (x_tr, x_te)
        y_train, y_test, groups = y_tr, y_te, g
        repeats = _repeat_stack(test_raw)
    alphas = alpha_grid(enc)
    n_folds = min(enc["cv_folds"], np.unique(groups).size)
    res = _fit(sets, y_train, groups, y_test, alphas, enc, n_folds)
    nc = noise_ceiling_nsd(ncsnr(repeats), repeats.shape[0]) if repeats is not None else None
    curve = _curve(sets, y_train, groups, y_test, alphas, enc, pre, seed)
    meta = {"model": model, "subject": subject, "features": str(features_h5),
            **provenance({"encoding": enc, "pretrained_models": pre})}
    return _write_rois(out_dir, list(rois), cols, parcels, res, names, y_test,
                       y_train.shape[0], curve, nc, meta)


def _nsd_roi(sub, roi: str, path: Path) -> np.ndarray:
    """Vertex ids of an ROI (lh: 0.., rh: offset by the lh count)."""
    if roi not in sub.rois:
        raise KeyError(f"ROI {roi!r} is not in the masks of {path}; found {sorted(sub.rois)}")
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
            raise KeyError(f"{path} has no dataset {key!r} ({what}); rerun pretrained-features "
                           "to complete the cache")
        x = f[key][()]
        if x.shape[0] != n:
            raise ValueError(f"{path}[{key}] has {x.shape[0]} rows; expected {n} ({what}, one "
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
    from cortexscale.encoding.noise_ceiling import noise_ceiling_challenge
    from cortexscale.encoding.stage import alpha_grid

    enc, pre = section("encoding", enc_cfg), section("pretrained_models", pre_cfg)
    features_h5, out_dir = Path(features_h5), Path(out_dir)
    sub = read_nsd_subject(Path(nsd_root) / subject)
    parcels = [_nsd_roi(sub, roi, sub.root) for roi in rois]
    n_lh = sub.n_vertices["lh"]
    y_all = np.concatenate([sub.responses["lh"], sub.responses["rh"]], axis=1)
    n_ct = len(sub.test_images)
    if submission_dir is not None and not n_ct:
        raise FileNotFoundError(f"{sub.root / 'test_split' / 'test_images'} holds no PNG image; "
                                "a submission predicts the release's test images")
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
            parts = _zscore_with(x[idx_train], x[test], *([raw_ct[name]] if with_ct else []))
            out[name] = (parts[0], np.concatenate(parts[1:]))
        ya, yb = _zscore_with(y[idx_train], y[test])
        return out, ya, yb

    # one fit predicts the held-out images and the release's test images (rows after them;
    # their responses are not used in the fit, r is computed on each part apart)
    sets, y_tr, y_te = design(train, with_ct=bool(n_ct))
    groups = np.arange(train.size) * n_folds // train.size
    y_fit_test = np.concatenate([y_te, np.zeros((n_ct, y.shape[1]))]) if n_ct else y_te
    fit = _fit(sets, y_tr, groups, y_fit_test, alphas, enc, n_folds)
    n_te = y_te.shape[0]
    res = type(fit)(fit.names, fit.choice, fit.inner_scores, fit.best_alpha,
                    _pearson_or_nan(y_te, fit.y_pred[:n_te], fit.choice), fit.y_pred[:n_te])
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
                          "r": _pearson_or_nan(_both(sub.test_responses, 1)[:, ids], pred_ct,
                                               fit.choice)}
        if submission_dir is not None:
            write_submission(submission_dir, pred_ct, n_lh)
    curve = []
    if pre["sample_size"]["n_points"]:
        # the subsets are prefixes of the whole (seeded) pool, z-scored with its statistics
        psets, p_tr, p_te = design(pool)
        curve = _curve(psets, p_tr, np.zeros(pool.size), p_te, alphas, enc, pre, seed)
    meta = {"model": model, "subject": subject, "features": str(features_h5),
            **provenance({"encoding": enc, "pretrained_models": pre})}
    return _write_rois(out_dir, list(rois), cols, parcels, res, names, y_te, train.size,
                       curve, nc, meta, test_split)


# --------------------------------------------------------------------------- ensembles
def ensemble(member_npzs: Sequence[str | os.PathLike], out_tsv, name: str, members: list[str],
             subject: str, roi: str) -> dict[str, Any]:
    """Average the test predictions of several models (same subject, ROI and test set).

    The noise-normalised score uses the members' per-parcel noise ceiling (the same test
    set, so the same ceiling), when they have one.
    """
    out_tsv = Path(out_tsv)
    preds, y_test, parcels, nc = [], None, None, None
    for path in map(Path, member_npzs):
        if not path.is_file():
            raise FileNotFoundError(f"member predictions {path} do not exist")
        with np.load(path) as z:
            if y_test is None:
                y_test, parcels = z["y_test"].astype(np.float64), z["parcels"]
                nc = z["noise_ceiling"] if "noise_ceiling" in z.files else None
            elif z["y_pred"].shape != y_test.shape or not np.array_equal(z["parcels"], parcels):
                raise ValueError(f"{path}: predictions {z['y_pred'].shape} do not match the "
                                 f"first member's {y_test.shape} (same test set and parcels)")
            preds.append(z["y_pred"].astype(np.float64))
    if not preds:
        raise ValueError(f"ensemble {name!r} has no members")
    y_pred = np.mean(preds, axis=0)
    r = pearson_r(y_test, y_pred)
    r[np.std(y_pred, axis=0) == 0] = np.nan
    if nc is not None and not np.isfinite(nc).any():
        nc = None  # the members had no noise ceiling (saved as NaN)
    score, score_stats = _score_stats(r, nc)
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
        "n_train": n_train, "n_test": int(y_test.shape[0]), **_stats(r), **score_stats,
        "test_split": None,
        "top_layer": None, "top_pool": None, "sample_size": [], **provenance(None),
    }
    return _write(out_tsv, table, sidecar, y_pred, y_test, parcels, nc)


# --------------------------------------------------------------------------- tables
def collect_pretrained(sidecars: Sequence[str | os.PathLike], models: list[dict[str, Any]],
                       n_params: dict[str, int] | None = None
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model table (one row per model or ensemble x subject x ROI) and the sample-size
    table (one row per model x subject x ROI x training size)."""
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


MIN_X = 3  # distinct x values a law is fitted on (two points always fit a line)


def _loglinear(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """``y = a + b log10 x``; NaN coefficients on fewer than ``MIN_X`` distinct x."""
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = np.log10(x[ok]), y[ok]
    if np.unique(x).size < MIN_X:
        return {"n_points": int(x.size), "a": np.nan, "b": np.nan, "r2": np.nan,
                "gain_per_decade": np.nan}
    b, a = np.polyfit(x, y, 1)
    pred = a + b * x
    ss = ((y - y.mean()) ** 2).sum()
    return {"n_points": int(x.size), "a": float(a), "b": float(b),
            "r2": float(1 - ((y - pred) ** 2).sum() / ss) if ss > 0 else np.nan,
            "gain_per_decade": float(b)}


def scaling_fits(table: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """``r = a + b log10(x)`` per ROI (and pooled over ROIs: ``(pooled)``), pooled over subjects: along the
    training-set size per model (``axis = n_train``) and along the parameter count per
    family with at least two models (``axis = n_params``)."""
    rows = []
    for roi in [*sorted(curves["roi"].unique()), POOLED] if not curves.empty else []:
        sub = curves if roi == POOLED else curves[curves["roi"] == roi]
        for model, g in sub.groupby("model"):
            mean = g.groupby("n_train")["mean_r"].mean()
            rows.append({"axis": "n_train", "series": model, "subject": POOLED, "roi": roi,
                         **_loglinear(mean.index.to_numpy(float), mean.to_numpy(float))})
    single = table[table["kind"] == "model"].dropna(subset=["n_params"])
    for roi in [*sorted(single["roi"].unique()), POOLED] if not single.empty else []:
        sub = single if roi == POOLED else single[single["roi"] == roi]
        for family, g in sub.groupby("family"):
            mean = g.groupby("n_params")["mean_r"].mean()
            if mean.size < 2:
                continue  # one model: no axis (with 2, a row that says too few x values)
            rows.append({"axis": "n_params", "series": family, "subject": POOLED, "roi": roi,
                         **_loglinear(mean.index.to_numpy(float), mean.to_numpy(float))})
    return pd.DataFrame(rows, columns=list(FIT_COLUMNS))
