import numpy as np
import pandas as pd
import pytest

from cortexscale.scaling.fits import (
    bootstrap_fit,
    fit_loglinear,
    fit_saturating,
    loglinear,
    saturating,
)
from cortexscale.scaling.frontier import fit_allocation, optimal_allocation, pareto_front
from cortexscale.scaling.stats import compare_factors

SIZES = np.array([1e4, 1e5, 1e6, 6e6])


def test_loglinear_recovers_slope_and_intercept(rng):
    x = np.geomspace(1e3, 1e7, 9)
    y = loglinear(x, 0.05, 0.03) + rng.normal(0, 0.002, x.size)
    fit = fit_loglinear(x, y)
    assert fit.params["a"] == pytest.approx(0.05, abs=0.01)
    assert fit.params["b"] == pytest.approx(0.03, abs=0.002)
    assert fit.gain_per_decade == fit.params["b"] and fit.r2 > 0.99


def test_saturating_recovers_parameters(rng):
    x = np.geomspace(1e3, 1e7, 12)
    y = saturating(x, 0.45, 3.0, 0.3) + rng.normal(0, 0.001, x.size)
    fit = fit_saturating(x, y)
    assert fit.params["r_inf"] == pytest.approx(0.45, abs=0.02)
    assert fit.params["alpha"] == pytest.approx(0.3, abs=0.05)
    assert fit.params["c"] == pytest.approx(3.0, rel=0.5)
    true_gain = saturating(1e8, 0.45, 3.0, 0.3) - saturating(1e7, 0.45, 3.0, 0.3)
    assert fit.gain_per_decade == pytest.approx(true_gain, abs=0.005)


def test_too_few_sizes_give_nan():
    assert np.isnan(fit_loglinear(np.array([10.0, 10.0]), np.array([0.1, 0.2])).params["b"])
    assert np.isnan(fit_saturating(SIZES[:2], np.array([0.1, 0.2])).params["alpha"])


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="positive"):
        fit_loglinear(np.array([0.0, 1.0]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="law must be one of"):
        bootstrap_fit(SIZES, np.zeros((4, 3)), "cubic")
    with pytest.raises(ValueError, match=r"\(n_points, n_units\)"):
        bootstrap_fit(SIZES, np.zeros((3, 3)), "loglinear")


@pytest.mark.parametrize("law", ["loglinear", "saturating"])
def test_bootstrap_interval_covers_the_truth(rng, law):
    # 300 parcels whose scores follow the law plus parcel noise
    truth = loglinear(SIZES, 0.1, 0.02) if law == "loglinear" else saturating(SIZES, 0.4, 1.5, 0.25)
    scores = truth[:, None] + rng.normal(0, 0.05, (SIZES.size, 300))
    row = bootstrap_fit(SIZES, scores, law, n_boot=400, seed=1)
    true_gain = (0.02 if law == "loglinear"
                 else saturating(6e7, 0.4, 1.5, 0.25) - saturating(6e6, 0.4, 1.5, 0.25))
    assert row["gain_per_decade_lo"] <= true_gain <= row["gain_per_decade_hi"]
    assert row["gain_per_decade_lo"] < row["gain_per_decade"] < row["gain_per_decade_hi"]
    assert row["n_units"] == 300 and row["n_points"] == 4


def test_pareto_front_on_a_hand_made_set():
    cost = np.array([1, 2, 3, 4, 5, 5.0])
    score = np.array([0.1, 0.05, 0.3, 0.2, 0.35, 0.35])
    assert pareto_front(cost, score).tolist() == [True, False, True, False, True, True]


def test_allocation_recovers_a_known_law():
    n, d = np.meshgrid(np.geomspace(1e5, 1e8, 5), np.geomspace(1e7, 1e10, 5))
    n, d = n.ravel(), d.ravel()
    y = 0.5 - 20 * n**-0.3 - 40 * d**-0.25
    fit = fit_allocation(n, d, y)
    assert fit["status"] == "ok"
    assert fit["a"] == pytest.approx(0.3, abs=0.02) and fit["b"] == pytest.approx(0.25, abs=0.02)
    nd = optimal_allocation(fit, np.array([1e18, 1e20]))
    assert np.allclose(6 * nd[:, 0] * nd[:, 1], [1e18, 1e20])
    # more compute: both grow, and the split follows the fitted exponents
    assert (nd[1] > nd[0]).all()
    assert np.log(nd[1, 0] / nd[0, 0]) / np.log(100) == pytest.approx(0.25 / 0.55, abs=0.02)


def test_allocation_is_refused_when_tokens_do_not_vary():
    fit = fit_allocation(np.array([1e5, 1e6, 1e7]), np.full(3, 1e8), np.array([0.1, 0.2, 0.3]))
    assert fit["status"].startswith("not identifiable") and np.isnan(fit["a"])


def _parcels(rng, effect):
    """Per-parcel scores: a parcel's own level (shared by every grid point) plus noise,
    plus ``effect`` for hidden 64."""
    level = {s: rng.normal(0.2, 0.1, 50) for s in ("sub-01", "sub-02")}
    rows = []
    for hidden in (32, 64):
        for precision in ("fp32", "bf16"):
            for subject in ("sub-01", "sub-02"):
                r = level[subject] + (effect if hidden == 64 else 0) + rng.normal(0, 0.01, 50)
                rows.append(pd.DataFrame({
                    "data_size": 1000, "hidden": hidden, "layers": 2, "heads": 2,
                    "precision": precision, "subject": subject, "roi": "early",
                    "parcel": np.arange(50), "r": r,
                }))
    return pd.concat(rows, ignore_index=True)


def test_compare_factors_finds_a_planted_effect(rng):
    table = compare_factors(_parcels(rng, 0.05))
    row = table[table["factor"] == "hidden"].iloc[0]
    assert (row["value_a"], row["value_b"]) == ("32", "64")
    assert row["q"] < 1e-6 and row["n_contexts"] == 2
    prec = table[table["factor"] == "precision"].iloc[0]
    assert prec["q"] > 0.01  # precision changes nothing but the noise


def test_compare_factors_without_effect_is_not_significant(rng):
    table = compare_factors(_parcels(rng, 0.0))
    assert (table["q"] > 0.01).all()
