"""Command-line interface: ``cortexscale STAGE ...``; every Snakemake rule calls one stage.

Each stage takes its settings either from a study config file (``--config FILE``, the
whole config, validated) or from the workflow (``--sections JSON``, only the sections the
stage needs, validated against their part of the schema). Heavy libraries are imported
inside the stage that needs them so that light stages start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cortexscale import __version__
from cortexscale.config import ConfigError, load_config, validate_sections


def _settings(args: argparse.Namespace, needed: Sequence[str]) -> dict[str, Any]:
    """Return the config sections a stage needs, validated, with defaults."""
    if args.config is not None:
        cfg = load_config(args.config)
        return {k: cfg[k] for k in needed if k in cfg}
    if args.sections is not None:
        try:
            sections = json.loads(args.sections)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--sections is not valid JSON: {exc}") from exc
        missing = [k for k in needed if k not in sections and k not in _OPTIONAL]
        if missing:
            raise ConfigError(f"--sections lacks the section(s) {', '.join(missing)}")
        return validate_sections(sections, "--sections")
    raise ConfigError("give the study config with --config FILE (or --sections JSON)")


_OPTIONAL = {"seed", "tokenizer", "pretrain", "features", "encoding", "resources", "scaling",
             "study", "pretrained_models", "reference"}


def _limit_threads(n: int) -> None:
    """Bound BLAS/OpenMP threads to what the scheduler gave this job."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


def cmd_validate(args: argparse.Namespace) -> None:
    from cortexscale.config import load_study

    cfg = load_config(args.config) if args.standalone else load_study(args.config, args.base)
    from cortexscale.data.dataset_check import check_study_dataset
    from cortexscale.grid import expand

    # subjects, ROIs and stimuli against the dataset, when fmri.root exists
    checked = check_study_dataset(cfg, str(args.config))
    points = expand(cfg["grid"])
    print(
        f"{args.config}: valid; {len(points)} grid points x {len(cfg['subjects'])} subjects "
        f"x {len(cfg['rois'])} ROIs"
        + (f"; dataset {cfg['fmri']['root']} checked" if checked else "")
    )


def cmd_estimate(args: argparse.Namespace) -> None:
    cfg = load_config(args.config)
    from cortexscale.estimate import estimate

    rows = estimate(cfg, device=args.device, mfu=args.mfu)
    print(f"{'grid point':<28} {'params':>12} {'tokens':>12} {'PFLOPs':>10} {'gpus':>4} "
          f"{'GPU h':>9} {'wall h':>8}")
    for r in rows:
        print(f"{r['grid']:<28} {r['n_params']:>12,} {r['tokens']:>12,} "
              f"{r['flops'] / 1e15:>10.3g} {r['gpus']:>4} {r['gpu_hours']:>9.3g} "
              f"{r['wall_hours']:>8.3g}")
    total = sum(r["gpu_hours"] for r in rows)
    print(f"total: {len(rows)} pretraining runs, {total:.3g} GPU hours on {args.device} at "
          f"MFU {args.mfu:g} (pretraining only)")


def cmd_install_profile(args: argparse.Namespace) -> None:
    import shutil

    src = Path(args.source) if args.source else _repo_profiles() / args.name
    if not (src / "config.yaml").is_file():
        raise ConfigError(f"no profile at {src} (expected {src / 'config.yaml'})")
    dest = Path(args.dest or Path.home() / ".config" / "snakemake") / args.name
    if dest.exists() and not args.force:
        raise ConfigError(f"{dest} exists; pass --force to replace it")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "config.yaml", dest / "config.yaml")
    print(f"installed {src} as {dest}; use: snakemake --profile {args.name}")


def _repo_profiles() -> Path:
    """`profiles/` of the repository this package was installed from (editable installs)."""
    return Path(__file__).resolve().parents[2] / "profiles"


