"""Tests of the video VQ-VAE (cortexscale.models.vqvae)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexscale.models.vqvae import VQVAE, VQVAEConfig

torch.set_num_threads(1)


def tiny(**kw) -> VQVAEConfig:
    args = dict(codebook_size=16, embedding_dim=8, hidden=8, n_res_layers=1, downsample=(4, 8, 8))
    args.update(kw)
    return VQVAEConfig(**args)


@pytest.mark.parametrize(
    ("downsample", "attention"),
    [((4, 8, 8), True), ((1, 1, 1), False), ((2, 4, 1), True), ((1, 2, 4), False),
     ((8, 16, 16), True)],
)
def test_shapes(downsample, attention):
    torch.manual_seed(0)
    model = VQVAE(tiny(downsample=downsample, attention=attention))
    x = torch.rand(2, 3, 8, 16, 16) - 0.5
    out = model(x)
    t, h, w = 8 // downsample[0], 16 // downsample[1], 16 // downsample[2]
    assert out["recon"].shape == x.shape
    assert out["codes"].shape == (2, t, h, w)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    codes = model.encode(x)
    assert codes.shape == (2, t, h, w) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 16
    assert model.decode_codes(codes).shape == x.shape
    assert model.config.latent_shape((8, 16, 16)) == (t, h, w)


def test_preprocess():
    x = np.zeros((2, 4, 6, 8, 3), np.uint8)
    x[..., 1] = 255
    y = VQVAE.preprocess(x)
    assert y.shape == (2, 3, 4, 6, 8) and y.dtype == torch.float32
    assert float(y[:, 0].max()) == -0.5 and float(y[:, 1].min()) == 0.5
    with pytest.raises(ValueError, match="uint8"):
        VQVAE.preprocess(np.zeros((2, 4, 6, 8, 3), np.float32))


def test_encode_decode_consistent_with_forward():
    torch.manual_seed(0)
    model = VQVAE(tiny()).eval()
    x = torch.rand(2, 3, 8, 16, 16) - 0.5
    with torch.no_grad():
        out = model(x)
    codes = model.encode(x)
    assert torch.equal(codes, out["codes"])
    torch.testing.assert_close(model.decode_codes(codes), out["recon"])
    # int16 codes, as stored in tokens.h5, decode the same
    torch.testing.assert_close(model.decode_codes(codes.to(torch.int16)), out["recon"])


def test_ema_update_and_eval_freezes_codebook():
    torch.manual_seed(0)
    model = VQVAE(tiny(restart_threshold=0.0))
    x = torch.rand(4, 3, 8, 16, 16) - 0.5
    model.train()
    model(x)  # first batch initialises the codebook from encoder outputs
    assert bool(model.codebook.initialized)
    before = model.codebook.embeddings.clone()
    cs_before = model.codebook.cluster_size.clone()
    model(x)
    assert not torch.equal(before, model.codebook.embeddings)
    # EMA of counts: decayed total plus (1 - decay) * N
    n = 4 * 2 * 2 * 2
    expected = 0.99 * cs_before.sum() + 0.01 * n
    torch.testing.assert_close(model.codebook.cluster_size.sum(), expected)
    model.eval()
    frozen = model.codebook.embeddings.clone()
    with torch.no_grad():
        model(x)
    model.encode(x)
    assert torch.equal(frozen, model.codebook.embeddings)


def test_dead_code_restart():
    torch.manual_seed(0)
    model = VQVAE(tiny(codebook_size=8))
    model.train()
    x = torch.rand(4, 3, 8, 16, 16) - 0.5
    model(x)
    cb = model.codebook
    with torch.no_grad():  # make code 3 dead: far away, with no usage
        cb.embeddings[3] = 1e3
        cb.embed_sum[3] = 1e3 * 1e-3
        cb.cluster_size[3] = 1e-3
    n0 = int(cb.n_restarts)
    model(x)
    assert int(cb.n_restarts) > n0
    assert float(cb.embeddings[3].abs().max()) < 1e2  # re-initialised from an encoder output
    assert float(cb.cluster_size[3]) >= model.config.restart_threshold
    info = model.codebook_usage()
    assert set(info) == {"used", "fraction", "perplexity", "restarts"}
    assert 0 <= info["used"] <= 8 and info["restarts"] == int(cb.n_restarts)


def test_loss_decreases_on_tiny_dataset():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # 4 clips of constant colour, fitted as one batch
    colours = rng.integers(0, 256, (4, 1, 1, 1, 3)).astype(np.uint8)
    data = VQVAE.preprocess(np.broadcast_to(colours, (4, 8, 16, 16, 3)).copy())
    model = VQVAE(tiny(codebook_size=32, embedding_dim=8, hidden=16))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = model(data)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["recon_loss"].item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = VQVAE(tiny())
    model.train()
    x = torch.rand(2, 3, 8, 16, 16) - 0.5
    model(x)
    model.eval()
    path = tmp_path / "vqvae.pt"
    model.save_checkpoint(path, step=7)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["step"] == 7 and ckpt["model_args"]["downsample"] == (4, 8, 8)
    again = VQVAE.from_checkpoint(path)
    assert not again.training
    assert torch.equal(again.encode(x), model.encode(x))
    with pytest.raises(ValueError, match="reserved"):
        model.save_checkpoint(path, model=1)


@pytest.mark.parametrize("bad", [(3, 8, 8), (4, 0, 8), (4, 8), (4, 8, 8, 2), (4, 8.0, 8)])
def test_bad_downsample(bad):
    with pytest.raises(ValueError, match="downsample"):
        tiny(downsample=bad)


def test_clip_not_divisible():
    model = VQVAE(tiny(downsample=(4, 8, 8)))
    with pytest.raises(ValueError, match=r"H=12 is not divisible by its downsample factor 8"):
        model.encode(torch.zeros(1, 3, 8, 12, 16))
    with pytest.raises(ValueError, match=r"T=6"):
        model(torch.zeros(1, 3, 6, 16, 16))


def test_bad_input():
    model = VQVAE(tiny())
    with pytest.raises(ValueError, match="preprocess"):
        model.encode(torch.zeros(1, 8, 16, 16, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="3 channels"):
        model.encode(torch.zeros(1, 4, 8, 16, 16))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 16\)"):
        model.decode_codes(torch.full((1, 2, 2, 2), 16))


@pytest.mark.parametrize(("key", "value"), [("codebook_size", 1), ("hidden", 0),
                                            ("ema_decay", 1.0), ("commitment", -1.0)])
def test_bad_config(key, value):
    with pytest.raises(ValueError, match=key):
        tiny(**{key: value})
