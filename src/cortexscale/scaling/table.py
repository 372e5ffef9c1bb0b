"""The study's tidy table: one row per grid point x subject x ROI (``docs/formats.md``).

The maths of the table only: the columns, a row from one encoding sidecar and its run's
pretraining summary, the sorted and checked table, the per-parcel table. Reading the
sidecars and summaries and writing the tables is the aggregate stage's
(:mod:`cortexscale.stages.aggregate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cortexscale.errors import InputError

__all__ = [
    "ENCODING_KEYS", "GRID_COLUMNS", "PARCEL_COLUMNS", "PARCEL_REQUIRED", "SUMMARY_KEYS",
    "TABLE_COLUMNS", "ceiling_r", "grid_columns", "parcel_rows", "parcels_table", "table_row",
    "tidy_table",
]

GRID_COLUMNS = ("grid", "family", "data_size", "hidden", "layers", "heads", "precision", "seed",
                "budget", "tokens")
GRID_DEFAULTS = {"family": "videogpt", "seed": 0, "budget": 0.0, "tokens": 0}
ENCODING_KEYS = (
    "subject", "roi", "n_parcels", "mean_r", "median_r", "max_r", "mean_normalised",
    "n_significant",
)
SUMMARY_KEYS = ("n_params", "train_flops", "tokens_seen", "final_val_loss", "wall_time_s")
CEILING_COLUMNS = ("mean_noise_ceiling", "ceiling_r")
TABLE_COLUMNS = GRID_COLUMNS + ENCODING_KEYS + CEILING_COLUMNS + SUMMARY_KEYS
SORT_KEYS = ["family", "budget", "data_size", "hidden", "layers", "heads", "precision", "tokens",
             "seed", "subject", "roi"]
PARCEL_REQUIRED = ("parcel", "r", "alpha")
PARCEL_OPTIONAL = ("noise_ceiling", "score_normalised")
PARCEL_COLUMNS = GRID_COLUMNS + ("subject", "roi") + PARCEL_REQUIRED + PARCEL_OPTIONAL


def grid_columns(name: str, point: Mapping[str, Any]) -> dict[str, Any]:
    """The ``GRID_COLUMNS`` of a grid point or a reference point.

    Parameters
    ----------
    name : str
        The point's name (the ``grid`` column).
    point : mapping
        Its fields, ``GridPoint.as_dict()`` or ``ReferencePoint.as_dict()``; keys it lacks
        take ``GRID_DEFAULTS``.
    """
    out = {**GRID_DEFAULTS, **point}
    out["grid"] = name
    return {k: out[k] for k in GRID_COLUMNS}


def ceiling_r(parcels: pd.DataFrame) -> float:
    """Mean over scored parcels of the ceiling of r, ``sqrt(noise_ceiling / 100)`` (the
    noise ceiling is in % of explainable variance); NaN without a noise ceiling.

    Parameters
    ----------
    parcels : DataFrame
        One encoding run's per-parcel table: ``r`` and, optionally, ``noise_ceiling``.
    """
    if "noise_ceiling" not in parcels.columns:
        return float("nan")
    nc = pd.to_numeric(parcels["noise_ceiling"], errors="coerce").to_numpy(dtype=float)
    scored = np.isfinite(pd.to_numeric(parcels["r"], errors="coerce").to_numpy(dtype=float))
    nc = nc[scored & np.isfinite(nc) & (nc >= 0)]
    return float(np.sqrt(nc / 100).mean()) if nc.size else float("nan")


def table_row(
    columns: Mapping[str, Any], sidecar: Mapping[str, Any], summary: Mapping[str, Any],
    parcels: pd.DataFrame | None,
) -> dict[str, Any]:
    """One row of the tidy table.

    Parameters
    ----------
    columns : mapping
        The point's :func:`grid_columns`.
    sidecar : mapping
        The encoding sidecar (``ENCODING_KEYS``, optionally ``mean_noise_ceiling``).
    summary : mapping
        The run's pretraining summary (``SUMMARY_KEYS``).
    parcels : DataFrame or None
        The per-parcel table beside the sidecar, for the ceiling of r (NaN without it).
    """
    return {
        **columns,
        **{k: sidecar[k] for k in ENCODING_KEYS},
        "mean_noise_ceiling": sidecar.get("mean_noise_ceiling"),
        "ceiling_r": ceiling_r(parcels) if parcels is not None else np.nan,
        **{k: summary[k] for k in SUMMARY_KEYS},
    }


def tidy_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The tidy table of :func:`table_row` rows, checked and sorted.

    Returns
    -------
    table : DataFrame
        Columns ``TABLE_COLUMNS`` (``docs/formats.md``, "Tables"), one row per
        grid point x subject x ROI, sorted stably by grid parameters, subject and ROI.

    Raises
    ------
    InputError
        If two rows have the same (grid, subject, roi).
    """
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    dup = table.duplicated(["grid", "subject", "roi"])
    if dup.any():
        first = table.loc[dup, ["grid", "subject", "roi"]].iloc[0].tolist()
        raise InputError(f"encoding sidecars repeat (grid, subject, roi) = {first}")
    for col in ("mean_r", "median_r", "max_r", "mean_normalised", "final_val_loss",
                "mean_noise_ceiling", "ceiling_r"):
        table[col] = pd.to_numeric(table[col]).astype(float)
    return table.sort_values(SORT_KEYS, kind="stable").reset_index(drop=True)


def parcel_rows(
    parcels: pd.DataFrame, columns: Mapping[str, Any], subject: str, roi: str
) -> pd.DataFrame:
    """One encoding run's per-parcel table with its grid columns, subject and ROI.

    Parameters
    ----------
    parcels : DataFrame
        The per-parcel table beside a sidecar, with ``PARCEL_REQUIRED`` (modified in place).
    columns : mapping
        The point's :func:`grid_columns`.
    subject, roi : str

    Returns
    -------
    rows : DataFrame
        Columns ``PARCEL_COLUMNS`` (``PARCEL_OPTIONAL`` NaN where the table lacks them).
    """
    for key, value in columns.items():
        parcels[key] = value
    for col in PARCEL_OPTIONAL:
        if col not in parcels.columns:
            parcels[col] = np.nan
    parcels["subject"], parcels["roi"] = str(subject), str(roi)
    return parcels[list(PARCEL_COLUMNS)]


def parcels_table(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The per-parcel table of every run: :func:`parcel_rows` frames stacked and sorted.

    Returns
    -------
    parcels : DataFrame
        Columns ``PARCEL_COLUMNS``: one row per grid point x subject x parcel.
    """
    if not frames:
        return pd.DataFrame(columns=list(PARCEL_COLUMNS))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values([*SORT_KEYS, "parcel"], kind="stable").reset_index(drop=True)
