"""The maths of the pretrained-model sweep (Matsuyama et al. 2023): image splits, sample-size
curves of the per-target choice among candidate feature sets, summaries, scaling fits.

Arrays and tables only. A candidate is one feature set ``(x_train, x_test)`` (e.g. one
layer x pool kernel of a model); :func:`~cortexscale.encoding.selection.select_feature_sets`
picks one per target by inner cross-validation on the training data. Image datasets are
split by :func:`image_split` and z-scored with the training statistics
(:func:`zscore_with`); :func:`sample_size_curve` refits the choice on nested prefixes of the
training set. :func:`scaling_fits` fits ``r = a + b log10(x)`` along the training-set size
and along the parameter count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cortexscale.encoding.metrics import pearson_r
from cortexscale.encoding.noise_ceiling import normalised_score
from cortexscale.encoding.selection import select_feature_sets
from cortexscale.errors import ConfigError
from cortexscale.labels import POOLED

__all__ = [
    "FIT_COLUMNS", "MIN_X", "image_split", "loglinear", "mean_prediction", "pearson_or_nan",
    "sample_size_curve", "scaling_fits", "score_stats", "zscore_with",
]

FIT_COLUMNS = ("axis", "series", "subject", "roi", "n_points", "a", "b", "r2",
               "gain_per_decade")
MIN_X = 3  # distinct x values a law is fitted on (two points always fit a line)


# --------------------------------------------------------------------------- designs
def image_split(n: int, n_test: int, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Test indices and the training pool (in its seeded order) of ``n`` images.

    ``n_test`` images form the test set; the training pool is the rest, cut to its first
    ``n_train`` when ``n_train > 0``.

    Returns
    -------
    test : ndarray of int64, shape (n_test,)
        Sorted.
    pool : ndarray of int64, shape (n - n_test,) or (n_train,)
        In the seeded order.

    Raises
    ------
    ConfigError
        When the sizes do not fit the ``n`` images.
    """
    if not 0 < n_test < n:
        raise ConfigError(f"image split: n_test {n_test} must lie in [1, {n - 1}] for {n} "
                          "images")
    order = np.random.default_rng([seed, 7]).permutation(n)
    test, pool = np.sort(order[:n_test]), order[n_test:]
    if n_train:
        if n_train > pool.size:
            raise ConfigError(f"image split: n_train {n_train} + n_test {n_test} exceed the "
                              f"{n} images")
        pool = pool[:n_train]
    return test, pool


