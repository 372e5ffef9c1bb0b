"""A planted scaling law: features of the synthetic world with a known dependence on N and D.

The synthetic world (:mod:`cortexscale.data.synthetic`) drives every parcel with a linear
function of its latent factors. So the world's latents, sampled at the TRs, are the best
features any model can have; a "model" of size ``N`` trained on ``D`` tokens is planted as
those latents corrupted by independent noise whose variance is the model's excess loss.

The planted law
---------------
The planted loss of a model with ``N`` parameters trained on ``D`` tokens is::

    L(N, D) = E + A / N**alpha + B / D**beta                      (Hoffmann et al. 2022, eq. 2)

and its features, per TR ``t`` and latent column ``j``, are::

    F[t, j] = Z[t, j] + sqrt(L(N, D) - E) * xi[t, j],   xi ~ N(0, 1) iid

where ``Z`` holds the world's latents averaged over each TR (the window that ends at the TR's
onset, as the VideoGPT features see the clip that ends there), each column standardised
over all stimuli. The noise variance (relative to the unit variance of every latent) is the
excess loss ``L - E``: a model at the irreducible loss has the true latents.

Why the accuracy follows the loss: for ``y = Z w + e`` and ``F = Z + s xi``, the best linear
prediction of ``y`` from ``F`` explains ``w' S (S + s^2 I)^-1 S w`` of the variance
(``S = cov(Z)``), strictly decreasing in ``s^2``; with ``S = I`` its correlation with the
signal is ``r_latents / sqrt(1 + (L - E))`` (:func:`surrogate_score`). A finite-sample ridge
loses more with more noise, so the held-out accuracy decreases monotonically in ``L`` and
at a fixed compute ``C = 6 N D`` the best brain model is the model of least loss.

The compute-optimal allocation (minimise ``L`` under ``6 N D = C``) is, in closed form::

    N*(C) = G (C/6)**a,  D*(C) = G**-1 (C/6)**b,
    a = beta / (alpha + beta),  b = alpha / (alpha + beta),  G = (alpha A / (beta B))**(1/(alpha+beta))

(:meth:`PlantedLaw.optimum`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cortexscale.errors import InputError

# the world (cortexscale.data.synthetic) is imported where it is used: the config check
# builds a PlantedLaw and must not load the renderer, HDF5 and video libraries

__all__ = [
    "PlantedLaw",
    "check_world",
    "noise_rng",
    "planted_features",
    "random_features",
    "surrogate_score",
    "tr_latents",
    "world_latents",
]


@dataclass(frozen=True)
class PlantedLaw:
    """``L(N, D) = E + A / N**alpha + B / D**beta``, with its compute-optimal allocation.

    Parameters
    ----------
    E : float
        Irreducible loss (>= 0).
    A, alpha : float
        Size term: coefficient and exponent (> 0).
    B, beta : float
        Data term: coefficient and exponent (> 0).
    """

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def __post_init__(self) -> None:
        for key in ("A", "alpha", "B", "beta"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"reference.planted.{key}: expected a number > 0, found {value!r}")
        if not (isinstance(self.E, int | float) and math.isfinite(self.E) and self.E >= 0):
            raise ValueError(f"reference.planted.E: expected a number >= 0, found {self.E!r}")

    @classmethod
    def from_config(cls, planted: Mapping[str, Any]) -> PlantedLaw:
        """Build from the config's ``reference.planted`` mapping (keys E, A, alpha, B, beta)."""
        missing = [k for k in ("E", "A", "alpha", "B", "beta") if k not in planted]
        if missing:
            raise ValueError(f"reference.planted lacks the key(s) {missing}")
        return cls(*(float(planted[k]) for k in ("E", "A", "alpha", "B", "beta")))

    def loss(self, n_params: float | np.ndarray, tokens: float | np.ndarray) -> Any:
        """The planted loss ``L(N, D)``; arrays broadcast."""
        n = np.asarray(n_params, dtype=np.float64)
        d = np.asarray(tokens, dtype=np.float64)
        if np.any(n <= 0) or np.any(d <= 0):
            raise ValueError(f"N and D must be > 0, found N={n_params!r}, D={tokens!r}")
        out = self.E + self.A / n**self.alpha + self.B / d**self.beta
        return float(out) if out.ndim == 0 else out

    def excess(self, n_params: float | np.ndarray, tokens: float | np.ndarray) -> Any:
        """``L(N, D) - E``: the planted feature-noise variance."""
        return self.loss(n_params, tokens) - self.E

    @property
    def a(self) -> float:
        """Exponent of ``N*(C)``: ``beta / (alpha + beta)``."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of ``D*(C)``: ``alpha / (alpha + beta)``."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:  # noqa: N802 - the symbol of Hoffmann et al.
        """``(alpha A / (beta B))**(1 / (alpha + beta))``."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def optimum(self, budget: float | np.ndarray) -> tuple[Any, Any]:
        """The compute-optimal ``(N*, D*)`` at ``C = 6 N D = budget`` FLOPs.

        Returns
        -------
        n_opt, d_opt : float or ndarray
            ``G (C/6)**a`` and ``G**-1 (C/6)**b``; ``n_opt * d_opt * 6 == budget``.
        """
        c6 = np.asarray(budget, dtype=np.float64) / 6.0
        if np.any(c6 <= 0):
            raise ValueError(f"budget must be > 0 FLOPs, found {budget!r}")
        n_opt, d_opt = self.G * c6**self.a, c6**self.b / self.G
        if n_opt.ndim == 0:
            return float(n_opt), float(d_opt)
        return n_opt, d_opt

    def summary(self) -> dict[str, float]:
        """The constants and the allocation: ``E, A, alpha, B, beta, a, b, G``."""
        return {**asdict(self), "a": self.a, "b": self.b, "G": self.G}


