"""Stage 3 (``workflow/rules/pretrain.smk``): pretrain the GPT of one grid point.

Commands: ``pretrain`` (one grid point, what each rule runs, under torchrun for several
GPUs) and ``launch`` (grid points submitted with submitit, outside Snakemake).

:func:`pretrain` reads the cached VQ-VAE codes of a data-size subset (``tokens.h5``, and
``frames.h5`` for the subsets, the validation clips and each clip's predecessor), trains with
:func:`cortexscale.train.pretrain.train` and writes, atomically, ``model.pt``, ``log.tsv`` and
``summary.json`` into ``out_dir`` (docs/formats.md). The VQ-VAE never runs here: every clip was
tokenised once (DESIGN.md, "Cost model").

**Validation clips.** ``frames.h5/validation``: ``eval_clips`` clips reserved by the corpus
stage before any subset was drawn, evenly from every source
(:func:`cortexscale.data.corpus.validation_clips`). Every grid point, whatever its data size,
is scored on the same clips, none of which any point trains on, and each trains on all the
clips of its subset (``val_from`` = ``"reserved"`` in ``summary.json``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortexscale.config import section
from cortexscale.errors import ConfigError, InputError, MissingInputError
from cortexscale.stages.common import settings

if TYPE_CHECKING:
    import numpy as np
    import submitit

    from cortexscale.grid import GridPoint
    from cortexscale.train.pretrain import Corpus, Run

__all__ = ["check_cfg", "cmd_launch", "cmd_pretrain", "launch", "pretrain", "read_corpus",
           "register", "reserved_validation"]


def check_cfg(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the ``pretrain:`` config section and return it with defaults filled.

    The schema checks each key; this adds what it cannot express across keys.

    Raises
    ------
    ConfigError
        Naming the key, what was expected and what was found.
    """
    cfg = section("pretrain", cfg)
    if cfg["batch_size"] % cfg["grad_accum"]:
        raise ConfigError(
            f"pretrain.batch_size ({cfg['batch_size']}) must be a multiple of "
            f"pretrain.grad_accum ({cfg['grad_accum']})"
        )
    if not 0 < cfg["min_lr"] <= cfg["lr"]:
        raise ConfigError(
            f"pretrain.min_lr: expected 0 < min_lr <= lr ({cfg['lr']}), found {cfg['min_lr']!r}"
        )
    return cfg


def read_corpus(tokens_h5: Path, frames_h5: Path) -> tuple[np.ndarray, int, np.ndarray]:
    """Load the codes and, per clip, the index of the clip before it in its source.

    Returns
    -------
    codes : int16 (n_clips, t, h, w)
    codebook_size : int
    prev : int64 (n_clips,)
        Index of the preceding clip of the same source, ``-1`` where there is none.
    """
    import numpy as np

    from cortexscale.data.corpus import FRAMES_EXPECTED
    from cortexscale.io.hdf5 import open_h5

    with open_h5(tokens_h5, "the tokenizer's tokens.h5 (cortexscale tokenizer)") as f:
        if "codes" not in f:
            raise InputError(f"{tokens_h5}: no dataset 'codes'; found keys {sorted(f)}")
        if "codebook_size" not in f.attrs:
            raise InputError(f"{tokens_h5}: root attribute 'codebook_size' is missing")
        codes = f["codes"][...]  # (n_clips, t, h, w)
        codebook_size = int(f.attrs["codebook_size"])
    if codes.ndim != 4 or codes.dtype.kind not in "iu":
        raise InputError(
            f"{tokens_h5}/codes: expected integer (n_clips, t, h, w), "
            f"found {codes.dtype} {codes.shape}"
        )
    if codes.size and (codes.min() < 0 or codes.max() >= codebook_size):
        raise InputError(
            f"{tokens_h5}/codes: expected values in [0, {codebook_size}) (codebook_size), "
            f"found [{codes.min()}, {codes.max()}]"
        )
    with open_h5(frames_h5, FRAMES_EXPECTED) as f:
        for key in ("clips", "source", "start_frame"):
            if key not in f:
                raise InputError(f"{frames_h5}: no dataset {key!r}; found keys {sorted(f)}")
        n_frames_clips = f["clips"].shape[0]
        source = f["source"][...]
        start = f["start_frame"][...]
        step = int(f.attrs["clip_len"]) * int(f.attrs.get("time_stride", 1))
    if n_frames_clips != codes.shape[0]:
        raise InputError(
            f"{tokens_h5}/codes has {codes.shape[0]} clips but {frames_h5}/clips has "
            f"{n_frames_clips}; the tokens must be computed from this corpus"
        )
    where = {(int(s), int(b)): i for i, (s, b) in enumerate(zip(source, start, strict=True))}
    prev = np.array(
        [where.get((int(s), int(b) - step), -1) for s, b in zip(source, start, strict=True)],
        dtype=np.int64,
    )
    return codes, codebook_size, prev


