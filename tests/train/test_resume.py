"""Bit-exact resume after SIGTERM/SIGUSR2, refusal of foreign checkpoints, NaN and OOM."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from pretrainutils import CFG

from cortexscale.grid import GridPoint
from cortexscale.logs import setup as setup_logging
from cortexscale.stages.pretrain import pretrain
from cortexscale.train.pretrain import CHECKPOINT, _oom_message
from cortexscale.train.resume import EXIT_REQUEUE, Interrupted, TrainingError

POINT = GridPoint(64, 16, 2, 2, "fp32")
RCFG = {**CFG, "steps": 12, "eval_every": 4, "dropout": 0.1, "checkpoint_every": 0}


def _params(path):
    return torch.load(path, weights_only=True)["model"]


def _kill_at(n, sig):
    def hook(done):
        if done == n:
            os.kill(os.getpid(), sig)  # a real signal, delivered mid-run
    return hook


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR2])
def test_interrupted_run_resumes_bit_exactly(corpus, tmp_path, sig):  # noqa: F811
    tokens, frames = corpus
    ref = pretrain(tokens, frames, POINT, "corpus", RCFG, tmp_path / "ref", seed=2)
    out = tmp_path / "run"
    with pytest.raises(Interrupted) as info:
        pretrain(tokens, frames, POINT, "corpus", RCFG, out, seed=2, on_step=_kill_at(5, sig))
    assert info.value.code == EXIT_REQUEUE == 75
    assert (out / CHECKPOINT).is_file() and not (out / "model.pt").exists()
    assert torch.load(out / CHECKPOINT, weights_only=True)["step"] == 6  # the step finished
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    resumed = pretrain(tokens, frames, POINT, "corpus", RCFG, out, seed=2)
    a, b = _params(tmp_path / "ref" / "model.pt"), _params(out / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["resumed"] and not ref["resumed"]
    assert resumed["final_val_loss"] == ref["final_val_loss"]
    assert not (out / CHECKPOINT).exists()  # the run completed
    log_ref = (tmp_path / "ref" / "log.tsv").read_text().splitlines()
    log = (out / "log.tsv").read_text().splitlines()
    assert len(log) == len(log_ref)  # the rows before the signal were kept


def test_fp16_counts_skipped_steps_and_resumes_with_the_scaler(
        corpus, tmp_path, monkeypatch, capfd):  # noqa: F811
    """fp16 runs through the gradient scaler (on CPU too): overflowing steps are skipped,
    counted and reported, and the scaler's state survives an interruption bit-exactly."""
    from cortexscale.train import pretrain as module

    def large_scale(precision, device):  # 2**24 overflows fp16 gradients for a few steps
        return torch.amp.GradScaler("cpu", init_scale=2.0**24, enabled=precision == "fp16")

    monkeypatch.setattr(module, "grad_scaler", large_scale)
    setup_logging("pretrain")  # the skipped steps are logged, as the CLI sets logging up
    tokens, frames = corpus
    point = GridPoint(64, 16, 2, 2, "fp16")
    ref = pretrain(tokens, frames, point, "corpus", RCFG, tmp_path / "ref", seed=2)
    n = ref["skipped_steps"]
    assert 0 < n < RCFG["steps"]
    assert f"fp16: the gradient scaler skipped {n} of 12 steps (overflow)" in capfd.readouterr().err
    scale = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["scaler"]["scale"]
    assert scale == 2.0 ** (24 - n)  # halved once per skipped step, no growth within 12 steps
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        pretrain(tokens, frames, point, "corpus", RCFG, out, seed=2,
                 on_step=_kill_at(n + 2, signal.SIGTERM))
    resumed = pretrain(tokens, frames, point, "corpus", RCFG, out, seed=2)
    assert resumed["resumed"] and resumed["skipped_steps"] == n
    a, b = _params(tmp_path / "ref" / "model.pt"), _params(out / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_periodic_checkpoint_and_foreign_checkpoint(corpus, tmp_path):  # noqa: F811
    tokens, frames = corpus
    cfg = {**RCFG, "checkpoint_every": 4}

    def crash(done):
        if done == 6:
            raise KeyboardInterrupt  # killed without a signal handler: last checkpoint stays
    with pytest.raises(KeyboardInterrupt):
        pretrain(tokens, frames, POINT, "corpus", cfg, tmp_path, seed=2, on_step=crash)
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 4
    other = GridPoint(64, 32, 2, 4, "fp32")
    with pytest.raises(TrainingError, match=r"another configuration.*heads: checkpoint 2 != "
                       r"run 4.*hidden: checkpoint 16 != run 32"):
        pretrain(tokens, frames, other, "corpus", cfg, tmp_path, seed=2)
    with pytest.raises(TrainingError, match=r"pretrain.lr: checkpoint 0.01 != run 0.02"):
        pretrain(tokens, frames, POINT, "corpus", {**cfg, "lr": 0.02}, tmp_path, seed=2)
    s = pretrain(tokens, frames, POINT, "corpus", cfg, tmp_path, seed=2)
    assert s["resumed"] and s["steps"] == 12


def test_nan_loss_names_the_step(corpus, tmp_path):  # noqa: F811
    tokens, frames = corpus

    def poison(done):
        if done == 3:
            for model in _live_models():  # the run's model, found without a hook into it
                with torch.no_grad():
                    model.tok_emb.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"not finite \(NaN/inf\) at step 4 of 12"):
        pretrain(tokens, frames, POINT, "corpus", RCFG, tmp_path, seed=2, on_step=poison)