def cmd_corpus(args: argparse.Namespace) -> None:
    from_grid = args.data_sizes is None
    s = _settings(args, ["corpus", "pretrain", "seed"] + (["grid"] if from_grid else []))
    from cortexscale.config import section
    from cortexscale.data.corpus import build_corpus

    if from_grid:  # an isoflop grid trains on the whole pool: no data-size subsets
        grid = s["grid"]
        sizes = [] if grid.get("mode") == "isoflop" else grid["data_sizes"]
    else:
        sizes = args.data_sizes
    eval_clips = section("pretrain", s.get("pretrain"))["eval_clips"]
    build_corpus(args.out, s["corpus"], sizes, s.get("seed", 0), eval_clips=eval_clips)


def cmd_fmri(args: argparse.Namespace) -> None:
    s = _settings(args, ["fmri", "corpus", "subjects", "rois", "seed"])
    if s["fmri"]["source"] != "synthetic":
        raise ConfigError(
            f"fmri.source is {s['fmri']['source']!r}: that dataset is read from fmri.root, "
            "not generated; only 'synthetic' is generated by this stage"
        )
    from cortexscale.data.synthetic import write_synthetic_fmri
    from cortexscale.io.atomic import prepare_outputs

    prepare_outputs([args.out_dir / "runs.tsv"], "fmri")
    c = s["corpus"]
    write_synthetic_fmri(
        args.out_dir, s["fmri"], s["subjects"], s["rois"], s.get("seed", 0),
        fps=c["fps"] / c["time_stride"], height=c["height"], width=c["width"],
    )


def cmd_fmri_import(args: argparse.Namespace) -> None:
    s = _settings(args, ["fmri", "subjects"])
    fmri, subjects = s["fmri"], s["subjects"]
    source, root = fmri["source"], fmri.get("root", "")
    if source == "algonauts2025":
        from cortexscale.data.algonauts2025 import import_algonauts2025

        import_algonauts2025(root, args.out_dir, subjects, tr=fmri["tr"],
                             test_stimuli=fmri["test_stimuli"], cfg=fmri)
    elif source == "nifti":
        from cortexscale.data.nifti import import_nifti

        import_nifti(root, args.out_dir, subjects, tr=fmri["tr"], atlas=fmri["atlas"],
                     mask=fmri["mask"], confounds=tuple(fmri["confounds"]),
                     test_stimuli=fmri["test_stimuli"], cfg=fmri)
    elif source == "algonauts2023":
        from cortexscale.data.nsd import read_nsd_subject

        for subject in subjects:
            sub = read_nsd_subject(Path(root) / subject)
            print(f"fmri-import: {sub.root}: {sub.n_images} images, "
                  f"{ {h: y.shape[1] for h, y in sub.responses.items()} } vertices, "
                  f"ROIs {sorted(sub.rois)}: valid", file=sys.stderr)
        raise ConfigError(
            "fmri.source 'algonauts2023' holds still images: the dataset is valid, but the "
            "video pipeline cannot encode it (image datasets go through the pretrained-model "
            "path)"
        )
    else:
        raise ConfigError(f"fmri.source {source!r} is not imported; fmri-import handles "
                          "algonauts2025, nifti and algonauts2023")


def cmd_fmri_check(args: argparse.Namespace) -> None:
    s = _settings(args, ["subjects", "rois"])
    from cortexscale.data.checks import check_dataset
    from cortexscale.io.atomic import prepare_outputs, write_json

    prepare_outputs([args.out], "fmri-check")
    report = check_dataset(args.fmri_root, s["subjects"], s["rois"])
    write_json(args.out, report)


def cmd_tokenizer(args: argparse.Namespace) -> None:
    s = _settings(args, ["tokenizer", "seed"])
    from cortexscale.train.tokenizer import train_tokenizer

    train_tokenizer(
        args.frames, args.checkpoint, args.tokens, args.summary, s["tokenizer"],
        seed=s.get("seed", 0), threads=args.threads, device=args.device,
    )


def cmd_pretrain(args: argparse.Namespace) -> None:
    s = _settings(args, ["pretrain", "corpus", "seed"])
    from cortexscale.grid import parse_name
    from cortexscale.train.pretrain import pretrain

    pretrain(
        args.tokens, args.frames, parse_name(args.grid), s["corpus"]["subset_order"],
        s["pretrain"], args.out_dir, seed=s.get("seed", 0), threads=args.threads,
        device=args.device, single_epoch=args.single_epoch,
    )