def reserved_validation(frames_h5: Path, subset: np.ndarray, eval_clips: int) -> np.ndarray:
    """The corpus's reserved validation clips, checked against the training ``subset``.

    A run trains on the whole subset, whichever the order (the reserve is the same for
    both), and is validated on these (``Corpus.val_from`` ``"reserved"``).

    Returns
    -------
    val : int64 (eval_clips,)
        Validation clip indices (``frames.h5/validation``), sorted.

    Raises
    ------
    InputError
        If the file reserves another number of clips than ``eval_clips`` (the corpus was
        built for another ``pretrain.eval_clips``), or a validation clip lies in ``subset``.
    """
    import numpy as np

    from cortexscale.data.corpus import read_validation

    val = read_validation(frames_h5)
    if val.size != eval_clips:
        raise InputError(
            f"pretrain.eval_clips is {eval_clips} but {frames_h5} reserves {val.size} "
            "validation clips; rebuild the corpus with the same pretrain.eval_clips "
            "(`cortexscale corpus`)"
        )
    overlap = np.intersect1d(subset, val)
    if overlap.size:
        raise InputError(
            f"{frames_h5}: {overlap.size} validation clip(s) (e.g. clip {int(overlap[0])}) lie "
            "in the training subset; the file is inconsistent, rebuild it with "
            "`cortexscale corpus`"
        )
    if subset.size == 0:
        raise InputError(f"{frames_h5}: the training subset is empty")
    return val


