"""HRF convolution, PCA, per-target feature-set selection and sample-size scaling."""

from __future__ import annotations

import numpy as np
import pytest

from cortexscale.encoding.design import fit_pca, glover_hrf, hrf_convolve
from cortexscale.encoding.sample_size import nested_subsets, sample_size_curve
from cortexscale.encoding.selection import select_feature_sets

ALPHAS = np.logspace(-2, 4, 7)


def test_hrf_convolution_per_run():
    pytest.importorskip("nilearn")
    h = glover_hrf(2.0)
    X = np.zeros((40, 2))
    X[0, 0] = 1.0
    X[20, 1] = 1.0
    groups = np.repeat([0, 1], 20)
    out = hrf_convolve(X, 2.0, groups)
    m = min(h.size, 20)
    np.testing.assert_allclose(out[:m, 0], h[:m], atol=1e-12)  # impulse response
    assert (np.abs(out[20:, 0]) < 1e-12).all()  # nothing leaks into the next run
    np.testing.assert_allclose(out[20:20 + m, 1], h[:m], atol=1e-12)
    with pytest.raises(ValueError, match="tr must be a positive number"):
        hrf_convolve(X, 0.0)


def test_pca_matches_sklearn(rng):
    from sklearn.decomposition import PCA as SkPCA

    X = rng.standard_normal((80, 12)) @ rng.standard_normal((12, 12))
    pca = fit_pca(X, 5)
    ref = SkPCA(5).fit(X)
    np.testing.assert_allclose(np.abs(pca.transform(X)), np.abs(ref.transform(X)), atol=1e-8)
    np.testing.assert_allclose(pca.explained_variance_ratio, ref.explained_variance_ratio_)
    wide = fit_pca(X.T, 3)  # p > n: kernel form
    np.testing.assert_allclose(np.abs(wide.transform(X.T)),
                               np.abs(SkPCA(3).fit_transform(X.T)), atol=1e-8)
    assert fit_pca(X, 0.99).components.shape[1] <= 12
    with pytest.raises(ValueError, match="n_components must be an integer in"):
        fit_pca(X, 0)


def test_selection_picks_the_generating_set(rng):
    n, n_test, v = 150, 60, 40
    sets = {name: (rng.standard_normal((n, 8)), rng.standard_normal((n_test, 8)))
            for name in ("layer1", "layer2")}
    W = rng.standard_normal((8, v))
    Y = np.empty((n, v))
    Y_test = np.empty((n_test, v))
    Y[:, :20] = sets["layer1"][0] @ W[:, :20]
    Y_test[:, :20] = sets["layer1"][1] @ W[:, :20]
    Y[:, 20:] = sets["layer2"][0] @ W[:, 20:]
    Y_test[:, 20:] = sets["layer2"][1] @ W[:, 20:]
    Y += 0.5 * rng.standard_normal(Y.shape)
    Y_test += 0.5 * rng.standard_normal(Y_test.shape)
    groups = np.arange(n) // 30
    res = select_feature_sets(sets, Y, groups, Y_test, ALPHAS, n_folds=5, dtype="float64")
    assert res.names == ["layer1", "layer2"]
    np.testing.assert_array_equal(res.choice, [0] * 20 + [1] * 20)
    assert (res.r_test > 0.8).all()
    with pytest.raises(ValueError, match="at least one"):
        select_feature_sets({}, Y, groups, Y_test, ALPHAS)


def test_nested_subsets_are_nested_and_seeded():
    groups = np.repeat(np.arange(20), 10)
    subsets = nested_subsets(groups, n_points=4, min_size=2, seed=3)
    sizes = [s.size for s in subsets]
    assert sizes[-1] == 200 and sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    for small, big in zip(subsets, subsets[1:], strict=False):
        assert np.isin(small, big).all()
    for s in subsets:  # whole runs only
        assert all((groups[s] == g).sum() == 10 for g in np.unique(groups[s]))
    again = nested_subsets(groups, n_points=4, min_size=2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again, strict=True))
    with pytest.raises(ValueError, match=r"unit must be one of \['runs', 'samples'\]"):
        nested_subsets(groups, unit="trs")


def test_sample_size_curve_improves(rng):
    n, p, v = 400, 20, 30
    X = rng.standard_normal((n, p))
    W = rng.standard_normal((p, v))
    Y = X @ W + 3 * rng.standard_normal((n, v))
    Xt = rng.standard_normal((100, p))
    Yt = Xt @ W + 3 * rng.standard_normal((100, v))
    rows = sample_size_curve(X, Y, np.arange(n) // 20, Xt, Yt, ALPHAS, n_points=3,
                             n_folds=3, dtype="float64")
    assert [r["n_runs"] for r in rows] == [3, 8, 20]
    assert rows[-1]["mean_r"] > rows[0]["mean_r"]
