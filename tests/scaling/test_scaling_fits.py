import numpy as np
import pandas as pd
import pytest

from cortexscale.labels import POOLED
from cortexscale.scaling.bootstrap import cube, draw_means
from cortexscale.scaling.fits import (
    bootstrap_fit,
    fit_loglinear,
    fit_saturating,
    loglinear,
    saturating,
)
from cortexscale.scaling.frontier import pareto_front
from cortexscale.scaling.stats import NO_EFFECT, compare_factors
from cortexscale.scaling.summary import summary_markdown

SIZES = np.array([1e4, 1e5, 1e6, 6e6])


def test_loglinear_recovers_slope_and_intercept(rng):
    x = np.geomspace(1e3, 1e7, 9)
    y = loglinear(x, 0.05, 0.03) + rng.normal(0, 0.002, x.size)
    fit = fit_loglinear(x, y)
    assert fit.params["a"] == pytest.approx(0.05, abs=0.01)
    assert fit.params["b"] == pytest.approx(0.03, abs=0.002)
    assert fit.gain_per_decade == pytest.approx(fit.params["b"]) and fit.r2 > 0.99
    assert fit.change_over_range == pytest.approx(fit.params["b"] * 4)  # 1e3..1e7: 4 decades


def test_saturating_recovers_parameters(rng):
    x = np.geomspace(1e3, 1e7, 12)
    y = saturating(x, 0.45, 3.0, 0.3) + rng.normal(0, 0.001, x.size)
    fit = fit_saturating(x, y)
    assert fit.params["r_inf"] == pytest.approx(0.45, abs=0.02)
    assert fit.params["alpha"] == pytest.approx(0.3, abs=0.05)
    assert fit.params["c"] == pytest.approx(3.0, rel=0.5)
    true_change = saturating(1e7, 0.45, 3.0, 0.3) - saturating(1e3, 0.45, 3.0, 0.3)
    assert fit.change_over_range == pytest.approx(true_change, abs=0.005)
    assert fit.at_bound == "" and fit.status == "ok"


def test_no_law_on_fewer_than_three_x_values():
    for law in (fit_loglinear, fit_saturating):
        fit = law(np.array([1e3, 1e3, 1e4, 1e4]), np.array([0.1, 0.12, 0.2, 0.21]))
        assert all(np.isnan(v) for v in fit.params.values())
        assert fit.status.startswith("too few x values (2 distinct")
    row = bootstrap_fit(np.array([1e3, 1e4]), np.zeros((2, 5)), "loglinear", n_boot=10)
    assert row["status"].startswith("too few x values") and np.isnan(row["b_lo"])


def test_saturating_asymptote_never_exceeds_one(rng):
    # a steep, unsaturated rise: the unconstrained asymptote would run far above 1
    x = np.array([1e4, 3e4, 1e5, 3e5])
    y = np.array([0.05, 0.2, 0.4, 0.62]) + rng.normal(0, 0.005, 4)
    fit = fit_saturating(x, y)
    assert fit.params["r_inf"] <= 1.0 and "r_inf" in fit.at_bound
    scores = y[:, None] + rng.normal(0, 0.05, (4, 60))
    row = bootstrap_fit(x, scores, "saturating", n_boot=200)
    assert row["r_inf"] <= 1 and row["r_inf_hi"] <= 1.0 + 1e-12
    assert "r_inf" in row["at_bound"]


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
    true_change = (0.02 * np.log10(600) if law == "loglinear"
                   else saturating(6e6, 0.4, 1.5, 0.25) - saturating(1e4, 0.4, 1.5, 0.25))
    assert row["change_over_range_lo"] <= true_change <= row["change_over_range_hi"]
    assert row["gain_per_decade_lo"] < row["gain_per_decade"] < row["gain_per_decade_hi"]
    assert row["n_units"] == 300 and row["n_points"] == 4 and row["n_seeds"] == 1
    assert row["fold_range"] == pytest.approx(600) and row["ci_unit"].startswith("parcels only")


