"""Per-target selection among several feature sets (e.g. layers x pooling kernels).

Every candidate set is fit with :func:`~cortexscale.encoding.ridge.ridge_cv` on the
training samples; each target takes the set with the best inner cross-validation score
(at its best penalty), keeps that set's refit model, and is scored once on the test set.
The test set plays no part in the choice.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cortexscale.encoding.metrics import pearson_r
from cortexscale.encoding.ridge import ridge_cv, ridge_predict

__all__ = ["SelectionResult", "select_feature_sets"]


@dataclass(frozen=True)
class SelectionResult:
    """Result of :func:`select_feature_sets`.

    Attributes
    ----------
    names : list of str, (m,)
        Candidate feature sets, in the order given.
    choice : ndarray of int64, shape (v,)
        Index into ``names`` per target (-1 for excluded targets).
    inner_scores : ndarray of float64, shape (m, v)
        Best mean validation score of each set per target.
    best_alpha : ndarray of float64, shape (v,)
        Penalty of the chosen set.
    r_test : ndarray of float64, shape (v,)
        Pearson r on the test set of the chosen model (NaN for excluded targets).
    y_pred : ndarray of float64, shape (n_test, v)
        Test predictions of the chosen model.
    """

    names: list[str]
    choice: np.ndarray
    inner_scores: np.ndarray
    best_alpha: np.ndarray
    r_test: np.ndarray
    y_pred: np.ndarray


def select_feature_sets(
    feature_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
    Y_train: np.ndarray,
    groups: np.ndarray,
    Y_test: np.ndarray,
    alphas: np.ndarray,
    **ridge_kwargs: Any,
) -> SelectionResult:
    """Choose the feature set per target by inner CV, refit, and score on the test set.

    Parameters
    ----------
    feature_sets : mapping of str to (X_train, X_test)
        ``X_train`` (n_train, p_i) and ``X_test`` (n_test, p_i) per candidate.
    Y_train : ndarray, shape (n_train, v)
    groups : array-like, shape (n_train,)
        Run per training sample (inner folds by run).
    Y_test : ndarray, shape (n_test, v)
    alphas : array-like, shape (k,)
    **ridge_kwargs
        Passed to :func:`~cortexscale.encoding.ridge.ridge_cv` (``n_folds``, ``score``,
        ``dtype``, ``backend`` ...).

    Returns
    -------
    result : SelectionResult
    """
    if not feature_sets:
        raise ValueError("feature_sets must hold at least one (X_train, X_test) pair, found none")
    Y_test = np.asarray(Y_test)
    Y_train = np.asarray(Y_train)
    if Y_test.ndim != 2 or Y_test.shape[1] != Y_train.shape[1]:
        raise ValueError(
            f"Y_test must be (n_test, {Y_train.shape[1]}) like Y_train, found {Y_test.shape}"
        )
    names = list(feature_sets)
    v = Y_train.shape[1]
    inner = np.full((len(names), v), np.nan)
    best_score = np.full(v, -np.inf)
    choice = np.full(v, -1, dtype=np.int64)
    best_alpha = np.full(v, np.nan)
    y_pred = np.zeros(Y_test.shape)
    for i, name in enumerate(names):
        X_train, X_test = feature_sets[name]
        X_test = np.asarray(X_test)
        if X_test.shape[0] != Y_test.shape[0]:
            raise ValueError(
                f"feature set {name!r}: X_test has {X_test.shape[0]} samples, Y_test "
                f"{Y_test.shape[0]}"
            )
        fit = ridge_cv(X_train, Y_train, groups, alphas, **ridge_kwargs)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            inner[i] = np.nanmax(fit.cv_scores, axis=0)
        better = fit.valid & (np.nan_to_num(inner[i], nan=-np.inf) > best_score)
        if better.any():
            best_score[better] = inner[i, better]
            choice[better] = i
            best_alpha[better] = fit.best_alpha[better]
            y_pred[:, better] = ridge_predict(X_test, fit.coef[:, better])
    r = pearson_r(Y_test, y_pred)
    r[choice < 0] = np.nan
    return SelectionResult(names, choice, inner, best_alpha, r, y_pred)
