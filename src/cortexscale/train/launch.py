"""Launch pretraining runs with submitit, outside Snakemake (quick sweeps, debugging).

Every job calls the same entry point as ``cortexscale pretrain``
(:func:`cortexscale.train.pretrain.pretrain`) through :class:`PretrainJob`, a
``submitit.helpers.Checkpointable``: on preemption or time-out submitit sends SIGUSR2; the
training loop finishes its step, writes ``checkpoint.pt``, then hands over to submitit, which
calls :meth:`PretrainJob.checkpoint` and requeues the same call; the requeued job resumes
from the checkpoint bit-exactly. Snakemake stays the orchestrator of record.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import submitit

from cortexscale.grid import parse_name

__all__ = ["EXECUTORS", "PretrainJob", "launch"]

EXECUTORS = ("local", "slurm")


class PretrainJob(submitit.helpers.Checkpointable):
    """Callable that runs one grid point; ``checkpoint()`` requeues it with the same call."""

    def __call__(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        from cortexscale.train.pretrain import pretrain

        return pretrain(**kwargs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # the training loop wrote checkpoint.pt before submitit called this
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


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
    """Submit one pretraining job per grid point; return the submitit jobs.

    Parameters
    ----------
    grids : list of str
        Grid-point names, e.g. ``["d2048_h64_l2_a2_bf16_s0"]``.
    tokens_h5, frames_h5 : path-like
        Inputs of every job.
    settings : dict
        Validated config sections ``pretrain``, ``corpus`` (for ``subset_order``), ``seed``.
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
    if executor not in EXECUTORS:
        raise ValueError(f"executor: expected one of {list(EXECUTORS)}, found {executor!r}")
    if not grids:
        raise ValueError("grids: expected at least one grid-point name, found none")
    points = [parse_name(g) for g in grids]  # validates every name before submitting
    out_root = Path(out_root)
    folder = Path(folder) if folder is not None else out_root / "submitit"
    ex = submitit.AutoExecutor(folder=folder, cluster=executor,
                               slurm_max_num_timeout=max_requeue)
    params: dict[str, Any] = {"timeout_min": timeout_min, "gpus_per_node": gpus,
                              "tasks_per_node": 1}
    if executor == "slurm":
        params.update(cpus_per_task=threads, slurm_signal_delay_s=120)
        if partition:
            params["slurm_partition"] = partition
    ex.update_parameters(**params)
    order = settings["corpus"]["subset_order"]
    jobs = []
    for grid, point in zip(grids, points, strict=True):
        kwargs = {
            "tokens_h5": os.fspath(tokens_h5), "frames_h5": os.fspath(frames_h5),
            "point": point, "order": order, "cfg": settings["pretrain"],
            "out_dir": os.fspath(out_root / grid), "seed": int(settings.get("seed", 0)),
            "threads": threads, "device": device,
        }
        jobs.append(ex.submit(PretrainJob(), kwargs))
    return jobs
