import re

import pytest

from cortexscale.grid import (
    GridPoint,
    expand,
    flops_per_token,
    format_budget,
    gpt_params,
    model_configs,
    parse_name,
    steps_for,
    training_seed,
    wildcard_regex,
)

PAPER = {
    "data_sizes": [10000, 100000, 1000000, 6000000],
    "base": {"hidden": 576, "layers": 8, "heads": 4},
    "vary": {"hidden": [6, 30, 126, 576], "layers": [1, 2, 4, 8], "heads": [1, 4, 8]},
    "mode": "one_at_a_time",
    "precision": ["fp32", "fp16"],
}


def test_one_at_a_time_matches_the_paper_design():
    configs = model_configs(PAPER)
    # base + 3 other hidden sizes + 3 other depths + 2 other head counts
    assert len(configs) == 9
    assert configs[0] == (576, 8, 4)
    assert (6, 8, 4) in configs and (576, 1, 4) in configs and (576, 8, 8) in configs
    assert all(sum(a != b for a, b in zip(c, (576, 8, 4), strict=True)) <= 1 for c in configs)
    assert len(expand(PAPER)) == 4 * 9 * 2


def test_product_mode_crosses_every_factor():
    grid = {**PAPER, "mode": "product"}
    assert len(model_configs(grid)) == 4 * 4 * 3


def test_product_mode_uses_base_for_unvaried_factor():
    grid = {**PAPER, "mode": "product", "vary": {"hidden": [6, 30]}}
    assert model_configs(grid) == [(6, 8, 4), (30, 8, 4)]


def test_names_are_readable_and_round_trip():
    p = GridPoint(100000, 576, 8, 4, "bf16")
    assert p.name == "d100000_h576_l8_a4_bf16_s0"
    assert parse_name(p.name) == p
    q = GridPoint(2048, 64, 2, 2, "fp32", seed=3, tokens=409600)
    assert q.name == "d2048_h64_l2_a2_fp32_t409600_s3" and parse_name(q.name) == q
    c = GridPoint(0, 64, 2, 2, "fp16", seed=1, budget=3.16e12)
    assert c.name == "c3.16e12_h64_l2_a2_fp16_s1" and parse_name(c.name) == c
    for q in expand(PAPER):
        assert parse_name(q.name) == q


def test_names_are_stable_and_unique():
    names = [p.name for p in expand(PAPER)]
    assert names == [p.name for p in expand(PAPER)]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("bad", [
    "d10_h5_l1_a1_s0", "d10_h5_l1_a1_fp8_s0", "x_d10_h5_l1_a1_fp32_s0", "",
    "d10_h5_l1_a1_fp32",  # the name of a grid point before seeds: no _s
    "d010_h5_l1_a1_fp32_s0", "c3.10e12_h5_l1_a1_fp32_s0", "c1e+11_h5_l1_a1_fp32_s0",
    "c1e11_h5_l1_a1_fp32_t100_s0", "c31.6e11_h5_l1_a1_fp32_s0", "d10_h5_l1_a1_fp32_t0_s0",
])
def test_parse_name_rejects_malformed(bad):
    with pytest.raises(ValueError, match="does not match"):
        parse_name(bad)


def test_every_name_ends_with_the_seed_and_as_dict_has_every_column():
    p = GridPoint(0, 8, 1, 1, "bf16", seed=2, budget=1e11)
    assert p.as_dict() == {"grid": "c1e11_h8_l1_a1_bf16_s2", "family": "videogpt",
                           "data_size": 0, "hidden": 8, "layers": 1, "heads": 1,
                           "precision": "bf16", "seed": 2, "budget": 1e11, "tokens": 0}
    assert all(q.name.endswith(f"_s{q.seed}") for q in expand({**PAPER, "seeds": [0, 7]}))


@pytest.mark.parametrize(("budget", "text"), [
    (1e11, "1e11"), (3e11, "3e11"), (3.16e12, "3.16e12"), (3.1e12, "3.1e12"), (1e3, "1e3"),
    (1.0, "1e0"), (2.5e7, "2.5e7"), (3.162e12, "3.16e12"),
])
def test_budgets_print_with_three_significant_digits(budget, text):
    assert format_budget(budget) == text
    assert float(text) == pytest.approx(budget, rel=5e-3)


