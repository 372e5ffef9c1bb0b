"""Stage ``aggregate`` (``workflow/rules/aggregate.smk``): the tidy tables and the scaling figures.

Reads the encoding sidecars (``results/encoding/{grid}/{subject}/{roi}.json``, the per-parcel
``.tsv`` beside each) and the pretraining summaries (``results/pretrain/{grid}/summary.json``,
``results/reference/{name}/summary.json``, the training ``log.tsv`` beside each VideoGPT
one); builds the tables with :mod:`cortexscale.scaling.table`; writes ``tables/encoding.tsv``
and ``tables/parcels.tsv`` (TSV and Parquet), the figures
:data:`cortexscale.policy.SCALING_FIGURES` and the table's HTML page.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortexscale.errors import InputError, MissingInputError
from cortexscale.grid import parse_name
from cortexscale.logs import get_logger
from cortexscale.policy import PARCEL_TABLE, SCALING_FIGURES
from cortexscale.references import parse_reference

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "aggregate", "collect", "collect_logs", "collect_parcels", "point_columns", "register",
    "write_table",
]

log = get_logger(__name__)


def point_columns(name: str) -> dict[str, Any]:
    """The ``GRID_COLUMNS`` of a VideoGPT grid point or a reference point, by its name.

    Reference names (``planted_...``, ``latents_s0``, ``random_s0``) are read by
    :func:`cortexscale.references.parse_reference`; every other name by
    :func:`cortexscale.grid.parse_name` (which raises on a name it does not know).
    """
    from cortexscale.scaling.table import grid_columns

    ref = parse_reference(name)
    point = ref if ref is not None else parse_name(name)
    return grid_columns(name, point.as_dict())


def is_reference(name: str) -> bool:
    """Whether ``name`` is a reference point (not a VideoGPT grid point)."""
    return parse_reference(name) is not None


def write_table(df: pd.DataFrame, out_tsv: str | os.PathLike) -> None:
    """Write a table as TSV and as Parquet beside it (same name, ``.parquet``), atomically."""
    from cortexscale.io.atomic import atomic_path, write_tsv

    write_tsv(out_tsv, df)
    with atomic_path(Path(out_tsv).with_suffix(".parquet")) as tmp:
        df.to_parquet(tmp, index=False)


def _read_json(path: Path, keys: Iterable[str], what: str) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingInputError(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path} is not valid JSON: {exc}") from None
    missing = [k for k in keys if k not in obj]
    if missing:
        raise InputError(f"{what} {path} lacks key(s) {missing}; expected {list(keys)}")
    return obj


def _summary_paths(summaries: Mapping[str, Any] | Sequence[Any]) -> dict[str, Path]:
    """Grid name -> summary path; a plain list is keyed by each summary's ``grid`` field."""
    if isinstance(summaries, Mapping):
        return {str(g): Path(p) for g, p in summaries.items()}
    out = {}
    for p in summaries:
        out[str(_read_json(Path(p), ["grid"], "pretraining summary")["grid"])] = Path(p)
    return out


#: one encoding run: its sidecar's path, the sidecar, the per-parcel table beside it (None
#: without one)
_Run = tuple[Path, dict[str, Any], "pd.DataFrame | None"]


def _runs(encoding_jsons: Iterable[str | os.PathLike], keys: Sequence[str]) -> Iterator[_Run]:
    """Each encoding sidecar (checked for ``keys``) with its per-parcel ``.tsv``, read once."""
    import pandas as pd

    for path in map(Path, encoding_jsons):
        enc = _read_json(path, keys, "encoding sidecar")
        tsv = path.with_suffix(".tsv")
        yield path, enc, pd.read_csv(tsv, sep="\t") if tsv.is_file() else None


def _kept(runs: Iterable[_Run], into: list[_Run]) -> Iterator[_Run]:
    """The runs, each also appended to ``into`` as it passes (for a second pass)."""
    for run in runs:
        into.append(run)
        yield run


def _table_keys() -> tuple[str, ...]:
    from cortexscale.scaling.table import ENCODING_KEYS

    return ("grid",) + ENCODING_KEYS


def _tidy(runs: Iterable[_Run], summaries: Mapping[str, Path]) -> pd.DataFrame:
    """The tidy table of the runs; ``summaries`` as :func:`_summary_paths` returns them."""
    from cortexscale.scaling.table import SUMMARY_KEYS, table_row, tidy_table

    cache: dict[str, dict[str, Any]] = {}
    rows = []
    for path, enc, parcels in runs:
        grid = str(enc["grid"])
        columns = point_columns(grid)
        if grid not in summaries:
            raise InputError(
                f"encoding sidecar {path} is for grid point {grid!r}, which has no pretraining "
                f"summary; found summaries for {sorted(summaries)}"
            )
        if grid not in cache:
            cache[grid] = _read_json(summaries[grid], SUMMARY_KEYS, "pretraining summary")
        rows.append(table_row(columns, enc, cache[grid], parcels))
    return tidy_table(rows)


