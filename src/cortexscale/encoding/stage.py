"""The encoding stage: features of one grid point + fMRI of one subject -> per-parcel r.

For every run of the subject the stimulus's features (``/{stimulus}/layer{k}`` of
``features.h5``) are cut to the run's TR count, z-scored per run and delayed (FIR);
ridge penalties are chosen per parcel by cross-validation over training runs, the model
is refit on all training runs and scored (Pearson r) on the test runs, with the responses
to repeats of a test stimulus averaged. See ``docs/formats.md`` ("Encoding").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from cortexscale.config import section
from cortexscale.data.fmri import FmriDataset
from cortexscale.encoding.delays import make_delays, zscore_per_run
from cortexscale.encoding.metrics import pearson_r
from cortexscale.encoding.noise_ceiling import ncsnr, noise_ceiling_nsd, normalised_score
from cortexscale.encoding.ridge import ridge_cv, ridge_predict
from cortexscale.encoding.significance import block_permutation_test
from cortexscale.io.atomic import prepare_outputs, write_json, write_tsv
from cortexscale.io.hdf5 import open_h5
from cortexscale.io.provenance import provenance

__all__ = ["TSV_COLUMNS", "check_encoding_config", "run_encoding"]

TSV_COLUMNS = (
    "parcel", "roi", "r", "alpha", "n_train", "n_test", "noise_ceiling", "score_normalised",
    "p", "significant",
)


def _log(msg: str) -> None:
    print(f"cortexscale encode: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------- config
def check_encoding_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the config's ``encoding`` section against the schema and fill defaults.

    Raises
    ------
    ValueError
        On an unknown key or a value of the wrong type or range, naming the key, the
        allowed values and the value given.
    """
    return section("encoding", cfg)


def alpha_grid(cfg: dict[str, Any]) -> np.ndarray:
    """The penalties ``logspace(min, max, n)`` of a checked ``encoding`` section, (k,)."""
    a = cfg["alphas"]
    return np.logspace(a["min"], a["max"], a["n"])


# --------------------------------------------------------------------------- features
def _pick_layer(f: h5py.File, path: Path, layer: int | None) -> int:
    if "layers" not in f.attrs:
        raise ValueError(f"{path} lacks the root attribute 'layers' (int array of kept blocks)")
    layers = [int(k) for k in np.atleast_1d(f.attrs["layers"])]
    if not layers:
        raise ValueError(f"{path}: root attribute 'layers' is empty")
    if layer is None:
        return layers[-1]
    if int(layer) not in layers:
        raise ValueError(f"{path}: layer {layer} is not stored; attribute 'layers' = {layers}")
    return int(layer)


def _read_features(f: h5py.File, path: Path, stimulus: str, layer: int) -> np.ndarray:
    key = f"{stimulus}/layer{layer}"
    if key not in f:
        raise KeyError(f"{path} has no dataset {key!r} (features of stimulus {stimulus!r})")
    x = f[key][()]
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{path}[{key!r}] has shape {x.shape} and dtype {x.dtype}; expected float (n_TR, d)"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{path}[{key!r}] holds NaN or inf; expected finite features")
    return x


