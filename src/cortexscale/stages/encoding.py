"""The encoding stage (``workflow/rules/encoding.smk``): features of one grid point + fMRI of
one subject -> per-parcel r.

For every run of the subject the stimulus's features (``/{stimulus}/layer{k}`` of
``features.h5``) are cut to the run's TR count, z-scored per run and delayed (FIR);
ridge penalties are chosen per parcel by cross-validation over training runs, the model
is refit on all training runs and scored (Pearson r) on the test runs, with the responses
to repeats of a test stimulus averaged. See ``docs/formats.md`` ("Encoding").
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cortexscale.config import section
from cortexscale.errors import ConfigError, InputError, MissingInputError
from cortexscale.logs import Progress, get_logger
from cortexscale.stages.common import settings

if TYPE_CHECKING:
    import h5py

    from cortexscale.data.fmri import FmriDataset

__all__ = [
    "TSV_COLUMNS", "alpha_grid", "check_encoding_config", "register", "run_encoding",
]

TSV_COLUMNS = (
    "parcel", "roi", "r", "alpha", "n_train", "n_test", "noise_ceiling", "score_normalised",
    "p", "significant",
)

log = get_logger(__name__)


# --------------------------------------------------------------------------- config
def check_encoding_config(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the config's ``encoding`` section against the schema and fill defaults.

    Raises
    ------
    ConfigError
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
        raise InputError(f"{path} lacks the root attribute 'layers' (int array of kept blocks)")
    layers = [int(k) for k in np.atleast_1d(f.attrs["layers"])]
    if not layers:
        raise InputError(f"{path}: root attribute 'layers' is empty")
    if layer is None:
        return layers[-1]
    if int(layer) not in layers:
        raise InputError(f"{path}: layer {layer} is not stored; attribute 'layers' = {layers}")
    return int(layer)


def _read_features(f: h5py.File, path: Path, stimulus: str, layer: int) -> np.ndarray:
    key = f"{stimulus}/layer{layer}"
    if key not in f:
        raise InputError(f"{path} has no dataset {key!r} (features of stimulus {stimulus!r})")
    x = f[key][()]
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise InputError(
            f"{path}[{key!r}] has shape {x.shape} and dtype {x.dtype}; expected float (n_TR, d)"
        )
    if not np.isfinite(x).all():
        raise InputError(f"{path}[{key!r}] holds NaN or inf; expected finite features")
    return x


def _load_runs(ds: FmriDataset, features_h5: Path, subject: str,
               layer: int | None) -> tuple[int, list[dict[str, Any]]]:
    """Aligned features and responses (every parcel) of every run of ``subject``.

    Returns
    -------
    layer : int
    runs : list of dict
        ``run, stimulus, split, x (n_TR, d), y (n_TR, n_parcels)`` per run, table order.
    """
    from cortexscale.encoding.design import align
    from cortexscale.io.hdf5 import open_h5

    runs = ds.runs[ds.runs["subject"] == subject]
    if runs.empty:
        raise InputError(f"subject {subject!r} has no runs in {ds.root / 'runs.tsv'}")
    resp_path = ds.root / f"{subject}.h5"
    out = []
    with open_h5(features_h5, "a feature cache (cortexscale features)") as f:
        layer = _pick_layer(f, features_h5, layer)
        for row in runs.itertuples(index=False):
            key = f"{row.stimulus}/layer{layer}"
            x = _read_features(f, features_h5, row.stimulus, layer)
            y = ds.responses(subject, row.run)
            x, y = align(x, y, row.run, key, features_h5, resp_path)
            out.append({"run": row.run, "stimulus": row.stimulus, "split": row.split,
                        "x": x, "y": y})
    return layer, out


# --------------------------------------------------------------------------- stage
@dataclass(frozen=True)
class _Subject:
    """What the encoding models of one grid point and subject share across ROIs: the runs
    (responses of every parcel) and the designs of the features."""

    ds: FmriDataset
    features_h5: Path
    fmri_root: str | os.PathLike
    subject: str
    layer: int
    train: list[dict[str, Any]]  # train runs, table order
    test_runs: list[dict[str, Any]]  # test runs (repeats apart), table order
    test: list[dict[str, Any]]  # one entry per test stimulus (features only)
    x_train: np.ndarray  # (n_train, d * n_delays)
    groups: np.ndarray  # (n_train,) train run index
    x_test: np.ndarray  # (n_test, d * n_delays)
    test_groups: np.ndarray  # (n_test,) test stimulus index
    n_folds: int


def _load_subject(features_h5: str | os.PathLike, fmri_root: str | os.PathLike, subject: str,
                  outputs: list[Path], cfg: dict[str, Any], layer: int | None) -> _Subject:
    """Read the features and runs of ``subject`` once and build the designs of the features
    (``cfg``: a checked ``encoding`` section); ``outputs`` (tables) are prepared first."""
    from cortexscale.data.fmri import FmriDataset
    from cortexscale.encoding.design import average_repeats, feature_design, features_only
    from cortexscale.io.atomic import prepare_outputs

    features_h5 = Path(features_h5)
    if not features_h5.is_file():
        raise MissingInputError(f"features file {features_h5} does not exist")
    prepare_outputs([p for out in outputs for p in (out, out.with_suffix(".json"))], "encode")
    ds = FmriDataset(fmri_root)
    layer, runs = _load_runs(ds, features_h5, subject, layer)
    train = [r for r in runs if r["split"] == "train"]
    test_runs = [r for r in runs if r["split"] == "test"]
    test = average_repeats(features_only(test_runs))
    if len(train) < 2 or not test:
        raise InputError(
            f"subject {subject!r} in {ds.root / 'runs.tsv'} has {len(train)} train run(s) and "
            f"{len(test)} test stimulus(es); need at least 2 train runs and 1 test stimulus"
        )
    n_folds = min(cfg["cv_folds"], len(train))
    if n_folds < cfg["cv_folds"]:
        log.info(f"cv_folds {cfg['cv_folds']} capped to the {len(train)} train runs")
    x_train, groups = feature_design(train, cfg["delays"])
    x_test, test_groups = feature_design(test, cfg["delays"])
    return _Subject(ds, features_h5, fmri_root, subject, layer, train, test_runs, test,
                    x_train, groups, x_test, test_groups, n_folds)


def _nan_free_mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(np.mean(values)) if values.size else None


def _fit_roi(sub: _Subject, roi: str, out_tsv: Path, cfg: dict[str, Any],
             grid: str) -> dict[str, Any]:
    """Fit, score and write the encoding model of one ROI on the columns of its parcels."""
    import pandas as pd

    from cortexscale.encoding.design import average_repeats, repeat_stack, response_design
    from cortexscale.encoding.metrics import pearson_r, r_stats
    from cortexscale.encoding.noise_ceiling import ncsnr, noise_ceiling_nsd, normalised_score
    from cortexscale.encoding.ridge import ridge_cv, ridge_predict
    from cortexscale.encoding.significance import block_permutation_test
    from cortexscale.io.atomic import write_json, write_tsv
    from cortexscale.io.provenance import provenance

    parcels = sub.ds.roi_parcels(roi)  # (v,)
    test_runs = [{**r, "y": r["y"][:, parcels]} for r in sub.test_runs]
    repeats = repeat_stack(test_runs)
    y_train = response_design(sub.train, sub.groups, parcels)
    y_test = response_design(average_repeats(test_runs), sub.test_groups)
    x_train, x_test = sub.x_train, sub.x_test
    alphas = alpha_grid(cfg)
    fit = ridge_cv(x_train, y_train, sub.groups, alphas, n_folds=sub.n_folds,
                   score=cfg["score"], dtype=cfg["dtype"], chunk_size=cfg["chunk_size"],
                   backend=cfg["backend"], gap=cfg["gap"])
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
        log.info(f"{excluded.size} parcel(s) excluded (constant or non-finite): "
                 f"{excluded.tolist()}")

    table = pd.DataFrame({
        "parcel": parcels, "roi": roi, "r": r, "alpha": fit.best_alpha,
        "n_train": x_train.shape[0], "n_test": x_test.shape[0], "noise_ceiling": nc,
        "score_normalised": normalised, "p": p_values, "significant": significant,
    })
    write_tsv(out_tsv, table[list(TSV_COLUMNS)])
    sidecar = {
        "grid": grid, "subject": sub.subject, "roi": roi, "layer": sub.layer,
        **r_stats(r),
        "mean_noise_ceiling": _nan_free_mean(nc), "mean_normalised": _nan_free_mean(normalised),
        "n_significant": int(significant.sum()), "n_permutations": cfg["n_permutations"],
        "n_parcels": int(parcels.size), "n_excluded": int(excluded.size),
        "excluded_parcels": excluded.tolist(),
        "n_train": int(x_train.shape[0]), "n_test": int(x_test.shape[0]),
        "train_runs": [t["run"] for t in sub.train],
        "test_stimuli": [t["stimulus"] for t in sub.test],
        "n_folds": int(sub.n_folds), "alphas": alphas.tolist(),
        "features": str(sub.features_h5), "fmri_root": str(sub.fmri_root),
        **provenance(cfg),
    }
    write_json(out_tsv.with_suffix(".json"), sidecar)
    return sidecar


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

    ``cortexscale encode`` reads the subject once for all its ROIs; this is the same load
    and fit for one ROI.

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
    out_tsv = Path(out_tsv)
    sub = _load_subject(features_h5, fmri_root, subject, [out_tsv], cfg, layer)
    return _fit_roi(sub, roi, out_tsv, cfg, grid)


# --------------------------------------------------------------------------- command
def cmd_encode(args: argparse.Namespace) -> None:
    s = settings(args, ["encoding"])
    if len(args.roi) != len(args.out):
        raise ConfigError(
            f"encode: --out must give one table per --roi; expected {len(args.roi)} "
            f"({', '.join(args.roi)}), found {len(args.out)}"
        )
    cfg = check_encoding_config(s["encoding"])
    outs = [Path(out) for out in args.out]
    # the features, the runs and the features' designs do not depend on the ROI: read once
    sub = _load_subject(args.features, args.fmri_root, args.subject, outs, cfg, None)
    progress = Progress(log, len(args.roi), f"{args.grid} {args.subject}: ROI")
    for i, (roi, out) in enumerate(zip(args.roi, outs, strict=True), start=1):
        side = _fit_roi(sub, roi, out, cfg, args.grid)
        mean_r = "-" if side["mean_r"] is None else f"{side['mean_r']:.3f}"
        progress.update(i, f"{roi}: {side['n_parcels']} parcels, mean r {mean_r}, "
                           f"{side['n_significant']} significant")


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare the stage's command, ``encode``, on the CLI (see :mod:`cortexscale.stages`)."""
    p = add("encode", cmd_encode, "fit the ridge encoding models of one subject, per ROI",
            threads=True)
    p.add_argument("--grid", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--roi", required=True, nargs="+", help="one or more ROIs")
    p.add_argument("--features", required=True, type=Path)
    p.add_argument("--fmri-root", required=True, type=Path)
    p.add_argument("--out", required=True, nargs="+", type=Path,
                   help="the per-parcel table of each ROI, in --roi order (sidecar beside)")
