"""The study's tidy table: one row per grid point x subject x ROI (``docs/formats.md``)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cortexscale.grid import parse_name
from cortexscale.io.atomic import atomic_path, write_tsv
from cortexscale.references import parse_reference

__all__ = [
    "GRID_COLUMNS", "PARCEL_COLUMNS", "TABLE_COLUMNS", "aggregate", "collect",
    "collect_parcels", "point_dict",
]

GRID_COLUMNS = ("grid", "family", "data_size", "hidden", "layers", "heads", "precision", "seed",
                "budget", "tokens")
GRID_DEFAULTS = {"family": "videogpt", "seed": 0, "budget": 0.0, "tokens": 0}
ENCODING_KEYS = (
    "subject", "roi", "n_parcels", "mean_r", "median_r", "max_r", "mean_normalised",
    "n_significant",
)
SIDECAR_OPTIONAL = ("mean_noise_ceiling",)
SUMMARY_KEYS = ("n_params", "train_flops", "tokens_seen", "final_val_loss", "wall_time_s")
CEILING_COLUMNS = ("mean_noise_ceiling", "ceiling_r")
TABLE_COLUMNS = GRID_COLUMNS + ENCODING_KEYS + CEILING_COLUMNS + SUMMARY_KEYS
SORT_KEYS = ["family", "budget", "data_size", "hidden", "layers", "heads", "precision", "tokens",
             "seed", "subject", "roi"]
FIGURE_NAMES = (
    "scaling_data_size.png", "scaling_params.png", "loss_curves.png", "precision.png",
    "factors.png",
)
PARCEL_OPTIONAL = ("noise_ceiling", "score_normalised")
PARCEL_COLUMNS = GRID_COLUMNS + ("subject", "roi", "parcel", "r", "alpha") + PARCEL_OPTIONAL


def point_dict(name: str) -> dict[str, Any]:
    """The ``GRID_COLUMNS`` of a VideoGPT grid point or a reference point, by its name.

    Reference names (``planted_...``, ``latents_s0``, ``random_s0``) are read by
    ``cortexscale.references.parse_reference``; every other name by
    :func:`cortexscale.grid.parse_name` (which raises on a name it does not know).
    Keys a parser does not give take ``GRID_DEFAULTS``.
    """
    ref = parse_reference(name)
    point = ref if ref is not None else parse_name(name)
    out = {**GRID_DEFAULTS, **point.as_dict()}
    out["grid"] = name
    return {k: out[k] for k in GRID_COLUMNS}


def is_reference(name: str) -> bool:
    """Whether ``name`` is a reference point (not a VideoGPT grid point)."""
    return parse_reference(name) is not None


def _ceiling_r(tsv: pd.DataFrame) -> float:
    """Mean over scored parcels of the ceiling of r, ``sqrt(noise_ceiling / 100)`` (the
    noise ceiling is in % of explainable variance); NaN without a noise ceiling."""
    if "noise_ceiling" not in tsv.columns:
        return float("nan")
    nc = pd.to_numeric(tsv["noise_ceiling"], errors="coerce").to_numpy(dtype=float)
    scored = np.isfinite(pd.to_numeric(tsv["r"], errors="coerce").to_numpy(dtype=float))
    nc = nc[scored & np.isfinite(nc) & (nc >= 0)]
    return float(np.sqrt(nc / 100).mean()) if nc.size else float("nan")


def _read_json(path: Path, keys: Iterable[str], what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from None
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{what} {path} lacks key(s) {missing}; expected {list(keys)}")
    return obj


def _summary_paths(summaries: Mapping[str, Any] | Sequence[Any]) -> dict[str, Path]:
    """Grid name -> summary path; a plain list is keyed by each summary's ``grid`` field."""
    if isinstance(summaries, Mapping):
        return {str(g): Path(p) for g, p in summaries.items()}
    out = {}
    for p in summaries:
        out[str(_read_json(Path(p), ["grid"], "pretraining summary")["grid"])] = Path(p)
    return out


def collect(
    encoding_jsons: Sequence[str | os.PathLike],
    pretrain_summaries: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
) -> pd.DataFrame:
    """Collect encoding sidecars and pretraining summaries into the tidy table.

    Parameters
    ----------
    encoding_jsons : sequence of path-like
        ``results/encoding/{grid}/{subject}/{roi}.json`` sidecars (with the per-parcel
        ``.tsv`` beside each, for the ceiling of r).
    pretrain_summaries : mapping grid -> path-like, or sequence of path-like
        ``results/pretrain/{grid}/summary.json`` of every VideoGPT grid point and
        ``results/reference/{name}/summary.json`` of every reference point in the sidecars.

    Returns
    -------
    table : DataFrame
        Columns ``TABLE_COLUMNS`` (``docs/formats.md``, "Tables"), one row per
        grid point x subject x ROI, sorted stably by grid parameters, subject and ROI.
    """
    summaries = _summary_paths(pretrain_summaries)
    cache: dict[str, dict[str, Any]] = {}
    rows = []
    for path in map(Path, encoding_jsons):
        enc = _read_json(path, ("grid",) + ENCODING_KEYS, "encoding sidecar")
        grid = str(enc["grid"])
        point = point_dict(grid)
        if grid not in summaries:
            raise KeyError(
                f"encoding sidecar {path} is for grid point {grid!r}, which has no pretraining "
                f"summary; summaries given for {sorted(summaries)}"
            )
        if grid not in cache:
            cache[grid] = _read_json(summaries[grid], SUMMARY_KEYS, "pretraining summary")
        tsv = path.with_suffix(".tsv")
        rows.append({
            **point,
            **{k: enc[k] for k in ENCODING_KEYS},
            "mean_noise_ceiling": enc.get("mean_noise_ceiling"),
            "ceiling_r": _ceiling_r(pd.read_csv(tsv, sep="\t")) if tsv.is_file() else np.nan,
            **{k: cache[grid][k] for k in SUMMARY_KEYS},
        })
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    dup = table.duplicated(["grid", "subject", "roi"])
    if dup.any():
        first = table.loc[dup, ["grid", "subject", "roi"]].iloc[0].tolist()
        raise ValueError(f"encoding sidecars repeat (grid, subject, roi) = {first}")
    for col in ("mean_r", "median_r", "max_r", "mean_normalised", "final_val_loss",
                "mean_noise_ceiling", "ceiling_r"):
        table[col] = pd.to_numeric(table[col]).astype(float)
    return table.sort_values(SORT_KEYS, kind="stable").reset_index(drop=True)