def pretrain(
    tokens_h5: str | os.PathLike,
    frames_h5: str | os.PathLike,
    point: GridPoint,
    order: str,
    cfg: dict[str, Any],
    out_dir: str | os.PathLike,
    seed: int,
    threads: int = 1,
    device: str = "cpu",
    on_step: Callable[[int], None] | None = None,
    single_epoch: bool = False,
) -> dict[str, Any]:
    """Train the GPT of one grid point and write ``model.pt``, ``log.tsv``, ``summary.json``.

    Parameters
    ----------
    tokens_h5 : path-like
        ``tokens.h5``: ``codes`` int16 (n_clips, t, h, w) and attr ``codebook_size``.
    frames_h5 : path-like
        ``frames.h5`` of the same corpus: subsets, ``source``, ``start_frame``, attrs.
    point : GridPoint
        Data size (source frames; 0: the whole training pool), hidden, layers, heads,
        precision, replicate seed, and the budget or tokens that set the steps (if any).
    order : {"corpus", "stratified"}
        Which nested subsets to train on.
    cfg : dict
        The config's ``pretrain:`` section (checked with :func:`check_cfg`).
    out_dir : path-like
        Folder of the outputs (created); an interrupted run's ``checkpoint.pt`` there is
        resumed.
    seed : int
        The study seed; with ``point.seed`` it gives the run's seed
        (:func:`cortexscale.grid.training_seed`), which seeds initialisation, dropout and the
        data order.
    threads, device, on_step, single_epoch :
        As in :func:`cortexscale.train.pretrain.train`.

    Returns
    -------
    summary : dict
        The content of ``summary.json``.

    Raises
    ------
    Interrupted
        ``SystemExit(75)`` after SIGTERM/SIGUSR2: the step in flight finished and
        ``out_dir/checkpoint.pt`` holds the state; the same call resumes it bit-exactly.
    TrainingError
        NaN loss (naming the step), out of memory (naming a micro-batch to try), or a
        ``checkpoint.pt`` made for another configuration (naming what differs).
    """
    from cortexscale.data.corpus import ORDERS, read_subset
    from cortexscale.grid import GridPoint, training_seed
    from cortexscale.io.atomic import prepare_outputs
    from cortexscale.train import ddp
    from cortexscale.train.pretrain import CHECKPOINT, Corpus, train

    t0 = time.perf_counter()
    cfg = check_cfg(cfg)
    if not isinstance(point, GridPoint):
        raise ValueError(f"point: expected a cortexscale.grid.GridPoint, found {point!r}")
    if order not in ORDERS:
        raise ConfigError(f"order: expected one of {list(ORDERS)}, found {order!r}")
    tokens_h5, frames_h5, out_dir = Path(tokens_h5), Path(frames_h5), Path(out_dir)
    for path in (tokens_h5, frames_h5):
        if not path.is_file():
            raise MissingInputError(f"pretrain input not found: {path}")
    # before any work (and before any rank can write): writable, no stale temporaries
    prepare_outputs([out_dir / n for n in (CHECKPOINT, "model.pt", "log.tsv", "summary.json")],
                    "pretrain")
    codes, codebook_size, prev = read_corpus(tokens_h5, frames_h5)
    subset = read_subset(frames_h5, point.data_size, order)
    val = reserved_validation(frames_h5, subset, cfg["eval_clips"])
    corpus = Corpus(codes, codebook_size, prev, subset, val)  # val_from "reserved"
    train_seed = training_seed(seed, point.seed)
    run = train(corpus, point, order, cfg, train_seed, out_dir / CHECKPOINT, threads, device,
                on_step, single_epoch)
    run.save(out_dir / "model.pt", run.steps)
    summary = _summary(run, corpus, time.perf_counter() - t0, threads, int(seed))
    if run.dist.rank == 0:
        _write(out_dir, run.state.rows, summary)
        (out_dir / CHECKPOINT).unlink(missing_ok=True)  # model.pt holds the same state
    ddp.teardown()
    return summary


def _summary(run: Run, corpus: Corpus, wall_s: float, threads: int, seed: int) -> dict[str, Any]:
    """The content of ``summary.json`` of a trained :class:`~cortexscale.train.pretrain.Run`."""
    from cortexscale.io.provenance import provenance
    from cortexscale.models.gpt import count_params, flops_per_token
    from cortexscale.train.metrics import device_name, mfu

    point, mcfg, steps, world = run.point, run.mcfg, run.steps, run.dist.world
    fpt = flops_per_token(mcfg)
    tokens_seen = steps * run.tokens_per_step
    train_time = run.state.train_time
    total_flops = fpt * tokens_seen * mcfg.context // mcfg.n_tokens
    return {
        **point.as_dict(),
        "n_params": count_params(run.model, embeddings=True),
        "n_params_no_emb": count_params(run.model),
        "flops_per_token": fpt,
        # every processed position costs fpt; a conditioned model also processes the prefix
        "train_flops": total_flops,
        "tokens_seen": tokens_seen,
        "wall_time_s": wall_s,
        "train_time_s": train_time,
        "tokens_per_s": tokens_seen / train_time if train_time > 0 else float("nan"),
        # MFU of all processes together against the peak of all their devices
        "mfu": mfu(total_flops / train_time / world if train_time > 0 else 0.0,
                   point.precision, run.dev),
        "device_name": device_name(run.dev),
        "world_size": world,
        "skipped_steps": run.state.skipped,
        "resumed": run.state.start > 0,
        "final_val_loss": run.state.val_loss,
        "steps": steps,
        # passes over the training clips (> 1: repeated data)
        "epochs": steps * run.cfg["batch_size"] / corpus.train.size,
        "order": run.order,
        "conditioned": mcfg.conditioned,
        "train_clips": int(corpus.train.size),
        "val_clips": int(corpus.val.size),
        "val_from": corpus.val_from,
        "device": str(run.dev),
        "threads": threads,
        # "seed" is the point's replicate (from as_dict); the run's seed combines it with the
        # study's (cortexscale.grid.training_seed)
        **provenance(run.cfg, stage="pretrain", study_seed=seed, train_seed=run.seed),
    }


