"""Noise ceilings from repeated presentations, and noise-normalised scores.

Two estimators, both from responses to repeats of the same stimuli, shape
``(n_repeats, n_samples, n_targets)``:

- :func:`explainable_variance`: the fraction of a single repeat's variance that is
  repeatable (signal), with the bias correction of Sahani & Linden (2003) / Hsu et al.
  (2004) as in the Gallant lab's tools: ``ev - (1 - ev) / (n_repeats - 1)``.
- :func:`ncsnr` and :func:`noise_ceiling_nsd`: the NSD noise-ceiling signal-to-noise
  ratio (Allen et al. 2022) and the ceiling, in percent of variance, of a response
  averaged over ``n`` trials: ``NC = 100 * ncsnr^2 / (ncsnr^2 + 1 / n)``;
  :func:`noise_ceiling_challenge` for a test set whose images were shown different numbers
  of times, as the Algonauts 2023 challenge computes it:
  ``NC = 100 * ncsnr^2 / (ncsnr^2 + (A/3 + B/2 + C/1) / (A + B + C))`` with A, B, C the
  test images shown 3, 2 and 1 times (generally: the mean of ``1 / n_shown``).

:func:`normalised_score` is the Algonauts 2023 challenge score: ``r < 0 -> 0``,
``100 * r^2 / (NC / 100)``, capped at 100.
"""

from __future__ import annotations

import numpy as np

__all__ = ["explainable_variance", "ncsnr", "noise_ceiling_challenge", "noise_ceiling_nsd",
           "normalised_score", "repeat_norm_term"]


def _check_repeats(Y_rep: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y_rep, dtype=np.float64)
    if Y.ndim == 2:
        Y = Y[:, :, None]
    if Y.ndim != 3:
        raise ValueError(
            f"Y_rep must be (n_repeats, n_samples, n_targets), found shape {np.shape(Y_rep)}"
        )
    if Y.shape[0] < 2:
        raise ValueError(f"Y_rep needs at least 2 repeats (axis 0), found {Y.shape[0]}")
    if Y.shape[1] < 2:
        raise ValueError(f"Y_rep needs at least 2 samples (axis 1), found {Y.shape[1]}")
    return Y


def explainable_variance(Y_rep: np.ndarray, bias_correction: bool = True) -> np.ndarray:
    """Explainable variance per target.

    Parameters
    ----------
    Y_rep : ndarray, shape (n_repeats, n_samples, n_targets)
        Responses to ``n_repeats`` presentations of the same ``n_samples`` time points.
    bias_correction : bool
        Subtract the expected upward bias ``(1 - ev) / (n_repeats - 1)``.

    Returns
    -------
    ev : ndarray of float64, shape (n_targets,)
        ``var(mean over repeats) / mean(var of each repeat)``, corrected; in
        ``(-inf, 1]`` (noisy targets can be negative). NaN for constant targets.
    """
    Y = _check_repeats(Y_rep)
    n_rep = Y.shape[0]
    mean_var = Y.var(axis=1).mean(axis=0)  # (v,)
    var_mean = Y.mean(axis=0).var(axis=0)  # (v,)
    with np.errstate(divide="ignore", invalid="ignore"):
        ev = np.where(mean_var > 0, var_mean / mean_var, np.nan)
    if bias_correction:
        ev = ev - (1.0 - ev) / (n_rep - 1)
    return ev