def _live_models():
    import gc

    from cortexscale.models.gpt import GPT

    return [o for o in gc.get_objects() if type(o) is GPT]


def test_summary_metrics(corpus, tmp_path):  # noqa: F811
    tokens, frames = corpus
    s = pretrain(tokens, frames, POINT, "corpus", {**RCFG, "steps": 4}, tmp_path, seed=0)
    assert s["mfu"] is None and s["device_name"] == "cpu"  # no peak table entry for CPUs
    assert s["skipped_steps"] == 0 and s["world_size"] == 1
    assert s["train_flops"] == s["flops_per_token"] * s["tokens_seen"]
    assert s["n_params"] > s["n_params_no_emb"]


def test_oom_message_suggests_a_micro_batch():
    cfg = {**CFG, "batch_size": 64, "grad_accum": 1}
    msg = _oom_message(cfg, 64, 1, torch.device("cuda"))
    assert "micro-batch of 64" in msg and "try a micro-batch of 32: pretrain.grad_accum: 2" in msg
    msg = _oom_message({**cfg, "batch_size": 1}, 1, 1, torch.device("cuda"))
    assert "cannot be smaller" in msg


def test_out_of_memory_stops_the_run_with_advice(corpus, tmp_path, monkeypatch):  # noqa: F811
    """An out-of-memory error in a training step becomes a TrainingError that names the
    micro-batch to try, and the run leaves no model or summary behind."""
    from cortexscale.models.gpt import GPT

    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(GPT, "forward", oom)
    tokens, frames = corpus
    cfg = {**RCFG, "batch_size": 8, "grad_accum": 1}
    with pytest.raises(TrainingError, match=r"micro-batch of 8 clips.*try a micro-batch of 4: "
                       r"pretrain.grad_accum: 2"):
        pretrain(tokens, frames, POINT, "corpus", cfg, tmp_path, seed=2)
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "summary.json").exists()


def test_mfu_table():
    from cortexscale.train.metrics import peak_flops

    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA H200", "tf32") == pytest.approx(494.7e12)
    assert peak_flops("NVIDIA A100-SXM4-80GB", "fp32") == pytest.approx(19.5e12)
    assert peak_flops("cpu", "bf16") is None
