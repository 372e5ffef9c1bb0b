"""Noise ceilings estimated from repeated presentations of the same stimulus.

With ``R`` repeats ``y_r = s + e_r`` of one stimulus (signal ``s`` shared, noise ``e_r``
independent across repeats), the covariance between two different repeats estimates the
signal variance and the variance of one repeat estimates signal plus noise variance. The
noise ceiling is then the expected Pearson correlation between the true signal and the
average of ``n_avg`` repeats, ``sqrt(v_s / (v_s + v_e / n_avg))``: the best score any model
can reach against test data averaged over ``n_avg`` repeats. This is the ncsnr-based
ceiling of the Natural Scenes Dataset (Allen et al. 2022) written as a correlation:
``ncsnr = sqrt(v_s / v_e)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ncsnr_from_repeats", "noise_ceiling_from_repeats"]


def ncsnr_from_repeats(repeats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signal and noise variance per target from repeated responses.

    Parameters
    ----------
    repeats : ndarray, shape (n_repeats, n_samples, n_targets)
        Responses to the same stimuli, ``n_repeats >= 2``; each repeat is centred per
        target before the estimate (run means are not signal).

    Returns
    -------
    signal_var : ndarray of float64, shape (n_targets,)
        Mean covariance over pairs of different repeats, clipped at 0.
    noise_var : ndarray of float64, shape (n_targets,)
        Mean variance of one repeat minus ``signal_var`` (at least a tiny positive value).
    """
    y = np.asarray(repeats, dtype=np.float64)
    if y.ndim != 3 or y.shape[0] < 2 or y.shape[1] < 2:
        raise ValueError(
            f"repeats must have shape (n_repeats >= 2, n_samples >= 2, n_targets), got {y.shape}"
        )
    y = y - y.mean(axis=1, keepdims=True)
    r, n = y.shape[:2]
    total = y.sum(axis=0)  # (n, k)
    # sum over pairs i != j of y_i * y_j = (sum y)^2 - sum y^2
    sq = (y**2).sum(axis=0)  # (n, k)
    cross = ((total**2 - sq).sum(axis=0)) / (r * (r - 1) * (n - 1))
    var_one = sq.sum(axis=0) / (r * (n - 1))
    signal_var = np.clip(cross, 0.0, None)
    noise_var = np.maximum(var_one - signal_var, 1e-12 * np.maximum(var_one, 1e-300))
    return signal_var, noise_var


def noise_ceiling_from_repeats(repeats: np.ndarray, n_avg: int | None = None) -> np.ndarray:
    """Noise ceiling (a correlation) per target from repeated responses.

    Parameters
    ----------
    repeats : ndarray, shape (n_repeats, n_samples, n_targets)
        Responses to the same stimuli (test runs of one stimulus, or several test
        stimuli concatenated along ``n_samples`` with their repeats aligned).
    n_avg : int, optional
        Number of repeats averaged in the test data the ceiling applies to (default:
        ``n_repeats``).

    Returns
    -------
    ceiling : ndarray of float64, shape (n_targets,)
        ``sqrt(v_s / (v_s + v_e / n_avg))`` in [0, 1]; 0 where no signal is found.
        Constant targets give 0.
    """
    y = np.asarray(repeats)
    n_avg = y.shape[0] if n_avg is None else int(n_avg)
    if n_avg < 1:
        raise ValueError(f"n_avg must be >= 1, got {n_avg}")
    sv, nv = ncsnr_from_repeats(y)
    den = sv + nv / n_avg
    return np.sqrt(np.divide(sv, den, out=np.zeros_like(sv), where=den > 0))