def ncsnr(Y_rep: np.ndarray) -> np.ndarray:
    """NSD noise-ceiling signal-to-noise ratio per target.

    ``sigma_noise^2`` is the mean over samples of the across-repeat variance
    (``ddof=1``); the signal variance is the variance of all responses minus it (NSD,
    where responses are z-scored so the total is 1), here with the one-way ANOVA
    finite-sample correction so both variances are unbiased, floored at 0.

    Parameters
    ----------
    Y_rep : ndarray, shape (n_repeats, n_samples, n_targets)

    Returns
    -------
    ncsnr : ndarray of float64, shape (n_targets,)
        ``sigma_signal / sigma_noise``; NaN where the noise variance is 0.
    """
    Y = _check_repeats(Y_rep)
    noise_var = Y.var(axis=0, ddof=1).mean(axis=0)  # (v,) unbiased noise variance
    n_rep, n_stim = Y.shape[:2]
    ss_total = Y.reshape(n_rep * n_stim, -1).var(axis=0) * (n_rep * n_stim)  # (v,)
    # E[SS_total] = n_rep * (n_stim - 1) * signal_var + (n_rep * n_stim - 1) * noise_var
    signal_var = (ss_total - (n_rep * n_stim - 1) * noise_var) / (n_rep * (n_stim - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(noise_var > 0, np.sqrt(np.maximum(signal_var, 0.0) / noise_var), np.nan)
    return snr


def noise_ceiling_nsd(snr: np.ndarray, n_trials: int | float) -> np.ndarray:
    """Noise ceiling in percent of variance of a response averaged over ``n_trials``.

    ``NC = 100 * ncsnr^2 / (ncsnr^2 + 1 / n_trials)``.

    Parameters
    ----------
    snr : ndarray, shape (v,)
        From :func:`ncsnr`.
    n_trials : int or float
        Trials averaged in the response that is predicted (> 0).

    Returns
    -------
    nc : ndarray of float64, shape (v,), in [0, 100]
    """
    if not np.isfinite(n_trials) or n_trials <= 0:
        raise ValueError(f"n_trials must be a positive number, found {n_trials!r}")
    s2 = np.asarray(snr, dtype=np.float64) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * s2 / (s2 + 1.0 / n_trials)


def repeat_norm_term(n_shown: np.ndarray) -> float:
    """The challenge's noise term of a test set: ``(A/3 + B/2 + C/1) / (A + B + C)``.

    Parameters
    ----------
    n_shown : array-like of int, shape (n_images,)
        Times each test image was shown (its response is the mean over them); >= 1.

    Returns
    -------
    term : float
        The mean over images of ``1 / n_shown`` (A, B, C: the images shown 3, 2, 1 times).
    """
    n = np.asarray(n_shown)
    if n.ndim != 1 or n.size == 0 or not np.issubdtype(n.dtype, np.integer) or (n < 1).any():
        raise ValueError(f"n_shown must be a non-empty 1-D array of ints >= 1 (times each test "
                         f"image was shown), found {n.dtype} {n.shape}")
    return float(np.mean(1.0 / n))


def noise_ceiling_challenge(snr: np.ndarray, n_shown: np.ndarray) -> np.ndarray:
    """Noise ceiling in percent of variance of a test set of unequally repeated images.

    ``NC = 100 * ncsnr^2 / (ncsnr^2 + (A/3 + B/2 + C/1) / (A + B + C))`` as the Algonauts
    2023 challenge computes it (:func:`repeat_norm_term`); equal to
    :func:`noise_ceiling_nsd` when every image was shown the same number of times.

    Parameters
    ----------
    snr : ndarray, shape (v,)
        NSD's ncsnr per vertex (:func:`ncsnr`, or the release's ``ncsnr`` maps).
    n_shown : array-like of int, shape (n_images,)

    Returns
    -------
    nc : ndarray of float64, shape (v,), in [0, 100]
    """
    s2 = np.asarray(snr, dtype=np.float64) ** 2
    term = repeat_norm_term(n_shown)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * s2 / (s2 + term)


def normalised_score(r: np.ndarray, nc: np.ndarray) -> np.ndarray:
    """Noise-normalised encoding score as in the Algonauts 2023 challenge.

    Parameters
    ----------
    r : ndarray, shape (v,)
        Pearson r on the test set; negative values count as 0.
    nc : ndarray, shape (v,)
        Noise ceiling in percent (:func:`noise_ceiling_nsd`, or ``100 * ev``).

    Returns
    -------
    score : ndarray of float64, shape (v,)
        ``min(100, 100 * max(r, 0)^2 / (nc / 100))``; NaN where ``nc <= 0`` or either
        input is NaN.
    """
    r = np.asarray(r, dtype=np.float64)
    nc = np.asarray(nc, dtype=np.float64)
    if r.shape != nc.shape:
        raise ValueError(f"r and nc must have the same shape, found {r.shape} and {nc.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 100.0 * np.maximum(r, 0.0) ** 2 / (nc / 100.0)
    score = np.where(nc > 0, np.minimum(score, 100.0), np.nan)
    return np.where(np.isnan(r), np.nan, score)
