"""The compute-optimal allocation (approaches 2 and 3) on synthetic arrays and tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cortexscale.scaling.allocation import (
    allocation_table,
    fit_parametric,
    parabola_optima,
)

BUDGETS = [1e15, 1e16, 1e17, 1e18]
EXPONENT = 0.6  # planted N*(C) = K C^0.6
K = 10 ** (9 - 18 * EXPONENT)  # N*(1e18) = 1e9


def _n_star(c):
    return K * c**EXPONENT


def _isoflop_study(rng, n_seeds=3, n_parcels=40, seed_sd=0.004, parcel_sd=0.05,
                   width=0.1):
    """Runs and parcels of a planted IsoFLOP design: per budget 5 models around N*(C); the
    score is a parabola in log10 N with its maximum at N*, the loss one with its minimum."""
    runs, parcels = [], []
    for c in BUDGETS:
        for off in (-0.6, -0.3, 0.0, 0.3, 0.6):
            n = _n_star(c) * 10 ** (off + 0.07)  # the optimum is not at a sampled N
            dx = np.log10(n / _n_star(c))
            for s in range(n_seeds):
                base = dict(family="planted", data_size=0, hidden=0, layers=0, heads=0,
                            precision="none", budget=c, tokens=0, n_params=n, seed=s)
                loss = 2.0 + 0.2 * dx**2 + rng.normal(0, 0.002)
                runs.append({**base, "tokens_seen": c / (6 * n), "train_flops": c,
                             "final_val_loss": loss})
                level = 0.3 - width * dx**2 + rng.normal(0, seed_sd)
                parcels.append(pd.DataFrame({
                    **base, "subject": "sub-01", "roi": "early", "parcel": np.arange(n_parcels),
                    "r": level + rng.normal(0, parcel_sd, n_parcels)}))
    return pd.DataFrame(runs), pd.concat(parcels, ignore_index=True)


def test_parabola_optimum_interior_and_edge():
    x = np.array([7.0, 7.5, 8.0, 8.5])
    y = -((x - 7.8) ** 2)
    x_opt, y_opt, interior = parabola_optima(x, y[None, :], "max")
    assert x_opt[0] == pytest.approx(7.8) and interior[0] and y_opt[0] == pytest.approx(0)
    # a monotone curve: the optimum is the better end, and it is flagged
    x_opt, _, interior = parabola_optima(x, (x - 7.0)[None, :], "max")
    assert not interior[0] and x_opt[0] == 8.5
    # a vertex outside the range is not an optimum
    x_opt, _, interior = parabola_optima(x, -((x - 9.5) ** 2)[None, :], "max")
    assert not interior[0] and x_opt[0] == 8.5


def test_isoflop_allocation_recovers_the_optimum_and_the_exponent(rng):
    runs, parcels = _isoflop_study(rng, n_seeds=5)
    table = allocation_table(runs, parcels, n_boot=300, n_refit=0, parametric=False)
    for target in ("score", "val_loss"):
        per = table[(table["target"] == target) & (table["method"] == "isoflop_parabola")]
        assert len(per) == len(BUDGETS) and (per["status"] == "ok").all()
        # a percentile bootstrap over few seeds is somewhat narrow: most, not all, budgets
        covered = [r.n_opt_lo <= _n_star(r.budget) <= r.n_opt_hi for r in per.itertuples()]
        assert sum(covered) >= len(BUDGETS) - 1, (target, covered)
        for row in per.itertuples():
            truth = _n_star(row.budget)
            assert row.n_opt_lo <= row.n_opt <= row.n_opt_hi
            assert row.n_opt == pytest.approx(truth, rel=0.3)
            assert row.d_opt == pytest.approx(row.budget / (6 * row.n_opt), rel=1e-9)
            assert row.ci_unit == "seeds and parcels" if target == "score" else "seeds"
        law = table[(table["target"] == target) & (table["method"] == "isoflop_power_law")]
        law = law.iloc[0]
        assert law["status"] == "ok" and law["n_budgets"] == len(BUDGETS)
        assert law["exponent_n_lo"] <= EXPONENT <= law["exponent_n_hi"]
        assert law["exponent_n"] == pytest.approx(EXPONENT, abs=0.05)
        # D* = C / (6 N*): its exponent is 1 - a
        assert law["exponent_d"] == pytest.approx(1 - law["exponent_n"], abs=1e-9)
        assert law["exponent_n_hi"] - law["exponent_n_lo"] < 0.2


def test_optimum_outside_the_sampled_range_is_at_the_edge(rng):
    runs, parcels = _isoflop_study(rng, n_seeds=2, seed_sd=0.001, parcel_sd=0.01,
                                   width=0.3)
    # keep only the three models above N* at the largest budget: the optimum is below them
    big = (runs["budget"] == BUDGETS[-1]) & (runs["n_params"] < _n_star(BUDGETS[-1]))
    drop = runs.loc[big, "n_params"].unique()
    runs = runs[~(big)]
    parcels = parcels[~((parcels["budget"] == BUDGETS[-1]) & parcels["n_params"].isin(drop))]
    table = allocation_table(runs, parcels, n_boot=50, n_refit=0, parametric=False)
    for target in ("score", "val_loss"):
        row = table[(table["target"] == target) & (table["budget"] == BUDGETS[-1])].iloc[0]
        assert row["status"].startswith("at the edge") and np.isnan(row["n_opt"])
        assert "lower" in row["status"] and row["n_models"] == 3


def test_power_law_needs_three_interior_budgets(rng):
    runs, parcels = _isoflop_study(rng, n_seeds=2)
    keep = runs["budget"] <= BUDGETS[1]
    runs, parcels = runs[keep], parcels[parcels["budget"] <= BUDGETS[1]]
    table = allocation_table(runs, parcels, n_boot=20, n_refit=0, parametric=False)
    law = table[(table["method"] == "isoflop_power_law") & (table["target"] == "score")].iloc[0]
    assert law["status"].startswith("not fitted: 2 budget(s)") and np.isnan(law["exponent_n"])


def test_single_seed_intervals_are_labelled_parcels_only(rng):
    runs, parcels = _isoflop_study(rng, n_seeds=1)
    table = allocation_table(runs, parcels, n_boot=50, n_refit=0, parametric=False)
    score = table[(table["target"] == "score") & (table["method"] == "isoflop_parabola")]
    assert score["ci_unit"].str.startswith("parcels only (1 seed)").all()
    loss = table[(table["target"] == "val_loss") & (table["method"] == "isoflop_parabola")]
    assert (loss["ci_unit"] == "none (1 seed)").all()


def test_parametric_fit_recovers_planted_parameters():
    n, d = np.meshgrid(np.geomspace(1e6, 1e9, 5), np.geomspace(1e8, 1e11, 5))
    n, d = n.ravel(), d.ravel()
    e, a, alpha, b, beta = 1.7, 400.0, 0.34, 410.0, 0.28
    y = e + a / n**alpha + b / d**beta
    fit = fit_parametric(n, d, y)
    assert fit["status"] == "ok" and fit["at_bound"] == ""
    assert fit["E"] == pytest.approx(e, rel=1e-3)
    assert fit["alpha"] == pytest.approx(alpha, rel=1e-2)
    assert fit["beta"] == pytest.approx(beta, rel=1e-2)
    assert fit["A"] == pytest.approx(a, rel=0.1) and fit["B"] == pytest.approx(b, rel=0.1)
    assert fit["a"] == pytest.approx(beta / (alpha + beta), rel=1e-2)
    assert fit["a"] + fit["b"] == pytest.approx(1.0)


def test_parametric_fit_refuses_a_design_that_does_not_vary_n_and_d_jointly():
    n = np.geomspace(1e6, 1e9, 8)
    fit = fit_parametric(n, 1e18 / (6 * n), np.linspace(3, 2, 8))  # one budget: D = C/6N
    assert fit["status"].startswith("not identifiable") and np.isnan(fit["alpha"])
    fit = fit_parametric(n, np.full(8, 1e9), np.linspace(3, 2, 8))
    assert "both must vary" in fit["status"]


def test_non_isoflop_design_gets_a_row_that_says_why(rng):
    runs, parcels = _isoflop_study(rng, n_seeds=2)
    runs = runs.assign(budget=0.0, family="videogpt", precision="fp32")
    parcels = parcels.assign(budget=0.0, family="videogpt", precision="fp32")
    table = allocation_table(runs, parcels, n_boot=20, n_refit=0, parametric=False)
    iso = table[table["method"] == "isoflop_parabola"]
    assert len(iso) == 2 and iso["status"].str.contains("not an IsoFLOP design").all()


def test_parametric_rows_of_both_targets_with_intervals(rng):
    runs, parcels = _isoflop_study(rng, n_seeds=2)
    table = allocation_table(runs, parcels, n_boot=20, n_refit=10)
    par = table[table["method"] == "parametric"].set_index("target")
    assert set(par.index) == {"score", "val_loss"}
    assert par.loc["score", "transform"] == "log(1 - r) (Huber)"
    for target in ("score", "val_loss"):
        row = par.loc[target]
        if row["status"] == "ok":
            assert row["exponent_n"] + row["exponent_d"] == pytest.approx(1.0)
            assert row["exponent_n_lo"] <= row["exponent_n_hi"]
