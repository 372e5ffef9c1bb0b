"""Submit training calls with submitit, outside Snakemake (quick sweeps, debugging).

:func:`submit` runs each call ``run(**kwargs)`` as a submitit job through :class:`Job`, a
``submitit.helpers.Checkpointable``: on preemption or time-out submitit sends SIGUSR2; the
training loop finishes its step, writes ``checkpoint.pt``, then hands over to submitit, which
calls :meth:`Job.checkpoint` and requeues the same call; the requeued job resumes from the
checkpoint bit-exactly. ``cortexscale launch`` (:func:`cortexscale.stages.pretrain.launch`)
submits one pretraining run per grid point this way. Snakemake stays the orchestrator of
record.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import submitit

from cortexscale.logs import setup as setup_logging

__all__ = ["EXECUTORS", "Job", "submit"]

EXECUTORS = ("local", "slurm")


class Job(submitit.helpers.Checkpointable):
    """Callable that runs ``run(**kwargs)``; ``checkpoint()`` requeues it with the same call.

    Parameters
    ----------
    run : callable
        A module-level function (submitit pickles it by name).
    stage : str
        The stage name of the job's log lines (``cortexscale STAGE: ...`` on its stderr).
    """

    def __init__(self, run: Callable[..., Any], stage: str) -> None:
        self.run, self.stage = run, stage

    def __call__(self, kwargs: dict[str, Any]) -> Any:
        setup_logging(self.stage)
        return self.run(**kwargs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # the training loop wrote checkpoint.pt before submitit called this
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def submit(
    run: Callable[..., Any],
    calls: Sequence[dict[str, Any]],
    folder: str | os.PathLike,
    stage: str,
    executor: str = "local",
    threads: int = 1,
    timeout_min: int = 60,
    gpus: int = 0,
    partition: str | None = None,
    max_requeue: int = 3,
) -> list[submitit.Job]:
    """Submit one job per call ``run(**kwargs)``; return the submitit jobs.

    Parameters
    ----------
    run : callable
        A module-level function, e.g. :func:`cortexscale.stages.pretrain.pretrain`.
    calls : sequence of dict
        The keyword arguments of each job.
    folder : path-like
        submitit's log folder.
    stage : str
        The jobs' stage name, for their log lines.
    executor : {"local", "slurm"}
    threads, timeout_min, gpus, partition : job resources (``threads`` and ``partition``
        for Slurm only).
    max_requeue : int
        Requeues after preemption or time-out before giving up.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor: expected one of {list(EXECUTORS)}, found {executor!r}")
    ex = submitit.AutoExecutor(folder=Path(folder), cluster=executor,
                               slurm_max_num_timeout=max_requeue)
    params: dict[str, Any] = {"timeout_min": timeout_min, "gpus_per_node": gpus,
                              "tasks_per_node": 1}
    if executor == "slurm":
        params.update(cpus_per_task=threads, slurm_signal_delay_s=120)
        if partition:
            params["slurm_partition"] = partition
    ex.update_parameters(**params)
    return [ex.submit(Job(run, stage), kwargs) for kwargs in calls]