def collect_parcels(encoding_jsons: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Collect the per-parcel encoding tables (the ``.tsv`` beside each sidecar).

    Returns
    -------
    parcels : DataFrame
        Columns ``PARCEL_COLUMNS``: one row per grid point x subject x parcel
        (``noise_ceiling`` and ``score_normalised`` NaN where a table lacks them).
    """
    frames = []
    for path in map(Path, encoding_jsons):
        enc = _read_json(path, ("grid", "subject", "roi"), "encoding sidecar")
        tsv = path.with_suffix(".tsv")
        if not tsv.is_file():
            raise FileNotFoundError(f"per-parcel table {tsv} (beside {path.name}) does not exist")
        df = pd.read_csv(tsv, sep="\t")
        missing = [c for c in ("parcel", "r", "alpha") if c not in df.columns]
        if missing:
            raise ValueError(f"{tsv} lacks column(s) {missing}; found {list(df.columns)}")
        for key, value in point_dict(str(enc["grid"])).items():
            df[key] = value
        for col in PARCEL_OPTIONAL:
            if col not in df.columns:
                df[col] = np.nan
        df["subject"], df["roi"] = str(enc["subject"]), str(enc["roi"])
        frames.append(df[list(PARCEL_COLUMNS)])
    if not frames:
        return pd.DataFrame(columns=list(PARCEL_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values([*SORT_KEYS, "parcel"], kind="stable").reset_index(drop=True)


def write_table(df: pd.DataFrame, out_tsv: str | os.PathLike) -> None:
    """Write a table as TSV and as Parquet beside it (same name, ``.parquet``), atomically."""
    write_tsv(out_tsv, df)
    with atomic_path(Path(out_tsv).with_suffix(".parquet")) as tmp:
        df.to_parquet(tmp, index=False)


def collect_logs(summaries: Mapping[str, str | os.PathLike]) -> pd.DataFrame:
    """Training logs (the ``log.tsv`` beside each VideoGPT summary) stacked, with the grid
    columns; reference points have no training log and are skipped."""
    frames = []
    for grid, path in summaries.items():
        if is_reference(grid):
            continue
        log = Path(path).with_name("log.tsv")
        if not log.is_file():
            raise FileNotFoundError(f"training log {log} (beside {Path(path).name}) does not exist")
        frames.append(pd.read_csv(log, sep="\t").assign(**point_dict(grid)))
    return pd.concat(frames, ignore_index=True)


def aggregate(
    encoding_jsons: Sequence[str | os.PathLike],
    summaries: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
    out_tsv: str | os.PathLike,
    figure_dir: str | os.PathLike | Sequence[str | os.PathLike],
) -> pd.DataFrame:
    """Write the tidy table and the scaling figures.

    Parameters
    ----------
    encoding_jsons, summaries
        As for :func:`collect`.
    out_tsv : path-like
        ``results/tables/encoding.tsv`` (written atomically).
    figure_dir : path-like or sequence of four path-likes
        A folder that receives ``FIGURE_NAMES`` (data-size scaling, parameter scaling, loss
        curves, precision; with SVG copies), or the four PNG paths, in that order.

    Returns
    -------
    table : DataFrame
    """
    from cortexscale.report.figures import (
        plot_factors,
        plot_loss_curves,
        plot_params,
        plot_precision,
        plot_scaling,
    )

    table = collect(encoding_jsons, summaries)
    write_table(table, out_tsv)
    write_table(collect_parcels(encoding_jsons), Path(out_tsv).with_name("parcels.tsv"))
    refs = table[table["family"] != "videogpt"]
    arm = table[table["family"] == "videogpt"]  # the figures show the VideoGPT arm
    if isinstance(figure_dir, str | os.PathLike):
        paths = [Path(figure_dir) / name for name in FIGURE_NAMES]
    else:
        paths = [Path(p) for p in figure_dir]
        if len(paths) != len(FIGURE_NAMES):
            raise ValueError(
                f"figure paths must be {len(FIGURE_NAMES)} (data-size scaling, parameter "
                f"scaling, loss curves, precision, factors), got {paths}"
            )
    plot_scaling(arm, paths[0], references=refs)
    plot_params(arm, paths[1], references=refs)
    plot_loss_curves(collect_logs(_summary_paths(summaries)), paths[2])
    plot_precision(arm, paths[3])
    plot_factors(arm, paths[4])
    return table