def surrogate_score(excess: float | np.ndarray, r_latents: float = 1.0) -> Any:
    """Closed-form accuracy of planted features: ``r_latents / sqrt(1 + excess)``.

    Exact for isotropic latents and unlimited training data (module docstring); the ridge on
    finite data scores lower, more so at larger noise, and is monotone in ``excess`` as well.
    """
    e = np.asarray(excess, dtype=np.float64)
    if np.any(e < 0):
        raise ValueError(f"excess loss must be >= 0, found {excess!r}")
    out = r_latents / np.sqrt(1.0 + e)
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------- the world
def world_latents(
    fmri_cfg: Mapping[str, Any], seed: int, fps: float, height: int, width: int,
) -> dict[str, np.ndarray]:
    """The synthetic world's latents on its fine time grid, per stimulus.

    Re-renders every stimulus as :func:`~cortexscale.data.synthetic.write_synthetic_fmri`
    does (same generator keys), z-scores each latent column over all stimuli and averages it
    onto the grid ``dt = tr / OVERSAMPLING``. :func:`check_world` checks the result against
    the world's recorded truth.

    Parameters
    ----------
    fmri_cfg : mapping
        The ``fmri`` section (``tr``, ``n_runs``, ``trs_per_run``).
    seed : int
        The study seed.
    fps : float
        Stimulus frame rate (``corpus.fps / corpus.time_stride``).
    height, width : int
        Stimulus frame size.

    Returns
    -------
    latents : dict of str -> float64 (trs_per_run * OVERSAMPLING, k)
        Keyed ``movie01 ...``; columns are the families of ``LATENT_NAMES`` in order (k = 17).
    """
    from cortexscale.data.synthetic import (
        LATENT_NAMES,
        OVERSAMPLING,
        fine_grid_latents,
        latent_matrix,
        render_episode,
    )

    tr, n_tr = float(fmri_cfg["tr"]), int(fmri_cfg["trs_per_run"])
    n_runs = int(fmri_cfg["n_runs"])
    n_frames = math.ceil(n_tr * tr * fps)
    per_frame = {}
    for i in range(n_runs):
        _, lat = render_episode(n_frames, int(height), int(width),
                                np.random.default_rng([int(seed), 1, i]))
        per_frame[f"movie{i + 1:02d}"] = latent_matrix(lat, LATENT_NAMES)  # (n_frames, k)
    dt, n_bins = tr / OVERSAMPLING, n_tr * OVERSAMPLING
    return {s: fine_grid_latents(x, fps, dt, n_bins) for s, x in _standardise(per_frame).items()}