def zscore_with(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Z-score ``train`` (n, p) and each of ``others`` (m, p) with the statistics of
    ``train`` (a constant column is centred only)."""
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(a - mu) / sd for a in (train, *others)]


# --------------------------------------------------------------------------- curves
def sample_size_curve(
    sets: dict[str, tuple[np.ndarray, np.ndarray]], y_train: np.ndarray, y_test: np.ndarray,
    alphas: np.ndarray, *, n_folds: int, n_points: int, smallest: int, largest: int,
    **ridge,
) -> list[tuple[int, np.ndarray]]:
    """The selection refit on nested log-spaced prefixes of the training set, scored on the
    fixed test set. Inner folds are contiguous blocks.

    Parameters
    ----------
    sets : dict of str to (ndarray (n, p_k), ndarray (n_test, p_k))
        The candidate feature sets.
    y_train : ndarray, shape (n, v)
    y_test : ndarray, shape (n_test, v)
    alphas : ndarray, shape (k,)
    n_folds : int
        Inner cross-validation folds.
    n_points : int
        Sizes on the curve (0: no curve).
    smallest, largest : int
        The smallest prefix (raised to ``2 * n_folds``) and the largest (0: all ``n``).
    **ridge
        Passed to :func:`~cortexscale.encoding.selection.select_feature_sets`.

    Returns
    -------
    curve : list of (int, ndarray (v,))
        ``(n_train, r)`` per size.
    """
    if not n_points:
        return []
    n = y_train.shape[0]
    total = n if not largest else min(largest, n)
    lo = min(max(smallest, 2 * n_folds), total)
    sizes = np.unique(np.round(np.geomspace(lo, total, n_points)).astype(int))
    out = []
    for size in sizes:
        g = np.arange(size) * n_folds // size
        sub = {k: (x[:size], xt) for k, (x, xt) in sets.items()}
        res = select_feature_sets(sub, y_train[:size], g, y_test, alphas, n_folds=n_folds,
                                  **ridge)
        out.append((int(size), res.r_test))
    return out


# --------------------------------------------------------------------------- scores
def pearson_or_nan(y: np.ndarray, pred: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Pearson r per target (v,) of ``pred`` against ``y`` (n, v); NaN where no candidate
    was chosen (``choice < 0``) or the prediction is constant."""
    r = pearson_r(y, pred)
    r[(choice < 0) | (np.std(pred, axis=0) == 0)] = np.nan
    return r


def mean_prediction(preds: list[np.ndarray], y_test: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """An ensemble: the mean of several predictions (each (n, v)) and its Pearson r (v,)
    against ``y_test`` (n, v), NaN where the mean prediction is constant."""
    y_pred = np.mean(preds, axis=0)
    r = pearson_r(y_test, y_pred)
    r[np.std(y_pred, axis=0) == 0] = np.nan
    return y_pred, r


def score_stats(r: np.ndarray, nc: np.ndarray | None
                ) -> tuple[np.ndarray, dict[str, float | None]]:
    """Per-target challenge score (v,) and its summary: ``mean_noise_ceiling`` (percent),
    ``mean_normalised``, ``median_normalised`` (None without a noise ceiling)."""
    if nc is None:
        return np.full(r.shape, np.nan), {"mean_noise_ceiling": None, "mean_normalised": None,
                                          "median_normalised": None}
    score = normalised_score(r, nc)
    ok, ok_nc = score[~np.isnan(score)], nc[np.isfinite(nc)]
    return score, {"mean_noise_ceiling": float(ok_nc.mean()) if ok_nc.size else None,
                   "mean_normalised": float(ok.mean()) if ok.size else None,
                   "median_normalised": float(np.median(ok)) if ok.size else None}


# --------------------------------------------------------------------------- fits
def loglinear(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """``y = a + b log10 x``; NaN coefficients on fewer than ``MIN_X`` distinct x."""
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = np.log10(x[ok]), y[ok]
    if np.unique(x).size < MIN_X:
        return {"n_points": int(x.size), "a": np.nan, "b": np.nan, "r2": np.nan,
                "gain_per_decade": np.nan}
    b, a = np.polyfit(x, y, 1)
    pred = a + b * x
    ss = ((y - y.mean()) ** 2).sum()
    return {"n_points": int(x.size), "a": float(a), "b": float(b),
            "r2": float(1 - ((y - pred) ** 2).sum() / ss) if ss > 0 else np.nan,
            "gain_per_decade": float(b)}


def scaling_fits(table: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """``r = a + b log10(x)`` per ROI (and pooled over ROIs: ``(pooled)``), pooled over
    subjects: along the training-set size per model (``axis = n_train``) and along the
    parameter count per family with at least two models (``axis = n_params``).

    Parameters
    ----------
    table : DataFrame
        The model table (``model, kind, family, n_params, roi, mean_r``, ...).
    curves : DataFrame
        The sample-size table (``model, roi, n_train, mean_r``, ...).

    Returns
    -------
    fits : DataFrame
        Columns ``FIT_COLUMNS``.
    """
    rows = []
    for roi in [*sorted(curves["roi"].unique()), POOLED] if not curves.empty else []:
        sub = curves if roi == POOLED else curves[curves["roi"] == roi]
        for model, g in sub.groupby("model"):
            mean = g.groupby("n_train")["mean_r"].mean()
            rows.append({"axis": "n_train", "series": model, "subject": POOLED, "roi": roi,
                         **loglinear(mean.index.to_numpy(float), mean.to_numpy(float))})
    single = table[table["kind"] == "model"].dropna(subset=["n_params"])
    for roi in [*sorted(single["roi"].unique()), POOLED] if not single.empty else []:
        sub = single if roi == POOLED else single[single["roi"] == roi]
        for family, g in sub.groupby("family"):
            mean = g.groupby("n_params")["mean_r"].mean()
            if mean.size < 2:
                continue  # one model: no axis (with 2, a row that says too few x values)
            rows.append({"axis": "n_params", "series": family, "subject": POOLED, "roi": roi,
                         **loglinear(mean.index.to_numpy(float), mean.to_numpy(float))})
    return pd.DataFrame(rows, columns=list(FIT_COLUMNS))