def cmd_launch(args: argparse.Namespace) -> None:
    s = _settings(args, ["pretrain", "corpus", "seed"])
    from cortexscale.train.launch import launch

    jobs = launch(
        args.grid, args.tokens, args.frames, s, args.out_root, executor=args.executor,
        folder=args.folder, threads=args.threads, device=args.device,
        timeout_min=args.timeout_min, gpus=args.gpus, partition=args.partition,
    )
    for grid, job in zip(args.grid, jobs, strict=True):
        print(f"{grid}\t{job.job_id}", flush=True)
    if args.wait:
        for job in jobs:
            job.result()


def cmd_features(args: argparse.Namespace) -> None:
    s = _settings(args, ["features"])
    from cortexscale.features.extract import extract_features

    extract_features(
        args.vqvae, args.model, args.fmri_root, args.frames, args.out, s["features"],
        grid=args.grid, threads=args.threads, device=args.device,
    )


def cmd_reference_features(args: argparse.Namespace) -> None:
    s = _settings(args, ["fmri", "corpus", "seed", "reference"])
    from cortexscale.features.reference_stage import write_reference
    from cortexscale.io.atomic import prepare_outputs

    prepare_outputs([args.out, args.summary], "reference-features")
    write_reference(args.name, s, args.fmri_root, args.out, args.summary)


def cmd_encode(args: argparse.Namespace) -> None:
    s = _settings(args, ["encoding"])
    if len(args.roi) != len(args.out):
        raise ConfigError(
            f"encode: --out must give one table per --roi; expected {len(args.roi)} "
            f"({', '.join(args.roi)}), found {len(args.out)}"
        )
    from cortexscale.encoding.stage import run_encoding

    for roi, out in zip(args.roi, args.out, strict=True):
        run_encoding(
            args.features, args.fmri_root, args.subject, roi, out, s["encoding"],
            grid=args.grid,
        )


def cmd_aggregate(args: argparse.Namespace) -> None:
    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.report.html import page_path, write_table_pages
    from cortexscale.scaling.table import aggregate

    prepare_outputs([args.out, page_path(args.out), *args.figures], "aggregate")
    summaries = {Path(p).parent.name: Path(p) for p in args.summaries}
    aggregate(args.encoding, summaries, args.out, args.figures)
    write_table_pages([args.out])  # the table's HTML page beside it, for the report


def cmd_analyse(args: argparse.Namespace) -> None:
    s = _settings(args, ["study", "seed", "scaling"])
    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.report.html import page_path, write_summary_html, write_table_pages
    from cortexscale.scaling.analyse import analyse

    figures = (args.frontier_figure, args.isoflop_figure, args.allocation_figure)
    # the HTML pages of the summary and of these tables are written beside them (the report)
    paged = [args.out_dir / f"{n}.tsv"
             for n in ("scaling_fits", "frontier", "isoflop", "allocation", "comparisons")]
    prepare_outputs([args.out_dir / "allocation.tsv", args.summary, page_path(args.summary),
                     *map(page_path, paged), *(f for f in figures if f is not None)], "analyse")
    analyse(
        args.table, args.parcels, args.out_dir, args.summary, args.frontier_figure,
        n_boot=s["scaling"]["n_boot"], seed=s.get("seed", 0), study=s.get("study", "study"),
        pretrained_tsv=args.pretrained, pretrained_sample_size_tsv=args.pretrained_sample_size,
        pretrained_fits_tsv=args.pretrained_fits, reference_summaries=args.reference_summaries,
        isoflop_png=args.isoflop_figure, allocation_png=args.allocation_figure,
    )
    write_table_pages(paged)
    write_summary_html(args.summary)


