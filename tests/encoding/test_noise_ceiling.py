"""Noise ceilings, normalised scores, significance and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from cortexscale.encoding.noise_ceiling import (
    explainable_variance,
    ncsnr,
    noise_ceiling_nsd,
    normalised_score,
)
from cortexscale.encoding.significance import block_permutation_test, bootstrap_ci, fdr_bh


def _repeats(rng, n_rep, n, v, signal_sd, noise_sd):
    s = rng.standard_normal((n, v)) * signal_sd
    return s[None] + noise_sd * rng.standard_normal((n_rep, n, v))


@pytest.mark.parametrize("n_rep", [2, 4])
def test_explainable_variance_unbiased(rng, n_rep):
    Y = _repeats(rng, n_rep, 100, 4000, signal_sd=0.6, noise_sd=1.0)
    truth = 0.36 / 1.36
    ev = explainable_variance(Y)
    assert abs(ev.mean() - truth) < 0.01
    raw = explainable_variance(Y, bias_correction=False)
    assert raw.mean() - truth > 0.1 / n_rep  # the uncorrected estimate is biased upwards


@pytest.mark.parametrize("n_rep", [2, 3])
def test_ncsnr_noise_ceiling_unbiased(rng, n_rep):
    Y = _repeats(rng, n_rep, 200, 4000, signal_sd=0.5, noise_sd=1.0)
    snr2 = ncsnr(Y) ** 2
    assert abs(snr2.mean() - 0.25) < 0.01
    nc = noise_ceiling_nsd(np.sqrt(0.25), n_rep)
    assert nc == pytest.approx(100 * 0.25 / (0.25 + 1 / n_rep))
    # the ceiling is the variance fraction of the trial average that the signal explains
    assert abs(np.median(noise_ceiling_nsd(ncsnr(Y), n_rep)) - nc) < 3


def test_normalised_score_algonauts():
    r = np.array([-0.2, 0.3, 0.5, 0.9, np.nan, 0.4])
    nc = np.array([50.0, 36.0, 20.0, 81.0, 50.0, 0.0])
    score = normalised_score(r, nc)
    np.testing.assert_allclose(score[:4], [0.0, 25.0, 100.0, 100.0])
    assert np.isnan(score[4]) and np.isnan(score[5])
    with pytest.raises(ValueError, match="same shape"):
        normalised_score(r, nc[:2])


def test_repeats_validation():
    with pytest.raises(ValueError, match="at least 2 repeats"):
        explainable_variance(np.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match="n_trials must be a positive number"):
        noise_ceiling_nsd(np.ones(3), 0)


def test_fdr_matches_scipy(rng):
    from scipy.stats import false_discovery_control

    p = rng.uniform(size=500) ** 3
    p[::7] = np.nan
    ok = ~np.isnan(p)
    ref = false_discovery_control(p[ok]) <= 0.05
    np.testing.assert_array_equal(fdr_bh(p, 0.05)[ok], ref)
    assert not fdr_bh(p)[~ok].any()


def test_block_permutation_finds_true_effects(rng):
    n, v = 240, 60
    y = rng.standard_normal((n, v))
    pred = rng.standard_normal((n, v))
    pred[:, :20] += 2 * y[:, :20]  # 20 predicted targets
    y[:, 59] = 1.0  # constant: excluded
    res = block_permutation_test(y, pred, groups=np.arange(n) // 60, block_size=10,
                                 n_perm=200, seed=1)
    assert res.significant[:20].all()
    assert res.significant[20:].sum() <= 2
    assert res.n_significant == res.significant.sum()
    assert np.isnan(res.p_values[59]) and not res.significant[59]
    again = block_permutation_test(y, pred, groups=np.arange(n) // 60, block_size=10,
                                   n_perm=200, seed=1)
    np.testing.assert_array_equal(res.p_values, again.p_values)


def test_permutation_needs_two_blocks(rng):
    y = rng.standard_normal((30, 2))
    with pytest.raises(ValueError, match="at least 2 blocks"):
        block_permutation_test(y, y, groups=np.zeros(30), n_perm=5)


def test_bootstrap_ci_covers_r(rng):
    n, v = 300, 5
    y = rng.standard_normal((n, v))
    pred = y + 2 * rng.standard_normal((n, v))
    low, high, mean_ci = bootstrap_ci(y, pred, block_size=10, n_boot=300, seed=0)
    r = np.array([np.corrcoef(y[:, j], pred[:, j])[0, 1] for j in range(v)])
    assert ((low < r) & (r < high)).all()
    assert mean_ci[0] < r.mean() < mean_ci[1]