def _align(
    feats: np.ndarray, resp: np.ndarray, run: str, key: str, feat_path: Path, resp_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Cut features and responses of one run to a common TR count.

    Features longer than the run are cut to the run (a stimulus's features cover its
    longest run); features shorter by one TR trim the run's end; shorter by more is an error.
    """
    n_feat, n_resp = feats.shape[0], resp.shape[0]
    if n_resp - n_feat > 1:
        raise ValueError(
            f"features {feat_path}[{key!r}] have {n_feat} TRs but run {run!r} in {resp_path} "
            f"has {n_resp} TRs; at most 1 TR of difference is trimmed"
        )
    n = min(n_feat, n_resp)
    if n_feat != n_resp:
        _log(
            f"run {run!r}: {n_resp} TRs in {resp_path}, {n_feat} in {feat_path}[{key!r}]; "
            f"both cut to {n}"
        )
    return feats[:n], resp[:n]


def _load_runs(ds: FmriDataset, features_h5: Path, subject: str, parcels: np.ndarray,
               layer: int | None) -> tuple[int, list[dict[str, Any]]]:
    """Aligned features and ROI responses of every run of ``subject``.

    Returns
    -------
    layer : int
    runs : list of dict
        ``run, stimulus, split, x (n_TR, d), y (n_TR, n_roi)`` per run, table order.
    """
    runs = ds.runs[ds.runs["subject"] == subject]
    if runs.empty:
        raise KeyError(f"subject {subject!r} has no runs in {ds.root / 'runs.tsv'}")
    resp_path = ds.root / f"{subject}.h5"
    out = []
    with open_h5(features_h5, "a feature cache (cortexscale features)") as f:
        layer = _pick_layer(f, features_h5, layer)
        for row in runs.itertuples(index=False):
            key = f"{row.stimulus}/layer{layer}"
            x = _read_features(f, features_h5, row.stimulus, layer)
            y = ds.responses(subject, row.run)[:, parcels]
            x, y = _align(x, y, row.run, key, features_h5, resp_path)
            out.append({"run": row.run, "stimulus": row.stimulus, "split": row.split,
                        "x": x, "y": y})
    return layer, out


# --------------------------------------------------------------------------- design
def _design(runs: list[dict[str, Any]], delays: list[int]) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Concatenate runs: z-scored, delayed features (n, d * n_delays), z-scored responses
    (n, v) and the run index per row (n,).

    Raises
    ------
    ValueError
        If a delay is as long as a run (the delayed copy would hold no sample of it).
    """
    longest = max(abs(int(d)) for d in delays)
    for r in runs:
        if longest >= r["x"].shape[0]:
            raise ValueError(
                f"encoding.delays: a delay of {longest} TRs does not fit run "
                f"{r.get('run', r.get('stimulus'))!r} of {r['x'].shape[0]} TRs; expected delays "
                f"shorter than the shortest run"
            )
    groups = np.concatenate([np.full(r["x"].shape[0], i) for i, r in enumerate(runs)])
    x = zscore_per_run(np.concatenate([r["x"] for r in runs]).astype(np.float64), groups)
    y = zscore_per_run(np.concatenate([r["y"] for r in runs]).astype(np.float64), groups)
    return make_delays(x, delays, groups), y, groups


def _average_repeats(test: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per test stimulus, responses averaged over its repeats (cut to the
    shortest repeat); each repeat is z-scored before averaging."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for r in test:
        merged.setdefault(r["stimulus"], []).append(r)
    out = []
    for stimulus, reps in merged.items():
        n = min(r["y"].shape[0] for r in reps)
        y = np.mean([zscore_per_run(r["y"][:n].astype(np.float64)) for r in reps], axis=0)
        out.append({"run": stimulus, "stimulus": stimulus, "x": reps[0]["x"][:n], "y": y,
                    "n_repeats": len(reps)})
    return out


def _repeat_stack(test: list[dict[str, Any]]) -> np.ndarray | None:
    """Z-scored test repeats stacked as (n_repeats, n_TR, v), stimuli concatenated in time;
    None unless every test stimulus was shown the same number (>= 2) of times."""
    merged: dict[str, list[np.ndarray]] = {}
    for r in test:
        merged.setdefault(r["stimulus"], []).append(r["y"])
    counts = {len(reps) for reps in merged.values()}
    if len(counts) != 1 or counts.pop() < 2:
        return None
    per_stimulus = []
    for reps in merged.values():
        n = min(y.shape[0] for y in reps)
        per_stimulus.append(np.stack([zscore_per_run(y[:n].astype(np.float64)) for y in reps]))
    return np.concatenate(per_stimulus, axis=1)


# --------------------------------------------------------------------------- stage
def run_encoding(
    features_h5: str | os.PathLike,
    fmri_root: str | os.PathLike,
    subject: str,
    roi: str,
    out_tsv: str | os.PathLike,
    cfg: dict[str, Any],
    grid: str,
    layer: int | None = None,
) -> dict[str, Any]:
    """Fit and score the encoding model of one grid point, subject and ROI.

    Parameters
    ----------
    features_h5 : path-like
        ``results/features/{grid}.h5``.
    fmri_root : path-like
        The fMRI dataset folder (read with :class:`~cortexscale.data.fmri.FmriDataset`).
    subject, roi : str
    out_tsv : path-like
        ``results/encoding/{grid}/{subject}/{roi}.tsv``; the sidecar goes next to it
        with suffix ``.json``.
    cfg : dict
        The config's ``encoding`` section (unknown keys are an error).
    grid : str
        Grid-point name, recorded in the sidecar.
    layer : int, optional
        Block index of the features; default the last of the file's ``layers`` attribute.

    Returns
    -------
    sidecar : dict
        What was written to the JSON sidecar.
    """
    cfg = check_encoding_config(cfg)
    features_h5, out_tsv = Path(features_h5), Path(out_tsv)
    if not features_h5.is_file():
        raise FileNotFoundError(f"features file {features_h5} does not exist")
    prepare_outputs([out_tsv, out_tsv.with_suffix(".json")], "encode")
    ds = FmriDataset(fmri_root)
    parcels = ds.roi_parcels(roi)  # (v,)
    layer, runs = _load_runs(ds, features_h5, subject, parcels, layer)
    train = [r for r in runs if r["split"] == "train"]
    repeats = _repeat_stack([r for r in runs if r["split"] == "test"])
    test = _average_repeats([r for r in runs if r["split"] == "test"])
    if len(train) < 2 or not test:
        raise ValueError(
            f"subject {subject!r} in {ds.root / 'runs.tsv'} has {len(train)} train run(s) and "
            f"{len(test)} test stimulus(es); need at least 2 train runs and 1 test stimulus"
        )
    n_folds = min(cfg["cv_folds"], len(train))
    if n_folds < cfg["cv_folds"]:
        _log(f"cv_folds {cfg['cv_folds']} capped to the {len(train)} train runs")

    x_train, y_train, groups = _design(train, cfg["delays"])
    x_test, y_test, _ = _design(test, cfg["delays"])
    alphas = alpha_grid(cfg)
    fit = ridge_cv(x_train, y_train, groups, alphas, n_folds=n_folds, score=cfg["score"],
                   dtype=cfg["dtype"], chunk_size=cfg["chunk_size"], backend=cfg["backend"],
                   gap=cfg["gap"])
    pred = ridge_predict(x_test, fit.coef)  # (n_test, v)
    r = pearson_r(y_test, pred)  # (v,)
    r[~fit.valid] = np.nan
    # noise ceiling (NSD, % of variance of the repeat-averaged test data) and the
    # Algonauts 2023 normalised score; NaN when the test data has no repeats
    if repeats is not None:
        nc = noise_ceiling_nsd(ncsnr(repeats), repeats.shape[0])
    else:
        nc = np.full(r.shape, np.nan)
    normalised = normalised_score(r, nc)
    if cfg["n_permutations"]:
        block = min(cfg["permutation_block_trs"], max(1, y_test.shape[0] // 2))
        perm = block_permutation_test(
            y_test, pred, block_size=block, n_perm=cfg["n_permutations"], q=cfg["fdr_q"],
        )
        p_values = np.where(np.isnan(r), np.nan, perm.p_values)
        significant = perm.significant & ~np.isnan(r)
    else:
        p_values, significant = np.full(r.shape, np.nan), np.zeros(r.shape, dtype=bool)
    excluded = parcels[np.isnan(r)]
    if excluded.size:
        _log(f"{excluded.size} parcel(s) excluded (constant or non-finite): {excluded.tolist()}")

    table = pd.DataFrame({
        "parcel": parcels, "roi": roi, "r": r, "alpha": fit.best_alpha,
        "n_train": x_train.shape[0], "n_test": x_test.shape[0], "noise_ceiling": nc,
        "score_normalised": normalised, "p": p_values, "significant": significant,
    })
    write_tsv(out_tsv, table[list(TSV_COLUMNS)])
    scored = r[~np.isnan(r)]

    def stat(fn, values=scored):
        values = values[~np.isnan(values)]
        return float(fn(values)) if values.size else None

    sidecar = {
        "grid": grid, "subject": subject, "roi": roi, "layer": layer,
        "mean_r": stat(np.mean), "median_r": stat(np.median), "max_r": stat(np.max),
        "mean_noise_ceiling": stat(np.mean, nc), "mean_normalised": stat(np.mean, normalised),
        "n_significant": int(significant.sum()), "n_permutations": cfg["n_permutations"],
        "n_parcels": int(parcels.size), "n_excluded": int(excluded.size),
        "excluded_parcels": excluded.tolist(),
        "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0]),
        "train_runs": [t["run"] for t in train], "test_stimuli": [t["stimulus"] for t in test],
        "n_folds": int(n_folds), "alphas": alphas.tolist(),
        "features": str(features_h5), "fmri_root": str(fmri_root),
        **provenance(cfg),
    }
    write_json(out_tsv.with_suffix(".json"), sidecar)
    return sidecar
