"""Data-parallel pretraining: 2 gloo processes match 1 process with the same global batch."""

from __future__ import annotations

import os
import socket

import pandas as pd
import torch
import torch.multiprocessing as mp
from test_pretrain import CFG, corpus  # noqa: F401 -- the fixture

from cortexscale.grid import GridPoint
from cortexscale.train.pretrain import pretrain

POINT = GridPoint(64, 16, 2, 2, "fp32")
DCFG = {**CFG, "steps": 8, "eval_every": 4, "batch_size": 8, "grad_accum": 2}
#: Tolerance: the gradients differ only by the order of floating-point sums
#: (the all-reduce averages two half-batch means), so losses agree to ~1e-6.
RTOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, tokens, frames, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    pretrain(tokens, frames, POINT, "corpus", DCFG, out, seed=4)


def test_two_processes_match_one(corpus, tmp_path):  # noqa: F811
    tokens, frames = corpus
    one = pretrain(tokens, frames, POINT, "corpus", DCFG, tmp_path / "one", seed=4)
    mp.spawn(_worker, args=(2, _free_port(), tokens, frames, tmp_path / "two"), nprocs=2,
             join=True)
    a = pd.read_csv(tmp_path / "one" / "log.tsv", sep="\t")
    b = pd.read_csv(tmp_path / "two" / "log.tsv", sep="\t")
    assert len(a) == len(b) == DCFG["steps"]
    pd.testing.assert_series_equal(a["train_loss"], b["train_loss"], rtol=RTOL, atol=0)
    pd.testing.assert_series_equal(a["val_loss"], b["val_loss"], rtol=RTOL, atol=0)
    pa = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["model"]
    pb = torch.load(tmp_path / "two" / "model.pt", weights_only=True)["model"]
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=1e-3, atol=1e-4)  # Adam amplifies ~1e-7
    import json

    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["tokens_seen"] == one["tokens_seen"]