def cmd_brain_maps(args: argparse.Namespace) -> None:
    import pandas as pd

    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.report.brainmaps import plot_brain_maps

    prepare_outputs([args.out], "brain-maps")
    grid = plot_brain_maps(pd.read_csv(args.parcels, sep="\t"), args.atlas, args.out, args.grid)
    print(f"brain-maps: drew {grid}", file=sys.stderr)


def _model_spec(s: dict[str, Any], name: str) -> dict[str, Any]:
    models = {m["name"]: m for m in s["pretrained_models"]["models"]}
    if name not in models:
        raise ConfigError(f"pretrained_models.models has no model {name!r}; "
                          f"configured: {sorted(models)}")
    return models[name]


def cmd_pretrained_build(args: argparse.Namespace) -> None:
    s = _settings(args, ["pretrained_models", "seed"])
    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.models.pretrained import build_tiny

    prepare_outputs([args.out_dir / name for name in args.name], "pretrained-build")
    for name in args.name:
        m = _model_spec(s, name)
        if not m.get("build"):
            raise ConfigError(f"pretrained model {name!r} has no 'build' architecture; only "
                              "tiny random models (build: vit|clip|convnext|dinov2) are built")
        build_tiny(m["build"], args.out_dir / name, seed=s.get("seed", 0),
                   hidden=m.get("hidden", 32), layers=m.get("layers", 2),
                   image_size=s["pretrained_models"]["image_size"])


def cmd_pretrained_features(args: argparse.Namespace) -> None:
    s = _settings(args, ["pretrained_models", "subjects"])
    from cortexscale.features.pretrained import extract_pretrained

    extract_pretrained(
        args.model, args.name, args.out, s["pretrained_models"], fmri_root=args.fmri_root,
        nsd_root=args.nsd_root, subjects=s.get("subjects"), device=args.device,
        threads=args.threads,
    )


def cmd_pretrained_encode(args: argparse.Namespace) -> None:
    s = _settings(args, ["encoding", "pretrained_models", "seed"])
    from cortexscale.encoding.pretrained import encode_images, encode_video

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
       seed=s.get("seed", 0), **({"submission_dir": sub_dir} if sub_dir else {}))


def cmd_pretrained_ensemble(args: argparse.Namespace) -> None:
    from cortexscale.encoding.pretrained import ensemble
    from cortexscale.io.atomic import prepare_outputs

    prepare_outputs([args.out_dir / subject / f"{roi}.tsv" for subject in args.subjects
                     for roi in args.rois], "pretrained-ensemble")
    for subject in args.subjects:
        for roi in args.rois:
            preds = [args.encoding_root / m / subject / f"{roi}.npz" for m in args.members]
            ensemble(preds, args.out_dir / subject / f"{roi}.tsv", args.name, args.members,
                     subject, roi)


def cmd_pretrained_aggregate(args: argparse.Namespace) -> None:
    s = _settings(args, ["pretrained_models"])

    from cortexscale.encoding.pretrained import collect_pretrained, scaling_fits
    from cortexscale.features.pretrained import CACHE_EXPECTED
    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.io.hdf5 import open_h5
    from cortexscale.report.html import page_path, write_table_pages
    from cortexscale.scaling.table import write_table

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


