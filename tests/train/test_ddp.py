"""Data-parallel pretraining: 2 gloo processes match 1 process with the same global batch."""

from __future__ import annotations

import os
import socket

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from pretrainutils import CFG

from cortexscale.grid import GridPoint
from cortexscale.stages.pretrain import pretrain

DCFG = {**CFG, "steps": 8, "eval_every": 4, "batch_size": 8, "grad_accum": 2}
#: Relative tolerance of the losses. fp32: the gradients differ only by the order of
#: floating-point sums (the all-reduce averages two half-batch means), so losses agree to
#: ~1e-6. fp16 (autocast and the gradient scaler): half-batch matmuls round differently in
#: fp16; measured 2.5e-4 at most.
RTOL = {"fp32": 1e-5, "fp16": 2e-3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, tokens, frames, out, point):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    pretrain(tokens, frames, point, "corpus", DCFG, out, seed=4)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_two_processes_match_one(corpus, tmp_path, precision):  # noqa: F811
    tokens, frames = corpus
    point = GridPoint(64, 16, 2, 2, precision)
    one = pretrain(tokens, frames, point, "corpus", DCFG, tmp_path / "one", seed=4)
    mp.spawn(_worker, args=(2, _free_port(), tokens, frames, tmp_path / "two", point),
             nprocs=2, join=True)
    rtol = RTOL[precision]
    a = pd.read_csv(tmp_path / "one" / "log.tsv", sep="\t")
    b = pd.read_csv(tmp_path / "two" / "log.tsv", sep="\t")
    assert len(a) == len(b) == DCFG["steps"]
    pd.testing.assert_series_equal(a["train_loss"], b["train_loss"], rtol=rtol, atol=0)
    pd.testing.assert_series_equal(a["val_loss"], b["val_loss"], rtol=rtol, atol=0)
    pa = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["model"]
    pb = torch.load(tmp_path / "two" / "model.pt", weights_only=True)["model"]
    if precision == "fp32":  # Adam amplifies the ~1e-7 differences of the sums
        for k in pa:
            torch.testing.assert_close(pa[k], pb[k], rtol=1e-3, atol=1e-4)
    else:  # fp16: Adam turns the rounding of near-zero gradients (the key bias's are zero
        # in exact arithmetic) into lr-sized steps, so compare the whole parameter vector
        flat_a = torch.cat([v.flatten() for v in pa.values()])
        flat_b = torch.cat([pb[k].flatten() for k in pa])
        assert (flat_a - flat_b).norm() <= 0.01 * flat_a.norm()
    import json

    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["tokens_seen"] == one["tokens_seen"]
