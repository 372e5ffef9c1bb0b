"""submitit launcher: a local job interrupted by SIGUSR2 requeues itself and resumes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from pretrainutils import CFG

from cortexscale.grid import GridPoint
from cortexscale.stages.pretrain import launch, pretrain

GRID = "d64_h16_l2_a2_fp32_s0"
LCFG = {**CFG, "steps": 300, "eval_every": 100, "checkpoint_every": 0, "dropout": 0.1}


@pytest.mark.slow
def test_local_job_requeues_and_resumes_bit_exactly(corpus, tmp_path):  # noqa: F811
    tokens, frames = corpus
    settings = {"pretrain": LCFG, "corpus": {"subset_order": "corpus"}, "seed": 5}
    (job,) = launch([GRID], tokens, frames, settings, tmp_path / "runs", executor="local",
                    timeout_min=5)
    deadline = time.time() + 60
    while "step 30/300" not in (job.stderr() or ""):  # training has started
        assert time.time() < deadline, job.stderr()
        assert not job.done(), job.stderr()
        time.sleep(0.2)
    # what submitit's controller forwards to the task on preemption/time-out: SIGUSR2
    # (job._interrupt() signals the local controller, which does not forward it)
    (task,) = _children(job._process.pid)
    os.kill(task, signal.SIGUSR2)
    summary = job.result()
    log = job.stderr()
    assert "signal received: checkpointed step" in log, log
    assert "resuming from" in log, log
    assert summary["resumed"] is True
    ref = pretrain(tokens, frames, GridPoint(64, 16, 2, 2, "fp32"), "corpus", LCFG,
                   tmp_path / "ref", seed=5)
    a = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "runs" / GRID / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert summary["final_val_loss"] == ref["final_val_loss"]


def _children(pid: int) -> list[int]:
    p = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in p.read_text().split()]


def test_launch_rejects_bad_input(tmp_path):
    settings = {"pretrain": LCFG, "corpus": {"subset_order": "corpus"}, "seed": 0}
    with pytest.raises(ValueError, match="executor: expected one of"):
        launch([GRID], "t", "f", settings, tmp_path, executor="pbs")
    with pytest.raises(ValueError):
        launch(["nonsense"], "t", "f", settings, tmp_path)