def _write(out_dir: Path, rows: list[dict[str, float]], summary: dict[str, Any]) -> None:
    import pandas as pd

    from cortexscale.io.atomic import write_json, write_tsv
    from cortexscale.train.pretrain import LOG_COLUMNS

    write_tsv(out_dir / "log.tsv", pd.DataFrame(rows, columns=list(LOG_COLUMNS)))
    write_json(out_dir / "summary.json", summary)


def launch(
    grids: list[str],
    tokens_h5: str | os.PathLike,
    frames_h5: str | os.PathLike,
    settings: dict[str, Any],
    out_root: str | os.PathLike,
    executor: str = "local",
    folder: str | os.PathLike | None = None,
    threads: int = 1,
    device: str = "cpu",
    timeout_min: int = 60,
    gpus: int = 0,
    partition: str | None = None,
    max_requeue: int = 3,
) -> list[submitit.Job]:
    """Submit one :func:`pretrain` job per grid point with submitit; return the jobs.

    A job interrupted by preemption or time-out checkpoints, is requeued and resumes
    bit-exactly (:mod:`cortexscale.train.launch`).

    Parameters
    ----------
    grids : list of str
        Grid-point names, e.g. ``["d2048_h64_l2_a2_bf16_s0"]``.
    tokens_h5, frames_h5 : path-like
        Inputs of every job.
    settings : dict
        Config sections ``pretrain``, ``corpus`` (for ``subset_order``), ``seed``.
    out_root : path-like
        Each job writes into ``out_root/GRID``.
    executor : {"local", "slurm"}
    folder : path-like, optional
        submitit's log folder (default ``out_root/submitit``).
    threads, device : CPU threads and torch device of each job.
    timeout_min, gpus, partition : job resources (``partition`` for Slurm only).
    max_requeue : int
        Requeues after preemption or time-out before giving up.
    """
    from cortexscale.grid import parse_name
    from cortexscale.train.launch import submit

    if not grids:
        raise ValueError("grids: expected at least one grid-point name, found none")
    points = [parse_name(g) for g in grids]  # validates every name before submitting
    out_root = Path(out_root)
    order = settings["corpus"]["subset_order"]
    calls = [{"tokens_h5": os.fspath(tokens_h5), "frames_h5": os.fspath(frames_h5),
              "point": point, "order": order, "cfg": settings["pretrain"],
              "out_dir": os.fspath(out_root / grid), "seed": int(settings.get("seed", 0)),
              "threads": threads, "device": device}
             for grid, point in zip(grids, points, strict=True)]
    return submit(pretrain, calls, Path(folder) if folder is not None else out_root / "submitit",
                  "pretrain", executor=executor, threads=threads, timeout_min=timeout_min,
                  gpus=gpus, partition=partition, max_requeue=max_requeue)


def cmd_pretrain(args: argparse.Namespace) -> None:
    """Pretrain one grid point (``--grid``)."""
    s = settings(args, ["pretrain", "corpus", "seed"])
    from cortexscale.grid import parse_name

    pretrain(
        args.tokens, args.frames, parse_name(args.grid), s["corpus"]["subset_order"],
        s["pretrain"], args.out_dir, seed=s["seed"], threads=args.threads,
        device=args.device, single_epoch=args.single_epoch,
    )


def cmd_launch(args: argparse.Namespace) -> None:
    """Submit grid points with submitit; print each one's job id (and wait, if asked)."""
    s = settings(args, ["pretrain", "corpus", "seed"])
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


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Declare the pretrain stage's commands (``add`` as in :func:`cortexscale.cli.build_parser`)."""
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
