"""Pretraining end to end on a tiny corpus of cached codes (fp32 and bf16)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from pretrainutils import CFG, PER_SOURCE, VOCAB

from cortexscale.errors import InputError
from cortexscale.grid import GridPoint, training_seed
from cortexscale.models.gpt import GPT, GPTConfig, flops_per_token
from cortexscale.stages.pretrain import pretrain
from cortexscale.train.pretrain import LOG_COLUMNS, ClipStream, lr_at

SUMMARY_KEYS = {
    "grid", "family", "data_size", "hidden", "layers", "heads", "precision", "seed", "budget",
    "tokens", "n_params", "n_params_no_emb", "flops_per_token", "train_flops", "tokens_seen",
    "wall_time_s", "final_val_loss", "steps", "epochs", "cortexscale_version", "config_hash",
    "study_seed", "train_seed",
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # pretrain() sets the thread count




@pytest.mark.parametrize(
    ("precision", "conditioned", "order"),
    [("fp32", False, "corpus"), ("bf16", False, "stratified"), ("fp32", True, "corpus")],
)
def test_pretrain_end_to_end(corpus, tmp_path, precision, conditioned, order):
    tokens, frames = corpus
    point = GridPoint(64, 16, 2, 2, precision)
    out = tmp_path / point.name
    summary = pretrain(
        tokens, frames, point, order, {**CFG, "conditioned": conditioned}, out, seed=1
    )
    assert sorted(p.name for p in out.iterdir()) == ["log.tsv", "model.pt", "summary.json"]

    log = pd.read_csv(out / "log.tsv", sep="\t")
    assert tuple(log.columns) == LOG_COLUMNS
    assert log["step"].iloc[-1] == CFG["steps"]
    assert log["tokens_seen"].iloc[-1] == CFG["steps"] * CFG["batch_size"] * 8
    evals = log.dropna(subset=["val_loss"])
    assert evals["step"].tolist() == [10, 20, 30]
    assert log["val_loss"].isna().sum() == len(log) - 3  # empty where not evaluated
    assert (log["tokens_per_s"] > 0).all() and (log["peak_mem_mb"] > 0).all()
    assert log["lr"].iloc[0] == pytest.approx(CFG["lr"] / CFG["warmup_steps"])
    assert log["train_loss"].iloc[-1] < 0.7 * log["train_loss"].iloc[0]

    on_disk = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(on_disk)
    assert on_disk["grid"] == point.name and on_disk["precision"] == precision
    assert on_disk["final_val_loss"] == pytest.approx(evals["val_loss"].iloc[-1])
    assert on_disk["n_params"] > on_disk["n_params_no_emb"] > 0
    ctx = 2 if conditioned else 1
    assert on_disk["train_flops"] == on_disk["flops_per_token"] * on_disk["tokens_seen"] * ctx
    assert on_disk["val_from"] == "reserved"
    assert on_disk["train_clips"] == 16 and on_disk["val_clips"] == CFG["eval_clips"]
    assert on_disk["seed"] == 0 and on_disk["budget"] == 0 and on_disk["tokens"] == 0
    assert (on_disk["study_seed"], on_disk["train_seed"]) == (1, training_seed(1, 0))
    assert on_disk["epochs"] == pytest.approx(CFG["steps"] * CFG["batch_size"] / 16)
    assert summary["grid"] == on_disk["grid"]

    ckpt = torch.load(out / "model.pt", weights_only=True)
    for key in ("model_args", "model", "optimizer", "scheduler", "scaler", "rng", "step",
                "data_position"):
        assert key in ckpt
    assert ckpt["step"] == CFG["steps"]
    assert ckpt["data_position"] == CFG["steps"] * CFG["batch_size"]
    model = GPT.from_checkpoint(out / "model.pt").eval()
    assert model.config.conditioned is conditioned
    codes = torch.from_numpy(h5py.File(tokens)["codes"][:4]).long()
    _, loss = model(codes, codes if conditioned else None)
    assert torch.isfinite(loss)


def test_pretrain_is_reproducible(corpus, tmp_path):
    tokens, frames = corpus
    point = GridPoint(32, 8, 1, 2, "fp32")
    cfg = {**CFG, "steps": 6, "eval_every": 3}
    a = pretrain(tokens, frames, point, "corpus", cfg, tmp_path / "a", seed=3)
    b = pretrain(tokens, frames, point, "corpus", cfg, tmp_path / "b", seed=3)
    assert a["final_val_loss"] == b["final_val_loss"]
    ta = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    tb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


def test_every_data_size_is_validated_on_the_reserved_clips(corpus, tmp_path):
    """Same validation clips for every data size; each trains on all of its subset."""
    tokens, frames = corpus
    cfg = {**CFG, "steps": 2, "eval_every": 1}
    with h5py.File(frames) as f:
        val = f["validation"][()]
    losses = {}
    for size in (32, 64, 0):  # 0: the whole training pool
        s = pretrain(tokens, frames, GridPoint(size, 8, 1, 1, "fp32"), "corpus", cfg,
                     tmp_path / f"d{size}", seed=0)
        assert (s["val_from"], s["val_clips"]) == ("reserved", 4)
        assert s["train_clips"] == {32: 8, 64: 16, 0: 20}[size]
        losses[size] = s["final_val_loss"]
    assert len(val) == 4 and set(np.unique(val // PER_SOURCE)) == {0, 1}  # both sources
    with pytest.raises(ValueError, match=r"eval_clips is 6 but .*frames.h5 reserves 4"):
        pretrain(tokens, frames, GridPoint(32, 8, 1, 1, "fp32"), "corpus",
                 {**cfg, "eval_clips": 6}, tmp_path / "x", seed=0)
    with h5py.File(frames, "a") as f:  # a corpus written before the reserve
        del f["validation"]
    with pytest.raises(InputError, match="no dataset 'validation'.*rebuild it"):
        pretrain(tokens, frames, GridPoint(32, 8, 1, 1, "fp32"), "corpus", cfg,
                 tmp_path / "y", seed=0)


def _fpt(point, conditioned=False):
    return flops_per_token(GPTConfig(vocab_size=VOCAB, shape=(2, 2, 2), hidden=point.hidden,
                                     layers=point.layers, heads=point.heads,
                                     conditioned=conditioned))


@pytest.mark.parametrize("conditioned", [False, True])
def test_a_budget_sets_the_steps_and_train_flops(corpus, tmp_path, conditioned):
    tokens, frames = corpus
    point = GridPoint(0, 8, 1, 2, "fp32", seed=1, budget=3e7)
    ctx = 16 if conditioned else 8  # positions per clip
    step_flops = CFG["batch_size"] * ctx * _fpt(point, conditioned)
    s = pretrain(tokens, frames, point, "corpus", {**CFG, "conditioned": conditioned},
                 tmp_path / point.name, seed=0)
    assert s["steps"] == round(3e7 / step_flops) > CFG["warmup_steps"]
    assert abs(s["train_flops"] - 3e7) <= step_flops / 2  # within half a step of the budget
    assert s["train_flops"] == s["steps"] * step_flops
    assert s["tokens_seen"] == s["steps"] * CFG["batch_size"] * 8
    assert (s["grid"], s["budget"], s["seed"], s["data_size"]) == (point.name, 3e7, 1, 0)
    assert s["train_clips"] == 20  # the whole pool
    log = pd.read_csv(tmp_path / point.name / "log.tsv", sep="\t")
    assert log["step"].iloc[-1] == s["steps"]


def test_tokens_set_the_steps_and_single_epoch_is_enforced(corpus, tmp_path):
    tokens, frames = corpus
    point = GridPoint(32, 8, 1, 1, "fp32", tokens=330)  # 330 / (4 clips x 8) = 10.3 -> 10
    s = pretrain(tokens, frames, point, "corpus", CFG, tmp_path / "a", seed=0)
    assert (s["steps"], s["tokens_seen"], s["tokens"]) == (10, 320, 330)
    assert s["epochs"] == pytest.approx(40 / 8)
    with pytest.raises(ValueError, match=r"single_epoch: 10 steps x 4 clips = 40 clips but "
                                         r"the training data holds 8"):
        pretrain(tokens, frames, point, "corpus", CFG, tmp_path / "b", seed=0,
                 single_epoch=True)
    assert not (tmp_path / "b" / "model.pt").exists()
    tiny = GridPoint(0, 8, 1, 1, "fp32", budget=10.0)
    with pytest.raises(ValueError, match="less than half a step"):
        pretrain(tokens, frames, tiny, "corpus", CFG, tmp_path / "c", seed=0)


def test_the_replicate_seed_changes_initialisation_and_data_order(corpus, tmp_path):
    tokens, frames = corpus
    cfg = {**CFG, "steps": 2, "eval_every": 2}
    models, runs = [], []
    for seed in (0, 1, 0):
        point = GridPoint(32, 8, 1, 2, "fp32", seed=seed)
        out = tmp_path / f"{point.name}_{len(runs)}"
        runs.append(pretrain(tokens, frames, point, "corpus", cfg, out, seed=4))
        models.append(torch.load(out / "model.pt", weights_only=True))
    assert runs[0]["train_seed"] == runs[2]["train_seed"] != runs[1]["train_seed"]
    w = [m["model"]["blocks.0.attn.qkv.weight"] for m in models]
    assert torch.equal(w[0], w[2]) and not torch.equal(w[0], w[1])
    assert runs[0]["final_val_loss"] == runs[2]["final_val_loss"] != runs[1]["final_val_loss"]
    assert training_seed(4, 1) != training_seed(1, 4)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"steps": 0}, r"'pretrain.steps' must satisfy minimum 1; found 0"),
        ({"bogus": 1}, r"unknown key\(s\) 'bogus' in 'pretrain'"),
        ({"lr": "1e-3"}, r"'pretrain.lr' must be of type number; found \"1e-3\""),
        ({"compile": 1}, r"'pretrain.compile' must be of type boolean; found 1"),
        ({"grad_accum": 3}, r"batch_size \(4\) must be a multiple of pretrain.grad_accum \(3\)"),
        ({"min_lr": 0.1}, r"pretrain.min_lr: expected 0 < min_lr <= lr"),
        ({"eval_clips": 0}, r"'pretrain.eval_clips' must satisfy minimum 1; found 0"),
    ],
)
def test_bad_config_is_rejected(corpus, tmp_path, change, match):
    tokens, frames = corpus
    cfg = {**CFG, **change}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        pretrain(tokens, frames, GridPoint(32, 8, 1, 1, "fp32"), "corpus", cfg, tmp_path, 0)
    assert not (tmp_path / "model.pt").exists()


def test_missing_keys_take_the_schema_defaults():
    from cortexscale.stages.pretrain import check_cfg

    cfg = check_cfg({k: v for k, v in CFG.items() if k != "steps"})
    assert cfg["steps"] == 200


def test_bad_inputs_are_rejected(corpus, tmp_path):
    tokens, frames = corpus
    point = GridPoint(32, 8, 1, 1, "fp32")
    with pytest.raises(ValueError, match="order: expected one of"):
        pretrain(tokens, frames, point, "random", CFG, tmp_path, 0)
    with pytest.raises(InputError, match="subsets/corpus/48"):
        pretrain(tokens, frames, GridPoint(48, 8, 1, 1, "fp32"), "corpus", CFG, tmp_path, 0)
    with h5py.File(tokens, "a") as f:
        f["codes"][0, 0, 0, 0] = VOCAB
    with pytest.raises(ValueError, match=r"tokens.h5/codes: expected values in \[0, 8\)"):
        pretrain(tokens, frames, point, "corpus", CFG, tmp_path, 0)
    # a truncated input names itself (h5py's own error names no file)
    data = tokens.read_bytes()
    tokens.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"tokens.h5 is not a readable HDF5 file \(truncated"):
        pretrain(tokens, frames, point, "corpus", CFG, tmp_path / "out", 0)
    assert not (tmp_path / "out").exists()


def test_lr_schedule_and_stream():
    cfg = {**CFG, "steps": 100, "warmup_steps": 10}
    assert lr_at(9, cfg) == pytest.approx(CFG["lr"])
    assert lr_at(10, cfg) == pytest.approx(CFG["lr"])
    assert lr_at(100, cfg) == pytest.approx(CFG["min_lr"])
    assert lr_at(10, cfg) > lr_at(50, cfg) > lr_at(99, cfg) > CFG["min_lr"]
    clips = np.arange(10, 17)
    full = ClipStream(clips, seed=5).next(20)
    assert sorted(full[:7]) == clips.tolist() and sorted(full[7:14]) == clips.tolist()
    resumed = ClipStream(clips, seed=5, position=9).next(11)
    np.testing.assert_array_equal(resumed, full[9:])