def _common(p: argparse.ArgumentParser, threads: bool = False, device: bool = False) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--config", type=Path, help="study config YAML (validated)")
    g.add_argument("--sections", help="config sections as JSON (used by the workflow)")
    if threads:
        p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    if device:
        p.add_argument("--device", default="cpu", help="torch device (cpu, cuda; default cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cortexscale",
        description="Compute-optimal scaling studies of brain encoding models.",
    )
    parser.add_argument("--version", action="version", version=f"cortexscale {__version__}")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    def add(name: str, func: Callable[[argparse.Namespace], None], help_: str,
            **kw: bool) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        _common(p, **kw)
        p.set_defaults(func=func)
        return p

    p = sub.add_parser(
        "validate",
        help="validate a study config as Snakemake runs it (merged over config/config.yaml)",
    )
    p.add_argument("config", type=Path)
    p.add_argument("--base", type=Path, default=None,
                   help="the config the study extends (default: the repository's "
                        "config/config.yaml, as the Snakefile loads it)")
    p.add_argument("--standalone", action="store_true",
                   help="validate the file alone, merged over nothing")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("estimate", help="estimate a sweep's pretraining GPU hours from a config")
    p.add_argument("config", type=Path)
    p.add_argument("--device", default="H100 SXM",
                   help="peak-FLOPs table entry (train/metrics.py), default 'H100 SXM'")
    p.add_argument("--mfu", type=float, default=0.35, help="assumed MFU (default 0.35)")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("install-profile",
                       help="copy a Snakemake profile to ~/.config/snakemake/NAME")
    p.add_argument("name", help="profile name: slurm or local (from the repository's profiles/)")
    p.add_argument("--source", help="profile folder to install (default profiles/NAME)")
    p.add_argument("--dest", help="profiles folder (default ~/.config/snakemake)")
    p.add_argument("--force", action="store_true", help="replace an installed profile")
    p.set_defaults(func=cmd_install_profile)

    p = add("corpus", cmd_corpus, "build the pretraining corpus (frames.h5)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data-sizes", type=int, nargs="*", default=None,
                   help="subset sizes in source frames (default: the grid's data_sizes; none "
                        "for an isoflop grid); the validation set is pretrain.eval_clips clips")

    p = add("fmri", cmd_fmri, "generate the synthetic fMRI dataset")
    p.add_argument("--out-dir", required=True, type=Path)

    p = add("fmri-import", cmd_fmri_import,
            "convert a real fMRI dataset (fmri.source, fmri.root) into the internal layout")
    p.add_argument("--out-dir", required=True, type=Path)

    p = add("fmri-check", cmd_fmri_check, "check every run of an fMRI dataset once")
    p.add_argument("--fmri-root", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)

    p = add("tokenizer", cmd_tokenizer, "train the VQ-VAE and tokenise the corpus",
            threads=True, device=True)
    p.add_argument("--frames", required=True, type=Path)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--tokens", required=True, type=Path)
    p.add_argument("--summary", required=True, type=Path)

    p = add("pretrain", cmd_pretrain, "pretrain the GPT of one grid point",
            threads=True, device=True)
    p.add_argument("--grid", required=True,
                   help="grid-point name, e.g. d2048_h64_l2_a2_bf16_s0 or c1e12_h64_l2_a2_fp32_s1")
    p.add_argument("--single-epoch", action="store_true",
                   help="grid.single_epoch: refuse a run that would repeat training clips")
    p.add_argument("--tokens", required=True, type=Path)
    p.add_argument("--frames", required=True, type=Path)
    p.add_argument("--out-dir", required=True, type=Path)

    p = add("launch", cmd_launch, "submit pretraining runs with submitit (outside Snakemake)",
            threads=True, device=True)
    p.add_argument("--grid", required=True, nargs="+", help="grid-point names")
    p.add_argument("--tokens", required=True, type=Path)
    p.add_argument("--frames", required=True, type=Path)
    p.add_argument("--out-root", required=True, type=Path, help="each run writes OUT_ROOT/GRID")
    p.add_argument("--executor", choices=["local", "slurm"], default="local")
    p.add_argument("--folder", type=Path, help="submitit logs (default OUT_ROOT/submitit)")
    p.add_argument("--timeout-min", type=int, default=60)
    p.add_argument("--gpus", type=int, default=0, help="GPUs per job")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--wait", action="store_true", help="wait for the jobs to finish")

    p = add("features", cmd_features, "extract TR-aligned features of one grid point",
            threads=True, device=True)
    p.add_argument("--grid", required=True)
    p.add_argument("--vqvae", required=True, type=Path)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--fmri-root", required=True, type=Path)
    p.add_argument("--frames", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)

    p = add("reference-features", cmd_reference_features,
            "features of a reference point of the synthetic world (planted law, latents, random)")
    p.add_argument("--name", required=True, help="e.g. planted_c1e11_n20000_s0, latents_s0")
    p.add_argument("--fmri-root", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="results/features/NAME.h5")
    p.add_argument("--summary", required=True, type=Path,
                   help="results/reference/NAME/summary.json")

    p = add("encode", cmd_encode, "fit the ridge encoding models of one subject, per ROI",
            threads=True)
    p.add_argument("--grid", required=True)
    p.add_argument("--subject", required=True)
    p.add_argument("--roi", required=True, nargs="+", help="one or more ROIs")
    p.add_argument("--features", required=True, type=Path)
    p.add_argument("--fmri-root", required=True, type=Path)
    p.add_argument("--out", required=True, nargs="+", type=Path,
                   help="the per-parcel table of each ROI, in --roi order (sidecar beside)")

    p = sub.add_parser("aggregate", help="collect encoding results into tables and figures")
    p.add_argument("--encoding", required=True, nargs="+", type=Path,
                   help="encoding JSON sidecars (results/encoding/GRID/SUBJECT/ROI.json)")
    p.add_argument("--summaries", required=True, nargs="+", type=Path,
                   help="pretraining summaries (results/pretrain/GRID/summary.json)")
    p.add_argument("--out", required=True, type=Path, help="the tidy table (TSV)")
    p.add_argument("--figures", required=True, nargs="+", type=Path,
                   help="figure files: data-size scaling, parameter scaling, loss curves, precision, factors")
    p.set_defaults(func=cmd_aggregate)
    p = sub.add_parser("brain-maps", help="draw per-parcel r on the dataset's atlas")
    p.add_argument("--parcels", required=True, type=Path, help="tables/parcels.tsv")
    p.add_argument("--atlas", required=True, type=Path, nargs="+",
                   help="labels image, parcel p = p + 1: one for all subjects, or one "
                        "{subject}.nii.gz per subject")
    p.add_argument("--out", required=True, type=Path, help="the figure (PNG)")
    p.add_argument("--grid", help="grid point to draw (default: the best mean r)")
    p.set_defaults(func=cmd_brain_maps)

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
    p.add_argument("--out-dir", required=True, type=Path, help="writes OUT_DIR/ROI.tsv, .json, .npz")
    p.add_argument("--submission-dir", type=Path,
                   help="images: writes the challenge submission DIR/{lh,rh}_pred_test.npy")

    p = sub.add_parser("pretrained-ensemble",
                       help="average the test predictions of several models")
    p.add_argument("--name", required=True)
    p.add_argument("--members", required=True, nargs="+")
    p.add_argument("--subjects", required=True, nargs="+")
    p.add_argument("--rois", required=True, nargs="+")
    p.add_argument("--encoding-root", required=True, type=Path,
                   help="reads ENCODING_ROOT/MEMBER/SUBJECT/ROI.npz")
    p.add_argument("--out-dir", required=True, type=Path, help="writes OUT_DIR/SUBJECT/ROI.*")
    p.set_defaults(func=cmd_pretrained_ensemble)

    p = add("pretrained-aggregate", cmd_pretrained_aggregate,
            "tables and scaling fits of the pretrained-model sweep")
    p.add_argument("--encoding", required=True, nargs="+", type=Path, help="JSON sidecars")
    p.add_argument("--features", required=True, nargs="+", type=Path, help="feature files")
    p.add_argument("--out", required=True, type=Path, help="tables/pretrained.tsv")
    p.add_argument("--sample-size", required=True, type=Path)
    p.add_argument("--figure", type=Path,
                   help="figures/pretrained.png: r against parameters and training samples")
    p.add_argument("--fits", required=True, type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cortexscale`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        _limit_threads(args.threads)
    start = time.perf_counter()
    from cortexscale.train.resume import Interrupted, TrainingError

    try:
        args.func(args)
    except Interrupted as exc:  # checkpointed on SIGTERM/SIGUSR2: a retry resumes it
        print(f"cortexscale {args.stage}: {exc}", file=sys.stderr)
        return int(exc.code)
    except (ConfigError, FileNotFoundError, KeyError, ValueError, OSError, NotImplementedError,
            TrainingError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"cortexscale {args.stage}: error: {message}", file=sys.stderr)
        return 2
    print(f"cortexscale {args.stage}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