def _parcels(runs: Iterable[_Run]) -> pd.DataFrame:
    """The per-parcel table of the runs (their per-parcel tables gain the grid columns, in
    place)."""
    from cortexscale.scaling.table import PARCEL_REQUIRED, parcel_rows, parcels_table

    frames = []
    for path, enc, df in runs:
        tsv = path.with_suffix(".tsv")
        if df is None:
            raise MissingInputError(
                f"per-parcel table {tsv} (beside {path.name}) does not exist")
        missing = [c for c in PARCEL_REQUIRED if c not in df.columns]
        if missing:
            raise InputError(f"{tsv} lacks column(s) {missing}; found {list(df.columns)}")
        frames.append(parcel_rows(df, point_columns(str(enc["grid"])), enc["subject"],
                                  enc["roi"]))
    return parcels_table(frames)


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
        :func:`cortexscale.scaling.table.tidy_table`: columns ``TABLE_COLUMNS``, one row
        per grid point x subject x ROI, sorted.
    """
    summaries = _summary_paths(pretrain_summaries)
    return _tidy(_runs(encoding_jsons, _table_keys()), summaries)


def collect_parcels(encoding_jsons: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Collect the per-parcel encoding tables (the ``.tsv`` beside each sidecar).

    Returns
    -------
    parcels : DataFrame
        :func:`cortexscale.scaling.table.parcels_table`: columns ``PARCEL_COLUMNS``, one
        row per grid point x subject x parcel.
    """
    return _parcels(_runs(encoding_jsons, ("grid", "subject", "roi")))


def collect_logs(summaries: Mapping[str, str | os.PathLike],
                 logs: Mapping[str, str | os.PathLike] | None = None) -> pd.DataFrame:
    """Training logs stacked, with the grid columns; reference points have no training log
    and are skipped.

    ``logs`` maps a grid point's name to its ``log.tsv`` (what the workflow passes); without
    it, the ``log.tsv`` beside each VideoGPT summary is read.
    """
    import pandas as pd

    frames = []
    for grid, path in summaries.items():
        if is_reference(grid):
            continue
        if logs is not None:
            if grid not in logs:
                raise MissingInputError(
                    f"--logs: expected a training log for grid point {grid!r}, found logs "
                    f"for {sorted(logs)}")
            log_tsv = Path(logs[grid])
        else:
            log_tsv = Path(path).with_name("log.tsv")
        if not log_tsv.is_file():
            raise MissingInputError(f"training log {log_tsv} of {grid}: the file does not exist")
        frames.append(pd.read_csv(log_tsv, sep="\t").assign(**point_columns(grid)))
    return pd.concat(frames, ignore_index=True)


def aggregate(
    encoding_jsons: Sequence[str | os.PathLike],
    summaries: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
    out_tsv: str | os.PathLike,
    figure_dir: str | os.PathLike | Sequence[str | os.PathLike],
    logs: Mapping[str, str | os.PathLike] | None = None,
) -> pd.DataFrame:
    """Write the tidy table, the per-parcel table and the scaling figures.

    Parameters
    ----------
    encoding_jsons, summaries
        As for :func:`collect`.
    out_tsv : path-like
        ``results/tables/encoding.tsv`` (written atomically, Parquet beside it);
        ``parcels.tsv`` goes beside it.
    figure_dir : path-like or sequence of five path-likes
        A folder that receives :data:`cortexscale.policy.SCALING_FIGURES` (data-size
        scaling, parameter scaling, loss curves, precision, factors; with SVG copies), or
        the five PNG paths, in that order.
    logs : mapping of str to path-like, optional
        Each grid point's training ``log.tsv`` (default: the one beside its summary).

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

    summary_paths = _summary_paths(summaries)
    runs: list[_Run] = []  # each sidecar and per-parcel table read once, for both tables
    table = _tidy(_kept(_runs(encoding_jsons, _table_keys()), runs), summary_paths)
    write_table(table, out_tsv)
    write_table(_parcels(runs), Path(out_tsv).with_name(f"{PARCEL_TABLE}.tsv"))
    log.info(f"{len(table)} rows from {len(encoding_jsons)} encoding sidecars: {out_tsv}")
    refs = table[table["family"] != "videogpt"]
    arm = table[table["family"] == "videogpt"]  # the figures show the VideoGPT arm
    if isinstance(figure_dir, str | os.PathLike):
        paths = [Path(figure_dir) / name for name in SCALING_FIGURES]
    else:
        paths = [Path(p) for p in figure_dir]
        if len(paths) != len(SCALING_FIGURES):
            raise InputError(
                f"figure paths must be {len(SCALING_FIGURES)} (data-size scaling, parameter "
                f"scaling, loss curves, precision, factors), found {paths}"
            )
    plot_scaling(arm, paths[0], references=refs)
    plot_params(arm, paths[1], references=refs)
    plot_loss_curves(collect_logs(summary_paths, logs), paths[2])
    plot_precision(arm, paths[3])
    plot_factors(arm, paths[4])
    return table


def cmd_aggregate(args: argparse.Namespace) -> None:
    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.report.html import page_path, write_table_pages

    prepare_outputs([args.out, page_path(args.out), *args.figures], "aggregate")
    summaries = {Path(p).parent.name: Path(p) for p in args.summaries}
    logs = None if args.logs is None else {Path(p).parent.name: Path(p) for p in args.logs}
    aggregate(args.encoding, summaries, args.out, args.figures, logs)
    write_table_pages([args.out])  # the table's HTML page beside it, for the report


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare the stage's command (``cortexscale aggregate``) on the CLI's parser."""
    p = add("aggregate", cmd_aggregate, "collect encoding results into tables and figures",
            common=False)
    p.add_argument("--encoding", required=True, nargs="+", type=Path,
                   help="encoding JSON sidecars (results/encoding/GRID/SUBJECT/ROI.json)")
    p.add_argument("--summaries", required=True, nargs="+", type=Path,
                   help="pretraining summaries (results/pretrain/GRID/summary.json)")
    p.add_argument("--logs", nargs="*", type=Path, default=None,
                   help="training logs (results/pretrain/GRID/log.tsv; default: the log.tsv "
                        "beside each summary)")
    p.add_argument("--out", required=True, type=Path, help="the tidy table (TSV)")
    p.add_argument("--figures", required=True, nargs="+", type=Path,
                   help="figure files: data-size scaling, parameter scaling, loss curves, "
                        "precision, factors")