def test_bootstrap_over_seeds_widens_the_interval(rng):
    # seed-to-seed variation of the slope that no number of parcels can average away
    x = np.geomspace(1e3, 1e5, 4)
    seeds = np.stack([loglinear(x, 0.1, 0.02 + d) for d in (-0.01, 0.0, 0.01, 0.005)], 1)
    scores = seeds[:, :, None] + rng.normal(0, 0.01, (4, 4, 200))
    one = bootstrap_fit(x, scores[:, 0], "loglinear", n_boot=300)
    many = bootstrap_fit(x, scores, "loglinear", n_boot=300)
    assert many["ci_unit"] == "seeds and parcels" and many["n_seeds"] == 4
    assert (many["b_hi"] - many["b_lo"]) > 3 * (one["b_hi"] - one["b_lo"])


def test_cube_and_draws_keep_seeds_and_units_apart():
    df = pd.DataFrame({"m": [1, 1, 1, 1, 2, 2, 2, 2], "seed": [0, 0, 1, 1] * 2,
                       "subject": "s", "roi": "r", "parcel": [0, 1] * 4,
                       "r": [0.1, 0.3, 0.5, 0.7, 1.0, 1.0, 2.0, 2.0]})
    conds, scores = cube(df, ["m"])
    assert scores.shape == (2, 2, 2) and conds["m"].tolist() == [1, 2]
    draws = draw_means(scores, 500, seed=1)
    assert draws.shape == (500, 2)
    assert set(np.round(draws[:, 1], 6)) <= {1.0, 1.5, 2.0}


def test_pareto_front_on_a_hand_made_set():
    cost = np.array([1, 2, 3, 4, 5, 5.0])
    score = np.array([0.1, 0.05, 0.3, 0.2, 0.35, 0.35])
    assert pareto_front(cost, score).tolist() == [True, False, True, False, True, True]


def _parcels(rng, effect, n_seeds=3, n_parcels=128, seed_sd=0.01):
    """Per-parcel scores of 2 data sizes x 2 hidden sizes x 2 precisions x seeds: a parcel's
    own level, a run's own offset (seed), parcel noise, plus ``effect`` for hidden 64;
    fp32 and bf16 of one run differ by a little noise only."""
    level = rng.normal(0.2, 0.1, n_parcels)
    rows = []
    for size in (1000, 4000):
        for hidden in (32, 64):
            for s in range(n_seeds):
                run = level + (effect if hidden == 64 else 0) + rng.normal(0, seed_sd)
                for precision in ("fp32", "bf16"):
                    rows.append(pd.DataFrame({
                        "data_size": size, "hidden": hidden, "layers": 2, "heads": 2,
                        "precision": precision, "seed": s, "subject": "sub-01",
                        "roi": "early", "parcel": np.arange(n_parcels),
                        "r": run + rng.normal(0, 0.0005, n_parcels),
                    }))
    return pd.concat(rows, ignore_index=True)


def test_factor_tests_count_run_pairs_not_parcels(rng):
    table = compare_factors(_parcels(rng, 0.05))
    hidden = table[table["factor"] == "hidden"]
    assert set(hidden["at_precision"]) == {"fp32", "bf16"}  # never pooled over precision
    row = hidden.iloc[0]
    assert (row["value_a"], row["value_b"]) == ("32", "64")
    assert row["n_pairs"] == 6 and row["n_seeds"] == 3 and row["n_contexts"] == 2
    assert row["n_parcels"] == 128 and row["q"] < 0.01 and row["verdict"] == "64 higher"
    assert row["diff_lo"] < 0.05 < row["diff_hi"]
    prec = table[table["factor"] == "precision"].iloc[0]
    assert prec["at_precision"] == "any" and prec["n_pairs"] == 12  # 2 sizes x 2 models x 3


