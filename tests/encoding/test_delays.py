"""Tests of FIR delays and per-run z-scoring."""

from __future__ import annotations

import numpy as np
import pytest

from cortexscale.encoding.delays import make_delays, zscore_per_run


def test_delays_shift_within_one_run():
    X = np.arange(1, 11, dtype=float).reshape(5, 2)  # rows [1,2], [3,4], ...
    out = make_delays(X, [0, 1, 2])
    assert out.shape == (5, 6)
    np.testing.assert_array_equal(out[:, :2], X)
    np.testing.assert_array_equal(out[:, 2:4], np.vstack([[0, 0], X[:-1]]))
    np.testing.assert_array_equal(out[:, 4:6], np.vstack([[0, 0], [0, 0], X[:-2]]))


def test_delays_never_leak_across_runs(rng):
    X = rng.standard_normal((30, 3)) + 5.0  # no zeros in the data
    groups = np.repeat([7, 3, 9], 10)  # run labels need not be sorted
    out = make_delays(X, [1, 2, 4], groups)
    for run in (7, 3, 9):
        idx = np.flatnonzero(groups == run)
        np.testing.assert_array_equal(out[idx], make_delays(X[idx], [1, 2, 4]))
        # the first rows of each run are padding, never the previous run's last rows
        assert (out[idx[0], :] == 0).all()
        assert (out[idx[1], 3:] == 0).all()
        assert (out[idx[3], 6:] == 0).all()


def test_negative_delay_looks_ahead():
    X = np.arange(4.0)[:, None]
    np.testing.assert_array_equal(make_delays(X, [-1])[:, 0], [1, 2, 3, 0])


def test_delays_validation():
    with pytest.raises(ValueError, match="at least one delay"):
        make_delays(np.zeros((3, 2)), [])
    with pytest.raises(ValueError, match=r"groups must have shape \(3,\)"):
        make_delays(np.zeros((3, 2)), [1], groups=np.zeros(4))


def test_zscore_per_run(rng):
    X = rng.standard_normal((40, 3)) * 3 + 2
    X[:20, 1] = 4.2  # constant in the first run only
    X[:, 2] = 1.0  # constant everywhere
    groups = np.repeat([0, 1], 20)
    Z = zscore_per_run(X, groups)
    assert Z.dtype == X.dtype
    for run in (0, 1):
        z = Z[groups == run]
        np.testing.assert_allclose(z[:, 0].mean(), 0, atol=1e-12)
        np.testing.assert_allclose(z[:, 0].std(), 1)
    assert (Z[:20, 1] == 0).all()
    np.testing.assert_allclose(Z[20:, 1].std(), 1)
    assert (Z[:, 2] == 0).all()
    assert zscore_per_run(X.astype(np.float32), groups).dtype == np.float32
