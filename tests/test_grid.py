import re

import pytest

from cortexscale.grid import GridPoint, expand, model_configs, parse_name, wildcard_regex

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
    assert p.name == "d100000_h576_l8_a4_bf16"
    assert parse_name(p.name) == p
    for q in expand(PAPER):
        assert parse_name(q.name) == q


def test_names_are_stable_and_unique():
    names = [p.name for p in expand(PAPER)]
    assert names == [p.name for p in expand(PAPER)]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("bad", ["d10_h5_l1_a1", "d10_h5_l1_a1_fp8", "x_d10_h5_l1_a1_fp32", ""])
def test_parse_name_rejects_malformed(bad):
    with pytest.raises(ValueError, match="does not match"):
        parse_name(bad)


def test_wildcard_regex_matches_exactly_the_grid():
    points = expand(PAPER)
    rx = re.compile(f"^(?:{wildcard_regex(points)})$")
    assert all(rx.match(p.name) for p in points)
    assert not rx.match("d10000_h576_l8_a4_bf16")
    assert not rx.match("d10000_h577_l8_a4_fp32")


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="grid.mode"):
        model_configs({**PAPER, "mode": "random"})
