"""The GPT over video tokens: shapes, causality, conditioning, learning, parameter counts."""

from __future__ import annotations

import pytest
import torch

from cortexscale.errors import InputError
from cortexscale.models.gpt import GPT, GPTConfig, count_params, flops_per_token

SHAPE = (2, 3, 3)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(**kw) -> GPT:
    torch.manual_seed(0)
    args = {"vocab_size": 16, "shape": SHAPE, "hidden": 32, "layers": 2, "heads": 2}
    return GPT(GPTConfig(**{**args, **kw})).eval()


def _codes(b: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 16, (b, *SHAPE), generator=g)


@pytest.mark.parametrize(("hidden", "heads"), [(6, 4), (30, 4), (32, 2), (7, 7), (5, 1)])
def test_shapes(hidden, heads):
    model = _model(hidden=hidden, heads=heads, layers=3)
    logits, loss, hidden_states = model(_codes(), return_hidden=True)
    n = 2 * 3 * 3
    assert logits.shape == (3, n, 16)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert len(hidden_states) == 3
    assert all(h.shape == (3, n, hidden) for h in hidden_states)
    attn = model.blocks[0].attn
    assert attn.qkv.out_features == 3 * heads * (hidden // heads)
    assert attn.proj.in_features == heads * (hidden // heads)
    logits2, loss2 = model(_codes())
    torch.testing.assert_close(logits2, logits)
    assert [h.shape for h in model.hidden_states(_codes(), n_blocks=2)] == [(3, n, hidden)] * 2


def test_hidden_smaller_than_heads_is_rejected():
    with pytest.raises(ValueError, match=r"hidden \(3\) must be >= heads \(4\)"):
        GPTConfig(vocab_size=16, shape=SHAPE, hidden=3, heads=4)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"shape": (2, 3)}, "GPTConfig.shape"),
        ({"layers": 0}, "GPTConfig.layers"),
        ({"dropout": 1.0}, "GPTConfig.dropout"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{"vocab_size": 16, "shape": SHAPE, **kw})