def check_world(
    fine: Mapping[str, np.ndarray], truth: Mapping[str, Any], runs: Mapping[str, str], tr: float,
    source: str = "truth", tol: float = 1e-2,
) -> float:
    """Check that ``fine`` are the latents that drove a subject's simulated signal.

    The world's signal is ``(HRF * (Z w) - m) / s`` per parcel and its stored weights are
    ``w / s``, so ``signal - HRF * (Z W)`` must be constant in time per parcel across runs.

    Parameters
    ----------
    fine : mapping of stimulus -> (n_bins, k)
        :func:`world_latents`.
    truth : mapping
        ``weights`` (k, v) and ``signal/{run}`` (n_TR, v) of ``truth/{subject}.h5``.
    runs : mapping of run -> stimulus
    tr : float
    source : str
        Named in the error.
    tol : float
        Largest allowed spread of the residual, relative to the signal's s.d. (float32
        storage gives about 1e-6).

    Returns
    -------
    spread : float
        The largest per-parcel spread found.

    Raises
    ------
    InputError
        If the truth lacks a run's signal, or the latents cannot have produced the signal
        (a changed world or config).
    """
    from cortexscale.data.synthetic import OVERSAMPLING, bold_from_drive

    lacking = [k for k in ("weights", *(f"signal/{run}" for run in runs)) if k not in truth]
    if lacking:
        raise InputError(f"{source}: expected the datasets weights and signal/{{run}} for "
                         f"every run of runs.tsv, found {lacking[:5]} missing (the truth of "
                         "another fMRI dataset?)")
    w = np.asarray(truth["weights"], dtype=np.float64)  # (k, v)
    first = next(iter(fine.values()))
    if w.shape[0] != first.shape[1]:
        raise InputError(f"{source}: weights have {w.shape[0]} features, the world's latents "
                         f"{first.shape[1]}; the synthetic world changed")
    resid = []
    for run, stim in runs.items():
        sig = np.asarray(truth[f"signal/{run}"], dtype=np.float64)  # (n_TR, v)
        pred = bold_from_drive(fine[stim] @ w, tr, OVERSAMPLING, sig.shape[0])
        resid.append(sig - pred)
    resid = np.concatenate(resid)
    spread = float((resid.max(axis=0) - resid.min(axis=0)).max())
    if not spread <= tol:
        raise InputError(
            f"{source}: the re-rendered latents do not reproduce the recorded signal (residual "
            f"spread {spread:.3g} > {tol:g}); the fMRI dataset was not made by this config's "
            "fmri, corpus and seed sections"
        )
    return spread


def tr_latents(fine: np.ndarray, n_tr: int) -> np.ndarray:
    """Average fine-grid latents over each TR window that ends at the TR's onset.

    Parameters
    ----------
    fine : (n_bins, k)
        On the grid ``tr / OVERSAMPLING``.
    n_tr : int

    Returns
    -------
    z : float64 (n_tr, k)
        Row ``i`` is the mean of bins ``[(i-1) O, i O)`` (``O = OVERSAMPLING``); row 0, which
        has no past, is the first bin.
    """
    from cortexscale.data.synthetic import OVERSAMPLING

    if fine.shape[0] < (n_tr - 1) * OVERSAMPLING or n_tr < 1:
        raise ValueError(f"{fine.shape[0]} fine bins cannot give {n_tr} TRs")
    out = np.empty((n_tr, fine.shape[1]))
    out[0] = fine[0]
    if n_tr > 1:
        out[1:] = fine[: (n_tr - 1) * OVERSAMPLING].reshape(n_tr - 1, OVERSAMPLING, -1).mean(1)
    return out


def _standardise(z: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each column z-scored over all stimuli together (a constant column is only centred)."""
    allz = np.concatenate(list(z.values()))
    mean, std = allz.mean(axis=0), allz.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return {s: (x - mean) / std for s, x in z.items()}


def planted_features(
    latents: Mapping[str, np.ndarray], excess: float, rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """``F = Z + sqrt(excess) xi`` per stimulus (module docstring).

    Parameters
    ----------
    latents : mapping of stimulus -> (n_TR, k)
        The TR latents; each column is standardised over all stimuli first.
    excess : float
        ``L(N, D) - E`` (>= 0): the noise variance per column; 0 gives the latents.
    rng : numpy.random.Generator
        The noise realisation (stimuli in the mapping's order).

    Returns
    -------
    features : dict of stimulus -> float32 (n_TR, k)
    """
    if not (math.isfinite(excess) and excess >= 0):
        raise ValueError(f"excess loss must be a finite number >= 0, found {excess!r}")
    z = _standardise(latents)
    s = math.sqrt(excess)
    return {k: (x + s * rng.standard_normal(x.shape)).astype(np.float32) for k, x in z.items()}


def noise_rng(study_seed: int, name: str) -> np.random.Generator:
    """The generator of one reference point's noise: keyed by the study seed and the name,
    so every point (and every seed of it) has its own independent realisation."""
    digest = hashlib.sha256(name.encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([int(study_seed), 14, *words])


def random_features(
    latents: Mapping[str, np.ndarray], rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Chance: independent standard normal features of the latents' shapes, float32."""
    return {k: rng.standard_normal(x.shape).astype(np.float32) for k, x in latents.items()}