ISOFLOP = {
    "mode": "isoflop", "budgets": [1e9, "3e9", 1e10],
    "models": [{"hidden": 16, "layers": 1, "heads": 2}, {"hidden": 32, "layers": 2, "heads": 2},
               {"hidden": 16, "layers": 1, "heads": 2}],
    "precision": ["fp32", "bf16"], "seeds": [0, 1],
    "data_sizes": [2048], "base": {"hidden": 64, "layers": 2, "heads": 2},  # ignored
}


def test_isoflop_expansion():
    points = expand(ISOFLOP)
    assert model_configs(ISOFLOP) == [(16, 1, 2), (32, 2, 2)]  # unique, in the order given
    assert len(points) == 3 * 2 * 2 * 2
    assert points[0].name == "c1e9_h16_l1_a2_fp32_s0"
    assert points[1].name == "c1e9_h16_l1_a2_fp32_s1"
    assert points[-1].name == "c1e10_h32_l2_a2_bf16_s1"
    assert {p.budget for p in points} == {1e9, 3e9, 1e10}  # "3e9": YAML's text, as a number
    assert all(p.data_size == 0 and p.tokens == 0 for p in points)
    assert len({p.name for p in points}) == len(points)
    assert all(parse_name(p.name) == p for p in points)


def test_tokens_axis_and_seeds_in_the_other_modes():
    grid = {**PAPER, "tokens": [1000, 4000], "seeds": [0, 1, 2]}
    points = expand(grid)
    assert len(points) == 4 * 2 * 9 * 2 * 3
    assert {p.tokens for p in points} == {1000, 4000}
    assert {p.name for p in points} == {parse_name(p.name).name for p in points}
    assert len(expand(PAPER)) == 4 * 9 * 2  # no tokens, one seed: the paper's 72 points
    assert {p.seed for p in expand(PAPER)} == {0}


def test_analytic_flops_equal_the_models_own_count():
    import torch

    from cortexscale.models import gpt

    for hidden, layers, heads, vocab, shape, cond in [
        (64, 2, 2, 128, (4, 4, 4), False), (30, 8, 4, 2048, (4, 8, 8), True),
        (6, 1, 4, 33, (2, 2, 2), False),
    ]:
        cfg = gpt.GPTConfig(vocab_size=vocab, shape=shape, hidden=hidden, layers=layers,
                            heads=heads, conditioned=cond)
        with torch.device("meta"):
            n = gpt.count_params(gpt.GPT(cfg))
        assert gpt_params(hidden, layers, heads, vocab) == n
        assert flops_per_token(hidden, layers, heads, vocab, cfg.context) == \
            gpt.flops_per_token(cfg)


def test_steps_from_budget_and_tokens_round_to_the_nearest_step():
    fpt, ctx, n_tok, batch = 1000, 64, 64, 16
    step = batch * ctx * fpt  # 1.024e6 FLOPs per step
    for k in (0.4, 0.5, 9.49, 9.5, 200.0):
        p = GridPoint(0, 8, 1, 1, "fp32", budget=k * step)
        steps = steps_for(p, fpt, ctx, n_tok, batch, default_steps=7)
        assert steps == int(k + 0.5)  # halves round up
        assert abs(steps * step - p.budget) <= step / 2
    # conditioned: twice the positions per predicted token, half the steps
    p = GridPoint(0, 8, 1, 1, "fp32", budget=100 * step)
    assert steps_for(p, fpt, 2 * ctx, n_tok, batch, 7) == 50
    t = GridPoint(64, 8, 1, 1, "fp32", tokens=10 * batch * n_tok + 300)
    assert steps_for(t, fpt, ctx, n_tok, batch, 7) == 10
    assert steps_for(GridPoint(64, 8, 1, 1, "fp32"), fpt, ctx, n_tok, batch, 7) == 7


def test_training_seed_combines_study_and_replicate():
    seeds = {training_seed(a, b) for a in range(4) for b in range(4)}
    assert len(seeds) == 16
    assert training_seed(3, 1) == training_seed(3, 1)
    assert 0 <= training_seed(0, 0) < 2**32
    with pytest.raises(ValueError, match="seeds must be >= 0"):
        training_seed(0, -1)


def test_wildcard_regex_matches_exactly_the_grid():
    points = expand(PAPER)
    rx = re.compile(f"^(?:{wildcard_regex(points)})$")
    assert all(rx.match(p.name) for p in points)
    assert not rx.match("d10000_h576_l8_a4_bf16_s0")
    assert not rx.match("d10000_h577_l8_a4_fp32_s0")
    assert not rx.match("d10000_h576_l8_a4_fp32_s1")


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="grid.mode"):
        model_configs({**PAPER, "mode": "random"})
