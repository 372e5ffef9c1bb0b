"""End-to-end tests of the tokenizer stage (cortexscale.stages.tokenizer)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from cortexscale.logs import setup as setup_logging
from cortexscale.models.vqvae import VQVAE
from cortexscale.stages.tokenizer import train_tokenizer

torch.set_num_threads(1)

CFG = {"codebook_size": 32, "embedding_dim": 8, "hidden": 8, "n_res_layers": 1,
       "downsample": [4, 8, 8], "steps": 6, "batch_size": 4, "lr": 3e-4,
       "commitment": 0.25, "ema_decay": 0.99}


def write_frames(path, n_clips=10, T=8, H=16, W=16, seed=0):
    """A frames.h5 as in docs/formats.md (two sources, one corpus-order subset)."""
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, 256, (n_clips, T, H, W, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("clips", data=clips, chunks=(1, T, H, W, 3), compression="gzip")
        f["source"] = (np.arange(n_clips) % 2).astype(np.int32)
        f["start_frame"] = (np.arange(n_clips) // 2 * T).astype(np.int64)
        f.create_dataset("sources", data=["ep0", "ep1"], dtype=h5py.string_dtype())
        f["subsets/corpus/64"] = np.arange(64 // T, dtype=np.int64)
        f["subsets/stratified/64"] = np.arange(64 // T, dtype=np.int64)
        f.attrs.update(clip_len=T, height=H, width=W, fps=15, time_stride=1,
                       data_sizes=np.array([64]))
    return clips


@pytest.fixture
def frames(tmp_path):
    path = tmp_path / "frames.h5"
    clips = write_frames(path)
    return path, clips


def run(tmp_path, frames_path, cfg=CFG, seed=0, sub="out", **kw):
    out = tmp_path / sub
    summary = train_tokenizer(frames_path, out / "vqvae.pt", out / "tokens.h5",
                              out / "summary.json", dict(cfg), seed=seed, **kw)
    return out, summary


def test_end_to_end(tmp_path, frames, capsys):
    path, clips = frames
    setup_logging("tokenizer")  # progress is logged, as the CLI sets logging up
    out, summary = run(tmp_path, path)
    with h5py.File(out / "tokens.h5") as f:
        codes = f["codes"][:]
        attrs = dict(f.attrs)
    assert codes.shape == (10, 2, 2, 2) and codes.dtype == np.int16
    assert codes.min() >= 0 and codes.max() < 32
    assert attrs["codebook_size"] == 32 and list(attrs["downsample"]) == [4, 8, 8]
    assert attrs["perplexity"] > 0 and attrs["seed"] == 0 and "config_hash" in attrs
    on_disk = json.loads((out / "summary.json").read_text())
    for key in ("recon_mse", "perplexity", "used_codes", "wall_time_s", "n_params"):
        assert key in on_disk and key in summary
    assert on_disk["used_codes"] == len(np.unique(codes))
    assert "tokenizer: step 6/6" in capsys.readouterr().err
    # the checkpoint reloads (weights_only) and gives the same codes
    ckpt = torch.load(out / "vqvae.pt", weights_only=True)
    assert ckpt["model_args"]["codebook_size"] == 32 and ckpt["step"] == 6
    model = VQVAE.from_checkpoint(out / "vqvae.pt")
    again = model.encode(VQVAE.preprocess(clips)).numpy()
    np.testing.assert_array_equal(again, codes)
    # no temporary files left behind
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "tokens.h5", "vqvae.pt"]


def test_deterministic_and_train_subset(tmp_path, frames):
    path, _ = frames
    out1, s1 = run(tmp_path, path, sub="a")
    out2, s2 = run(tmp_path, path, sub="b")
    out3, _ = run(tmp_path, path, sub="c", train_clips=np.array([0, 2, 4]))
    c = [h5py.File(o / "tokens.h5")["codes"][:] for o in (out1, out2, out3)]
    np.testing.assert_array_equal(c[0], c[1])
    assert s1["recon_mse"] == s2["recon_mse"]
    assert c[2].shape == c[0].shape  # every clip is tokenised, whatever the training subset
    with pytest.raises(ValueError, match=r"train_clips: indices must lie in \[0, 10\)"):
        run(tmp_path, path, sub="d", train_clips=np.array([0, 10]))


def test_config_errors(tmp_path, frames):
    path, _ = frames
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'bogus' in 'tokenizer'"):
        run(tmp_path, path, cfg={**{k: v for k, v in CFG.items() if k != "lr"}, "bogus": 1})
    with pytest.raises(ValueError, match="'tokenizer.codebook_size' must satisfy maximum 32767"):
        run(tmp_path, path, cfg={**CFG, "codebook_size": 40000})
    with pytest.raises(ValueError, match="downsample"):
        run(tmp_path, path, cfg={**CFG, "downsample": [3, 8, 8]})
    with pytest.raises(ValueError, match=r"frames.h5.*W=16 is not divisible.*32"):
        run(tmp_path, path, cfg={**CFG, "downsample": [4, 8, 32]})
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_frames_file(tmp_path):
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f["clips"] = np.zeros((2, 8, 16, 16, 3), np.float32)
    with pytest.raises(ValueError, match=r"frames.h5: 'clips' must be uint8"):
        run(tmp_path, path)
