"""Stage ``analysis`` (``workflow/rules/analysis.smk``): the study's answer, and brain maps.

``cortexscale analyse`` reads the tidy tables written by the aggregate stage
(:mod:`cortexscale.stages.aggregate`), runs :func:`cortexscale.scaling.analyse.analyse_tables`
and writes ``scaling_fits``, ``fit_curves``, ``frontier``, ``isoflop``, ``allocation`` and
``comparisons`` (TSV and Parquet), ``summary.md`` (:mod:`cortexscale.scaling.summary`), the
figures and the HTML pages of the report. ``cortexscale brain-maps`` draws the per-parcel r
on the dataset's atlas (:mod:`cortexscale.report.brainmaps`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cortexscale.errors import InputError
from cortexscale.logs import get_logger
from cortexscale.policy import ANALYSIS_PAGES, FITS_FIGURE
from cortexscale.stages.aggregate import write_table
from cortexscale.stages.common import settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["analyse", "read_planted", "register"]

log = get_logger(__name__)


def _read_optional(path: str | os.PathLike | None) -> pd.DataFrame | None:

    if path is None:
        return None
    from cortexscale.io.atomic import read_tsv

    return read_tsv(path, "pretrained-arm table")


def read_planted(summaries: list[str | os.PathLike] | None) -> dict | None:
    """The planted law's truth: the ``planted`` dict of the first reference summary that
    has one (``results/reference/{name}/summary.json``); None when none has it."""
    for p in summaries or []:
        try:
            obj = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"reference summary {p} cannot be read: {exc}") from None
        if isinstance(obj.get("planted"), dict):
            return obj["planted"]
    return None


def analyse(
    table_tsv: str | os.PathLike, parcels_tsv: str | os.PathLike, out_dir: str | os.PathLike,
    summary_md: str | os.PathLike, frontier_png: str | os.PathLike | None = None,
    n_boot: int = 1000, seed: int = 0, study: str = "study",
    pretrained_tsv: str | os.PathLike | None = None,
    pretrained_sample_size_tsv: str | os.PathLike | None = None,
    pretrained_fits_tsv: str | os.PathLike | None = None,
    reference_summaries: list[str | os.PathLike] | None = None,
    isoflop_png: str | os.PathLike | None = None,
    allocation_png: str | os.PathLike | None = None,
) -> None:
    """Run every analysis and write its tables, the summary and the figures.

    Parameters
    ----------
    table_tsv, parcels_tsv : path-like
        ``tables/encoding.tsv`` and ``tables/parcels.tsv`` of the study.
    out_dir : path-like
        Folder of the analysis tables (``scaling_fits``, ``fit_curves``, ``frontier``,
        ``isoflop``, ``allocation``, ``comparisons``; TSV and Parquet).
    summary_md : path-like
        The findings in sentences.
    frontier_png : path-like, optional
        The compute-frontier figure; the fits figure ``scaling_fits.png`` goes beside it.
    n_boot, seed : int
        Bootstrap draws and their seed.
    study : str
        Name of the study, for the summary's title.
    pretrained_tsv, pretrained_sample_size_tsv, pretrained_fits_tsv : path-like, optional
        The pretrained-model arm's tables (when the study has pretrained models).
    reference_summaries : list of path-like, optional
        ``results/reference/{name}/summary.json``: the planted truth (key ``planted``).
    isoflop_png, allocation_png : path-like, optional
        The IsoFLOP-profile figure and the N*(C), D*(C) figure.
    """

    from cortexscale.io.atomic import atomic_path, read_tsv
    from cortexscale.scaling.analyse import analyse_tables
    from cortexscale.scaling.summary import summary_markdown

    table = read_tsv(table_tsv, "the encoding table")
    parcels = read_tsv(parcels_tsv, "the per-parcel table")
    if table.empty or parcels.empty:
        raise InputError(f"{table_tsv} or {parcels_tsv} has no rows; nothing to analyse")
    result = analyse_tables(table, parcels, n_boot=n_boot, seed=seed)
    # the names are policy's ANALYSIS_TABLES, which the workflow declares (a test checks)
    for name, df in result.tables().items():
        write_table(df, Path(out_dir) / f"{name}.tsv")
    text = summary_markdown(
        table, result.scaling_fits, result.frontier, result.allocation, result.comparisons,
        study,
        pretrained=_read_optional(pretrained_tsv),
        pretrained_sample_size=_read_optional(pretrained_sample_size_tsv),
        pretrained_fits=_read_optional(pretrained_fits_tsv),
        planted=read_planted(reference_summaries),
    )
    with atomic_path(summary_md) as tmp:
        tmp.write_text(text)
    from cortexscale.report.figures import plot_allocation, plot_fits, plot_frontier, plot_isoflop

    if frontier_png is not None:
        plot_frontier(result.frontier, frontier_png)
        plot_fits(result.fit_curves, Path(frontier_png).with_name(FITS_FIGURE))
    refs = table[table["family"].isin(["latents", "random"])]
    ref_lines = refs.groupby("family")["mean_r"].mean().to_dict()
    ceiling = float(table["ceiling_r"].mean()) if "ceiling_r" in table else None
    if isoflop_png is not None:
        if result.isoflop.empty:
            raise InputError(f"{isoflop_png}: the study has no IsoFLOP budgets (grid.mode "
                             "isoflop or a planted reference) to draw")
        plot_isoflop(result.isoflop, result.allocation, isoflop_png, ceiling=ceiling,
                     references=ref_lines)
    if allocation_png is not None:
        plot_allocation(result.allocation, allocation_png)


def cmd_analyse(args: argparse.Namespace) -> None:
    s = settings(args, ["study", "seed", "scaling"])
    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.report.html import page_path, write_summary_html, write_table_pages

    figures = (args.frontier_figure, args.isoflop_figure, args.allocation_figure)
    # the HTML pages of the summary and of these tables are written beside them (the report)
    paged = [args.out_dir / f"{n}.tsv" for n in ANALYSIS_PAGES]
    prepare_outputs([args.out_dir / "allocation.tsv", args.summary, page_path(args.summary),
                     *map(page_path, paged), *(f for f in figures if f is not None)], "analyse")
    analyse(
        args.table, args.parcels, args.out_dir, args.summary, args.frontier_figure,
        n_boot=s["scaling"]["n_boot"], seed=s["seed"], study=s.get("study", "study"),
        pretrained_tsv=args.pretrained, pretrained_sample_size_tsv=args.pretrained_sample_size,
        pretrained_fits_tsv=args.pretrained_fits, reference_summaries=args.reference_summaries,
        isoflop_png=args.isoflop_figure, allocation_png=args.allocation_figure,
    )
    write_table_pages(paged)
    write_summary_html(args.summary)


def cmd_brain_maps(args: argparse.Namespace) -> None:

    from cortexscale.io.atomic import prepare_outputs, read_tsv
    from cortexscale.report.brainmaps import plot_brain_maps

    prepare_outputs([args.out], "brain-maps")
    parcels = read_tsv(args.parcels, "the per-parcel table")
    grid = plot_brain_maps(parcels, args.atlas, args.out, args.grid)
    log.info(f"drew {grid}")


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare the stage's commands (``analyse``, ``brain-maps``) on the CLI's parser."""
    p = add("analyse", cmd_analyse,
            "fit scaling laws, find the compute frontier, test the factors, summarise")
    p.add_argument("--table", required=True, type=Path, help="tables/encoding.tsv")
    p.add_argument("--parcels", required=True, type=Path, help="tables/parcels.tsv")
    p.add_argument("--out-dir", required=True, type=Path, help="folder of the analysis tables")
    p.add_argument("--summary", required=True, type=Path, help="the findings (Markdown)")
    p.add_argument("--frontier-figure", type=Path, help="the compute-frontier figure (PNG)")
    p.add_argument("--isoflop-figure", type=Path, help="IsoFLOP profiles, optima marked (PNG)")
    p.add_argument("--allocation-figure", type=Path, help="N*(C) and D*(C), log-log (PNG)")
    p.add_argument("--pretrained", type=Path, help="tables/pretrained.tsv (pretrained arm)")
    p.add_argument("--pretrained-sample-size", type=Path,
                   help="tables/pretrained_sample_size.tsv (fMRI sample-size curve)")
    p.add_argument("--pretrained-fits", type=Path, help="tables/pretrained_fits.tsv")
    p.add_argument("--reference-summaries", nargs="*", type=Path, default=[],
                   help="results/reference/NAME/summary.json (the planted truth, key 'planted')")

    p = add("brain-maps", cmd_brain_maps, "draw per-parcel r on the dataset's atlas",
            common=False)
    p.add_argument("--parcels", required=True, type=Path, help="tables/parcels.tsv")
    p.add_argument("--atlas", required=True, type=Path, nargs="+",
                   help="labels image, parcel p = p + 1: one for all subjects, or one "
                        "{subject}.nii.gz per subject")
    p.add_argument("--out", required=True, type=Path, help="the figure (PNG)")
    p.add_argument("--grid", help="grid point to draw (default: the best mean r)")
