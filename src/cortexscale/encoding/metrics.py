"""Per-target prediction scores, vectorised over targets with float64 accumulation."""

from __future__ import annotations

import numpy as np

__all__ = ["pearson_r", "r2_score", "r_stats"]


def _as_pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and return float64 2-D copies (n, v)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, found {y_true.shape} and {y_pred.shape}"
        )
    if y_true.ndim not in (1, 2):
        raise ValueError(f"y_true must be 1-D (n,) or 2-D (n, v), found shape {y_true.shape}")
    if y_true.shape[0] < 2:
        raise ValueError(f"need at least 2 samples to score, found {y_true.shape[0]}")
    if y_true.ndim == 1:
        return y_true[:, None], y_pred[:, None]
    return y_true, y_pred


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation per target.

    Parameters
    ----------
    y_true : ndarray, shape (n, v) or (n,)
    y_pred : ndarray, same shape as ``y_true``

    Returns
    -------
    r : ndarray of float64, shape (v,) (or () for 1-D input)
        NaN where either column is constant or holds NaN.
    """
    squeeze = np.ndim(y_true) == 1
    yt, yp = _as_pair(y_true, y_pred)
    yt = yt - yt.mean(axis=0)
    yp = yp - yp.mean(axis=0)
    num = np.einsum("ij,ij->j", yt, yp)
    den = np.sqrt(np.einsum("ij,ij->j", yt, yt) * np.einsum("ij,ij->j", yp, yp))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, num / den, np.nan)
    r = np.clip(r, -1.0, 1.0)
    return r[0] if squeeze else r


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per target, ``1 - SS_res / SS_tot``.

    Parameters
    ----------
    y_true : ndarray, shape (n, v) or (n,)
    y_pred : ndarray, same shape as ``y_true``

    Returns
    -------
    r2 : ndarray of float64, shape (v,) (or () for 1-D input)
        NaN where ``y_true`` is constant or either column holds NaN.
    """
    squeeze = np.ndim(y_true) == 1
    yt, yp = _as_pair(y_true, y_pred)
    res = yt - yp
    ss_res = np.einsum("ij,ij->j", res, res)
    yc = yt - yt.mean(axis=0)
    ss_tot = np.einsum("ij,ij->j", yc, yc)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)
    return r2[0] if squeeze else r2


def r_stats(r: np.ndarray) -> dict[str, float | None]:
    """The summary of per-target scores: ``mean_r``, ``median_r`` and ``max_r`` of the
    values of ``r`` that are not NaN (None if there is none).

    Parameters
    ----------
    r : ndarray, shape (v,)

    Returns
    -------
    stats : dict
        ``{"mean_r", "median_r", "max_r"}``, Python floats or None.
    """
    ok = r[~np.isnan(r)]
    if not ok.size:
        return {"mean_r": None, "median_r": None, "max_r": None}
    return {"mean_r": float(np.mean(ok)), "median_r": float(np.median(ok)),
            "max_r": float(np.max(ok))}
