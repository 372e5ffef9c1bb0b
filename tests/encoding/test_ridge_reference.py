"""The ridge engine against himalaya, the torch backend against numpy, folds with gaps,
and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from ridgeutils import BACKENDS, METHODS, problem

from cortexscale.encoding.metrics import pearson_r, r2_score
from cortexscale.encoding.ridge import group_kfold, ridge_cv, ridge_predict

ALPHAS = np.logspace(-2, 5, 11)


def _problem(rng, n, p, v, n_groups):
    return problem(rng, n, p, v, n_groups, centre=True)


@pytest.mark.parametrize("bk", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("score", ["r2", "pearson"])
@pytest.mark.parametrize("shape", [(200, 30, 200), (80, 120, 100)], ids=["p<n", "p>n"])
def test_same_alphas_and_predictions_as_himalaya(rng, shape, score, method, bk):
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import correlation_score
    from himalaya.scoring import r2_score as h_r2

    set_backend("numpy")
    n, p, v = shape
    X, Y, groups = _problem(rng, n, p, v, n_groups=6)
    X_test = rng.standard_normal((50, p))
    folds = group_kfold(groups, 5)
    ref = RidgeCV(alphas=ALPHAS, fit_intercept=False, cv=folds,
                  solver_params=dict(score_func=h_r2 if score == "r2" else correlation_score,
                                     warn=False))
    ref.fit(X, Y)
    res = ridge_cv(X, Y, groups, ALPHAS, n_folds=5, score=score, dtype="float64",
                   method=method, **bk)
    assert np.mean(np.isclose(res.best_alpha, ref.best_alphas_, rtol=1e-9)) >= 0.999
    np.testing.assert_allclose(ridge_predict(X_test, res.coef), ref.predict(X_test),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("bk", BACKENDS[1:])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(150, 20, 30), (60, 90, 30)], ids=["p<n", "p>n"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_backend_equals_numpy(rng, shape, dtype, method, bk):
    X, Y, groups = _problem(rng, *shape, n_groups=5)
    Y[:, 3] = 1.0  # excluded the same way
    kw = dict(n_folds=5, dtype=dtype, chunk_size=7, method=method)
    ref = ridge_cv(X, Y, groups, ALPHAS, **kw)
    got = ridge_cv(X, Y, groups, ALPHAS, **kw, **bk)
    tol = 1e-10 if dtype == "float64" else 2e-4
    np.testing.assert_array_equal(got.valid, ref.valid)
    np.testing.assert_allclose(got.cv_scores, ref.cv_scores, atol=tol, equal_nan=True)
    assert np.mean(got.best_alpha[ref.valid] == ref.best_alpha[ref.valid]) >= 0.95
    same = got.best_alpha == ref.best_alpha
    np.testing.assert_allclose(got.coef[:, same], ref.coef[:, same], atol=tol * 10)
    assert got.coef.dtype == np.dtype(dtype)


def test_torch_tensors_in(rng):
    torch = pytest.importorskip("torch")
    X, Y, groups = _problem(rng, 100, 10, 8, n_groups=4)
    ref = ridge_cv(X, Y, groups, ALPHAS, n_folds=4, dtype="float64")
    got = ridge_cv(torch.from_numpy(X), torch.from_numpy(Y), groups, ALPHAS, n_folds=4,
                   dtype="float64", backend="auto")
    np.testing.assert_allclose(got.coef, ref.coef, atol=1e-10)


@pytest.mark.parametrize("bk", BACKENDS)
def test_gap_drops_training_samples_at_fold_edges(rng, bk):
    X, Y, groups = _problem(rng, 120, 10, 6, n_groups=6)
    gap = 4
    folds = group_kfold(groups, 3, gap=gap)
    plain = group_kfold(groups, 3)
    for (train, val), (train0, _) in zip(folds, plain, strict=True):
        assert np.intersect1d(train, val).size == 0
        dist = np.abs(train[:, None] - val[None, :]).min(1)
        assert dist.min() > gap
        assert train0.size - train.size == gap * (1 if val[0] == 0 or val[-1] == 119 else 2)
    # brute force on the gapped folds
    res = ridge_cv(X, Y, groups, ALPHAS, n_folds=3, gap=gap, score="r2", dtype="float64", **bk)
    scores = np.zeros((ALPHAS.size, Y.shape[1]))
    for train, val in folds:
        for i, a in enumerate(ALPHAS):
            W = np.linalg.solve(X[train].T @ X[train] + a * np.eye(10), X[train].T @ Y[train])
            scores[i] += r2_score(Y[val], X[val] @ W) / 3
    np.testing.assert_allclose(res.cv_scores, scores, rtol=1e-8, atol=1e-10)


def test_bad_input(rng):
    X, Y, groups = _problem(rng, 60, 5, 3, n_groups=3)
    with pytest.raises(ValueError, match="same number of samples, found 60 and 59"):
        ridge_cv(X, Y[:-1], groups, ALPHAS, n_folds=3)
    with pytest.raises(ValueError, match=r"n_folds must be an integer in \[2, n_groups = 3\]"):
        ridge_cv(X, Y, groups, ALPHAS, n_folds=5)  # fewer runs than folds
    with pytest.raises(ValueError, match="1 distinct run"):
        ridge_cv(X, Y, np.zeros(60), ALPHAS, n_folds=2)  # a single run
    with pytest.raises(ValueError, match=r"backend must be one of \['numpy', 'torch', 'auto'\]"):
        ridge_cv(X, Y, groups, ALPHAS, n_folds=3, backend="jax")
    with pytest.raises(ValueError, match="gap must be a non-negative integer"):
        ridge_cv(X, Y, groups, ALPHAS, n_folds=3, gap=-1)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X holds NaN"):
        ridge_cv(bad, Y, groups, ALPHAS, n_folds=3)


@pytest.mark.parametrize("bk", BACKENDS)
def test_single_run_cut_into_blocks(rng, bk):
    """A single run is cross-validated over blocks of TRs passed as groups."""
    X, Y, _ = _problem(rng, 90, 5, 3, n_groups=1)
    blocks = np.arange(90) // 30
    res = ridge_cv(X, Y, blocks, ALPHAS, n_folds=3, gap=2, **bk)
    assert res.valid.all() and np.isfinite(res.best_alpha).all()


@pytest.mark.parametrize("bk", BACKENDS)
def test_constant_voxels_counted(rng, bk):
    X, Y, groups = _problem(rng, 60, 5, 6, n_groups=3)
    Y[:, [0, 4]] = 3.0
    res = ridge_cv(X, Y, groups, ALPHAS, n_folds=3, **bk)
    assert res.excluded.tolist() == [0, 4]
    r = pearson_r(Y, ridge_predict(X, res.coef))
    assert np.isnan(r[[0, 4]]).all() and np.isfinite(np.delete(r, [0, 4])).all()
