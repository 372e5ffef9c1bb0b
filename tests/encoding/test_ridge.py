"""Tests of the ridge engine against reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from ridgeutils import BACKENDS, METHODS, brute_force
from ridgeutils import problem as _problem

from cortexscale.encoding.backends import NumpyBackend
from cortexscale.encoding.ridge import group_kfold, ridge_cv, ridge_predict

ALPHAS = np.logspace(-2, 4, 13)


@pytest.mark.parametrize("bk", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("score", ["pearson", "r2"])
@pytest.mark.parametrize(
    "shape", [(120, 15, 40), (60, 50, 40), (60, 150, 40)], ids=["p<n", "n_train<p<n", "p>n"]
)
def test_alphas_match_brute_force(rng, shape, score, method, bk):
    n, p, v = shape
    X, Y, groups = _problem(rng, n, p, v, n_groups=6)
    ref_scores, ref_alpha = brute_force(X, Y, groups, ALPHAS, 3, score)
    res = ridge_cv(X, Y, groups, ALPHAS, n_folds=3, score=score, dtype="float64", chunk_size=7,
                   method=method, **bk)
    np.testing.assert_allclose(res.cv_scores, ref_scores, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(res.best_alpha, ref_alpha)
    assert res.valid.all()


@pytest.mark.parametrize("bk", BACKENDS)
@pytest.mark.parametrize("score", ["pearson", "r2"])
def test_filter_projection_and_spectral_forms_agree(rng, monkeypatch, score, bk):
    """Primal scoring with per-penalty filters on the features (the default direct form
    when they fit in memory) equals projecting the targets per fold and the spectral sums;
    with numpy, one worker equals two."""
    import cortexscale.encoding.ridge as ridge

    X, Y, groups = _problem(rng, 150, 20, 60, n_groups=5)
    Y[:, 3] = 1.0  # an excluded target inside a chunk
    args = (X, Y, groups, ALPHAS)
    kw = dict(n_folds=5, score=score, dtype="float64", chunk_size=25, **bk)
    filters = ridge_cv(*args, method="direct", **kw)
    spectral = ridge_cv(*args, method="spectral", **kw)
    monkeypatch.setattr(ridge, "_MIN_FILTER_BUDGET", 0)
    projected = ridge_cv(*args, method="direct", **kw)
    monkeypatch.setattr(NumpyBackend, "workers", lambda self: 1)
    serial = ridge_cv(*args, **kw)
    for other in (projected, serial, spectral):
        np.testing.assert_allclose(other.cv_scores, filters.cv_scores, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(other.best_alpha, filters.best_alpha)
        np.testing.assert_allclose(other.coef, filters.coef, rtol=1e-9, atol=1e-12)
    ref_scores, ref_alpha = brute_force(X, np.delete(Y, 3, 1), groups, ALPHAS, 5, score)
    np.testing.assert_allclose(np.delete(filters.cv_scores, 3, 1), ref_scores, rtol=1e-8,
                               atol=1e-10)
    np.testing.assert_array_equal(np.delete(filters.best_alpha, 3), ref_alpha)


@pytest.mark.parametrize("bk", BACKENDS)
@pytest.mark.parametrize("shape", [(100, 10, 5), (40, 90, 5)], ids=["p<n", "p>n"])
def test_refit_single_alpha_closed_form(rng, shape, bk):
    n, p, v = shape
    X, Y, groups = _problem(rng, n, p, v, n_groups=4)
    alpha = 3.0
    res = ridge_cv(X, Y, groups, [alpha], n_folds=2, dtype="float64", **bk)
    ref = np.linalg.solve(X.T @ X + alpha * np.eye(p), X.T @ Y)
    np.testing.assert_allclose(res.coef, ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ridge_predict(X, res.coef), X @ ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("bk", BACKENDS)
@pytest.mark.parametrize("shape", [(150, 20, 30), (50, 80, 30)], ids=["p<n", "p>n"])
def test_refit_matches_sklearn_per_target_alpha(rng, shape, bk):
    from sklearn.linear_model import Ridge

    n, p, v = shape
    X, Y, groups = _problem(rng, n, p, v, n_groups=5)
    res = ridge_cv(X, Y, groups, ALPHAS, n_folds=5, dtype="float64", **bk)
    assert np.unique(res.best_alpha).size > 1  # several penalties share one refit
    ref = Ridge(alpha=res.best_alpha, fit_intercept=False, solver="svd").fit(X, Y).coef_.T
    np.testing.assert_allclose(res.coef, ref, rtol=1e-6, atol=1e-9)


def test_sklearn_ridgecv_single_alpha(rng):
    from sklearn.linear_model import RidgeCV

    X, Y, groups = _problem(rng, 80, 12, 6, n_groups=4)
    res = ridge_cv(X, Y, groups, [10.0], n_folds=4, dtype="float64")
    ref = RidgeCV(alphas=[10.0], fit_intercept=False, alpha_per_target=True).fit(X, Y)
    np.testing.assert_allclose(res.coef, ref.coef_.T, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("bk", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_float32_close_to_float64(rng, method, bk):
    X, Y, groups = _problem(rng, 200, 30, 50, n_groups=5)
    r64 = ridge_cv(X, Y, groups, ALPHAS, n_folds=5, dtype="float64", method=method, **bk)
    r32 = ridge_cv(X, Y, groups, ALPHAS, n_folds=5, dtype="float32", chunk_size=16,
                   method=method, **bk)
    assert r32.coef.dtype == np.float32
    np.testing.assert_allclose(r32.cv_scores, r64.cv_scores, atol=1e-4)
    assert np.mean(r32.best_alpha == r64.best_alpha) > 0.9


def test_group_folds_never_split_a_group(rng):
    groups = rng.integers(0, 7, size=300)
    folds = group_kfold(groups, 3)
    assert len(folds) == 3
    seen = np.concatenate([val for _, val in folds])
    np.testing.assert_array_equal(np.sort(seen), np.arange(300))
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])
        assert np.intersect1d(train, val).size == 0
    # deterministic
    again = group_kfold(groups, 3)
    for (t1, v1), (t2, v2) in zip(folds, again, strict=True):
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(v1, v2)


def test_group_kfold_rejects_too_many_folds():
    with pytest.raises(ValueError, match=r"n_folds must be an integer in \[2, n_groups = 3\]"):
        group_kfold(np.repeat([0, 1, 2], 4), 4)


@pytest.mark.parametrize("bk", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_constant_and_nan_targets_excluded(rng, method, bk):
    X, Y, groups = _problem(rng, 90, 8, 6, n_groups=3)
    Y[:, 1] = 2.5
    Y[5, 4] = np.nan
    kw = dict(n_folds=3, dtype="float64", method=method, **bk)
    res = ridge_cv(X, Y, groups, ALPHAS, chunk_size=4, **kw)
    np.testing.assert_array_equal(res.excluded, [1, 4])
    assert not res.valid[[1, 4]].any()
    assert np.isnan(res.best_alpha[[1, 4]]).all()
    assert np.isnan(res.cv_scores[:, [1, 4]]).all()
    assert (res.coef[:, [1, 4]] == 0).all()
    # the other targets are fit exactly as without the bad ones
    keep = [0, 2, 3, 5]
    ref = ridge_cv(X, Y[:, keep], groups, ALPHAS, **kw)
    np.testing.assert_allclose(res.coef[:, keep], ref.coef)
    np.testing.assert_array_equal(res.best_alpha[keep], ref.best_alpha)


def test_input_validation(rng):
    X, Y, groups = _problem(rng, 30, 4, 2, n_groups=3)
    with pytest.raises(ValueError, match="same number of samples"):
        ridge_cv(X, Y[:-1], groups, ALPHAS, n_folds=3)
    with pytest.raises(ValueError, match="score must be one of"):
        ridge_cv(X, Y, groups, ALPHAS, n_folds=3, score="mse")
    with pytest.raises(ValueError, match="positive finite"):
        ridge_cv(X, Y, groups, [0.0, 1.0], n_folds=3)
    with pytest.raises(ValueError, match=r"method must be one of \['auto', 'direct', 'spectral'\]"):
        ridge_cv(X, Y, groups, ALPHAS, n_folds=3, method="fast")
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="X holds NaN"):
        ridge_cv(X, Y, groups, ALPHAS, n_folds=3)