def test_precision_duplicates_are_no_detectable_effect(rng):
    table = compare_factors(_parcels(rng, 0.0))
    # a seed-level spread of 0.01 with no effect: nothing is detected, whatever the
    # 128 parcels per run would suggest if counted as independent
    assert (table["verdict"] == NO_EFFECT).all()
    hidden = table[table["factor"] == "hidden"].iloc[0]
    assert hidden["diff_lo"] < 0 < hidden["diff_hi"] and hidden["n_pairs"] == 6


def test_single_run_pair_gives_a_parcel_interval_without_a_test(rng):
    parcels = _parcels(rng, 0.05, n_seeds=1)
    parcels = parcels[parcels["data_size"] == 1000]
    row = compare_factors(parcels, factors=["hidden"]).iloc[0]
    assert row["n_pairs"] == 1 and np.isnan(row["p"]) and np.isnan(row["q"])
    assert row["ci_unit"].startswith("parcels only (1 seed)")
    assert row["verdict"].startswith("no replicate runs")


def _fit_row(**kw):
    row = {"axis": "n_params", "target": "score", "family": "videogpt", "data_size": 2048,
           "precision": "fp32", "budget": 0.0, "subject": POOLED, "roi": POOLED,
           "law": "loglinear", "status": "ok", "x_min": 1e5, "x_max": 3.4e5,
           "fold_range": 3.4, "n_x": 3, "r2": 0.9, "ci_unit": "seeds and parcels",
           "change_over_range": 0.01, "change_over_range_lo": -0.02,
           "change_over_range_hi": 0.04, "gain_per_decade": 0.0188, "at_bound": ""}
    row.update(kw)
    return row


def _table():
    return pd.DataFrame({"grid": ["g1", "g2"], "family": "videogpt", "data_size": 2048,
                         "hidden": [32, 64], "layers": 2, "heads": 2, "precision": "fp32",
                         "seed": 0, "budget": 0.0, "tokens": 0, "subject": "sub-01",
                         "roi": "early", "mean_r": [0.1, 0.12], "mean_normalised": [5.0, 6.0],
                         "ceiling_r": 0.5})


def _frontier():
    return pd.DataFrame({"family": ["videogpt"], "roi": [POOLED], "on_front": [True]})


def test_summary_states_range_interval_and_no_detectable_effect():
    fits = pd.DataFrame([
        _fit_row(),
        _fit_row(target="val_loss", change_over_range=-0.2, change_over_range_lo=-0.3,
                 change_over_range_hi=-0.1, ci_unit="seeds"),
        _fit_row(axis="data_size", status="too few x values (2 distinct; a law needs 3)"),
    ])
    text = summary_markdown(_table(), fits, _frontier(), pd.DataFrame(
        columns=["family", "target", "method", "status"]), pd.DataFrame(), "demo")
    assert "over 3.4x of parameters (1e+05 to 3.4e+05, 3 values)" in text
    assert "95% CI -0.020 to +0.040" in text and "no detectable effect" in text
    assert "tenfold" not in text and "per decade within that range only" in text
    assert "no law fitted: too few x values (2 distinct" in text
    assert "single seed" in text
    # a score trend opposite to the loss trend is stated
    fits.loc[0, ["change_over_range", "change_over_range_lo", "change_over_range_hi"]] = (
        -0.03, -0.05, -0.01)
    text = summary_markdown(_table(), fits, _frontier(), pd.DataFrame(
        columns=["family", "target", "method", "status"]), pd.DataFrame(), "demo")
    assert "Opposite trends" in text and "validation loss gets better" in text
    assert "brain score gets worse" in text and "a detectable change" in text
    assert "point estimate only" not in text
    # ... and qualified when the score's own interval includes 0
    fits.loc[0, ["change_over_range", "change_over_range_lo", "change_over_range_hi"]] = (
        -0.01, -0.03, +0.01)
    text = summary_markdown(_table(), fits, _frontier(), pd.DataFrame(
        columns=["family", "target", "method", "status"]), pd.DataFrame(), "demo")
    assert "brain score gets worse in its point estimate only (no detectable effect)" in text