def test_input_validation():
    model = _model()
    with pytest.raises(ValueError, match=r"codes: expected shape \(B, 2, 3, 3\), found"):
        model(torch.zeros(2, 2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="not conditioned"):
        model(_codes(), cond=_codes())
    with pytest.raises(ValueError, match="integer codes"):
        model(torch.zeros(1, *SHAPE))


@pytest.mark.parametrize("conditioned", [False, True])
def test_causal(conditioned):
    """Changing token j changes no output at positions <= j (position j predicts token j)."""
    model = _model(conditioned=conditioned)
    codes = _codes(2)
    cond = _codes(2, seed=1) if conditioned else None
    logits, _, hid = model(codes, cond, return_hidden=True)
    j = 7
    changed = codes.clone().flatten(1)
    changed[:, j] = (changed[:, j] + 1) % 16
    changed = changed.view_as(codes)
    logits2, _, hid2 = model(changed, cond, return_hidden=True)
    torch.testing.assert_close(logits2[:, : j + 1], logits[:, : j + 1])
    torch.testing.assert_close(hid2[-1][:, : j + 1], hid[-1][:, : j + 1])
    assert not torch.allclose(logits2[:, j + 1], logits[:, j + 1])


def test_conditioning_reaches_every_position():
    model = _model(conditioned=True)
    codes, cond = _codes(2), _codes(2, seed=1)
    logits, _ = model(codes, cond)
    assert logits.shape == (2, 18, 16)
    logits2, _ = model(codes, (cond + 1) % 16)
    assert not torch.allclose(logits2[:, 0], logits[:, 0])  # even the first token sees it
    missing, _ = model(codes, torch.full_like(cond, -1))  # -1 = no condition
    assert torch.isfinite(missing).all()
    with pytest.raises(ValueError, match="conditioned; pass the previous clip"):
        model(codes)
    with pytest.raises(ValueError, match="cond: expected batch size 2"):
        model(codes, _codes(3))


@pytest.mark.parametrize("conditioned", [False, True])
def test_loss_decreases_on_a_pattern(conditioned):
    """A deterministic pattern (token = position mod 5) is learnt quickly."""
    torch.manual_seed(0)
    model = _model(conditioned=conditioned).train()
    n = 18
    codes = (torch.arange(n) % 5).view(1, *SHAPE).repeat(8, 1, 1, 1)
    cond = codes if conditioned else None
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        _, loss = model(codes, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.0  # about log(16) at initialisation
    assert losses[-1] < 0.2 * losses[0]


def test_count_params_and_flops():
    cfg = GPTConfig(vocab_size=16, shape=SHAPE, hidden=30, layers=2, heads=4)
    model = GPT(cfg)
    total = sum(p.numel() for p in model.parameters())
    assert count_params(model, embeddings=True) == total
    emb = 16 * 30 + (2 + 3 + 3) * 30 + 30  # tokens, position tables, start token
    assert count_params(model) == total - emb
    inner = 4 * 7  # head_dim = 30 // 4 = 7
    per_block = 30 * 3 * inner + 3 * inner + inner * 30 + 30 + 8 * 30 * 30 + 5 * 30 + 4 * 30
    assert count_params(model) == 2 * per_block + 2 * 30 + 30 * 16
    assert flops_per_token(cfg) == 6 * count_params(model) + 12 * 2 * 4 * 7 * 18
    cond = GPTConfig(vocab_size=16, shape=SHAPE, hidden=30, layers=2, heads=4, conditioned=True)
    assert count_params(GPT(cond)) == count_params(model)  # segment embedding is an embedding
    assert flops_per_token(cond) == 6 * count_params(model) + 12 * 2 * 4 * 7 * 36
    # the paper's base model: about 0.2 GFLOP per token (DESIGN.md, "Cost model")
    base = GPTConfig(vocab_size=2048, shape=(4, 8, 8))
    assert 0.19e9 < flops_per_token(base) < 0.23e9


def test_checkpoint_roundtrip(tmp_path):
    model = _model(hidden=30, heads=4)
    path = tmp_path / "m.pt"
    torch.save({"model_args": model.config.to_dict(), "model": model.state_dict()}, path)
    again = GPT.from_checkpoint(path).eval()
    torch.testing.assert_close(again(_codes())[0], model(_codes())[0])
    torch.save({"model": model.state_dict()}, path)
    with pytest.raises(InputError, match="no 'model_args'"):
        GPT.from_checkpoint(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a copy cut short
    with pytest.raises(ValueError, match=r"m.pt is not a readable torch checkpoint \(truncated"
                       r".*expected a GPT model.pt"):
        GPT.from_checkpoint(path)
    with pytest.raises(FileNotFoundError, match=r"gone.pt does not exist; expected a GPT"):
        GPT.from_checkpoint(tmp_path / "gone.pt")


def test_residual_stream_in_autocast_dtype():
    """``residual='autocast'`` holds the stream in bf16 under autocast, is the same model
    without autocast, and stays close to the float32 stream; bad values are rejected."""
    from cortexscale.models.gpt import residual_dtype

    torch.manual_seed(0)
    base = dict(vocab_size=16, shape=(2, 2, 2), hidden=32, layers=2, heads=4)
    m32 = GPT(GPTConfig(**base))
    m16 = GPT(GPTConfig(**base, residual="autocast"))
    m16.load_state_dict(m32.state_dict())
    codes = torch.randint(0, 16, (3, 2, 2, 2))
    with torch.no_grad():
        assert torch.equal(m32(codes)[1], m16(codes)[1])  # no autocast: identical
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h16 = m16.hidden_states(codes)
            h32 = m32.hidden_states(codes)
            loss16, loss32 = m16(codes)[1], m32(codes)[1]
    assert h16[0].dtype == torch.bfloat16 and h32[0].dtype == torch.float32
    assert abs(loss16.item() - loss32.item()) < 0.05
    with pytest.raises(ValueError, match="residual"):
        GPTConfig(**base, residual="fp16")
    assert residual_dtype("auto", "bf16") == "autocast"
    assert residual_dtype("auto", "fp16") == "fp32"
    assert residual_dtype("fp32", "bf16") == "fp32"
