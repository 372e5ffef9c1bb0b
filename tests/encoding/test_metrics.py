"""Tests of the per-target scores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr

from cortexscale.encoding.metrics import pearson_r, r2_score


def test_pearson_matches_scipy(rng):
    a = rng.standard_normal((50, 6))
    b = a * rng.uniform(-1, 1, 6) + rng.standard_normal((50, 6))
    ref = [pearsonr(a[:, j], b[:, j])[0] for j in range(6)]
    np.testing.assert_allclose(pearson_r(a, b), ref, rtol=1e-12)


def test_pearson_float32_accumulates_in_float64(rng):
    a = (rng.standard_normal((5000, 3)) + 1e3).astype(np.float32)
    b = (a + rng.standard_normal((5000, 3)).astype(np.float32)).astype(np.float32)
    ref = [pearsonr(a[:, j].astype(float), b[:, j].astype(float))[0] for j in range(3)]
    out = pearson_r(a, b)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, rtol=1e-10)


def test_pearson_constant_and_nan_columns_are_nan(rng):
    a = rng.standard_normal((20, 3))
    b = rng.standard_normal((20, 3))
    a[:, 0] = 1.0
    b[:, 1] = -2.0
    b[3, 2] = np.nan
    assert np.isnan(pearson_r(a, b)).all()


def test_pearson_1d():
    assert pearson_r(np.arange(5.0), 2 * np.arange(5.0) + 1) == pytest.approx(1.0)


def test_r2_matches_sklearn(rng):
    from sklearn.metrics import r2_score as sk_r2

    a = rng.standard_normal((40, 4))
    b = a + 0.5 * rng.standard_normal((40, 4))
    np.testing.assert_allclose(r2_score(a, b), sk_r2(a, b, multioutput="raw_values"))
    const = np.ones((40, 1))
    assert np.isnan(r2_score(const, b[:, :1]))[0]


def test_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        pearson_r(np.zeros((3, 2)), np.zeros((3, 3)))
