"""The synthetic world: procedural videos with known latents and a simulated brain.

:func:`render_episode` draws a movie of 1-3 moving, bouncing sprites (disc, square or
triangle; colour, size, plain or striped texture, position, velocity) over a background
(flat colour or gradient) that changes at random scene cuts; each scene has new sprites.
It records per-frame latent factors:

==============  ==============  ==========================================================
latent          shape           meaning
==============  ==============  ==========================================================
``contrast``    (n, 4)          RMS luminance contrast in each 2 x 2 quadrant
``luminance``   (n, 4)          mean luminance in each quadrant
``motion``      (n,)            motion energy: sum of the sprites' speeds (image heights
                                per frame)
``flicker``     (n, 4)          mean absolute luminance change from the previous frame,
                                per quadrant (0 on the first frame)
``object``      (n, 3)          one-hot shape (disc, square, triangle) of the sprite with
                                the largest visible area
``scene_cut``   (n,)            1 on the first frame of every scene but the first
==============  ==============  ==========================================================

:func:`write_synthetic_fmri` renders the fMRI stimuli and simulates responses: parcels
are split evenly among the ROIs; each ROI is tuned to one family of latents
(:data:`ROI_FAMILIES`); the neural drive (z-scored latents averaged onto a fine time
grid, times random per-parcel weights) is convolved with nilearn's Glover HRF, sampled
at the TR onsets and scaled to unit variance; AR(1) noise with variance ``1 / snr`` is
added, new on every run. It writes the layout read by :class:`cortexscale.data.fmri.FmriDataset`
plus ``truth/{subject}.h5`` (see :func:`write_synthetic_fmri`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from scipy.signal import lfilter

from cortexscale.data.atlas import synthetic_atlas, write_atlas
from cortexscale.errors import ConfigError
from cortexscale.io.atomic import atomic_path, write_tsv
from cortexscale.io.provenance import provenance
from cortexscale.io.video import write_video
from cortexscale.logs import Progress, get_logger

__all__ = [
    "LATENT_NAMES",
    "ROI_FAMILIES",
    "SHAPES",
    "bold_from_drive",
    "fine_grid_latents",
    "latent_matrix",
    "render_episode",
    "run_id",
    "standardise_latents",
    "write_synthetic_fmri",
]

log = get_logger(__name__)

SHAPES = ("disc", "square", "triangle")
LATENT_NAMES = ("contrast", "luminance", "motion", "flicker", "object", "scene_cut")
#: ROI name -> latent families its parcels are tuned to; unknown ROIs mix all families.
ROI_FAMILIES: dict[str, tuple[str, ...]] = {
    "early": ("contrast", "luminance"),
    "motion": ("motion", "flicker"),
    "object": ("object",),
    "scene": ("scene_cut",),
}
OVERSAMPLING = 16  # fine time grid of the neural drive: tr / OVERSAMPLING
MEAN_SCENE_FRAMES = 48  # mean scene length in frames
MIN_SCENE_FRAMES = 8
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# ---------------------------------------------------------------------------- rendering
def _scene_bounds(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Start frames of the scenes, beginning with 0 (exponential scene lengths)."""
    starts = [0]
    while True:
        length = MIN_SCENE_FRAMES + int(rng.exponential(MEAN_SCENE_FRAMES - MIN_SCENE_FRAMES))
        nxt = starts[-1] + length
        if nxt >= n_frames:
            break
        starts.append(nxt)
    return np.asarray(starts, dtype=np.int64)


def _background(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A flat or gradient background, float32 (H, W, 3)."""
    c0, c1 = rng.uniform(0.0, 1.0, size=(2, 3)).astype(np.float32)
    kind = rng.integers(3)  # 0 flat, 1 vertical gradient, 2 horizontal gradient
    if kind == 0:
        ramp = np.zeros_like(yy)
    else:
        ramp = yy if kind == 1 else xx
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    return c0 + (c1 - c0) * ramp[..., None]  # (H, W, 3)


def _bounce(p0: float, v: float, t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions of a point moving at speed ``v`` that bounces between ``lo`` and ``hi``."""
    span = hi - lo
    if span <= 0:
        return np.full(t.shape, (lo + hi) / 2, dtype=np.float32)
    u = np.mod(p0 - lo + v * t, 2 * span)
    return (lo + np.where(u <= span, u, 2 * span - u)).astype(np.float32)


def _sprite_mask(shape: int, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of a sprite given offsets from its centre, shape (n, H, W)."""
    if SHAPES[shape] == "disc":
        return dy**2 + dx**2 <= r**2
    if SHAPES[shape] == "square":
        return np.maximum(np.abs(dy), np.abs(dx)) <= r * 0.85
    # triangle pointing up: apex at dy = -r, base at dy = +r
    return (np.abs(dy) <= r) & (np.abs(dx) <= (dy + r) / 2)


def _render_scene(
    n: int, t0: int, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one scene of ``n`` frames.

    Returns
    -------
    frames : ndarray of float32, shape (n, H, W, 3)
    speed : ndarray of float32, shape (n,)
        Sum of sprite speeds (image sizes per frame).
    areas : ndarray of float32, shape (n, 3)
        Visible area of each shape class (pixels).
    """
    yy, xx = np.meshgrid(
        np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij"
    )
    size = float(min(height, width))
    frames = np.broadcast_to(_background(yy, xx, rng), (n, height, width, 3)).copy()
    areas = np.zeros((n, len(SHAPES)), dtype=np.float32)
    t = np.arange(n, dtype=np.float32) + t0
    speed_total = 0.0
    for _ in range(int(rng.integers(1, 4))):
        shape = int(rng.integers(len(SHAPES)))
        r = float(rng.uniform(0.12, 0.3)) * size
        speed = float(rng.uniform(0.0, 0.06)) * size  # pixels per frame
        angle = rng.uniform(0, 2 * np.pi)
        cy = _bounce(rng.uniform(r, height - r), speed * np.sin(angle), t, r, height - r - 1)
        cx = _bounce(rng.uniform(r, width - r), speed * np.cos(angle), t, r, width - r - 1)
        dy = yy[None] - cy[:, None, None]  # (n, H, W)
        dx = xx[None] - cx[:, None, None]
        mask = _sprite_mask(shape, dy, dx, r)  # (n, H, W)
        colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        if rng.random() < 0.5:  # striped texture, stripes move with the sprite
            period = float(rng.uniform(0.3, 0.8)) * r
            theta = rng.uniform(0, np.pi)
            phase = (dx * np.cos(theta) + dy * np.sin(theta)) / period
            shade = np.where(np.sin(2 * np.pi * phase) > 0, 1.0, 0.35).astype(np.float32)
        else:
            shade = np.ones((n, height, width), dtype=np.float32)
        frames = np.where(mask[..., None], shade[..., None] * colour, frames)
        speed_total += speed / size
        _accumulate_visible(areas, mask, shape)
    return frames, np.full(n, speed_total, dtype=np.float32), areas


def _accumulate_visible(areas: np.ndarray, mask: np.ndarray, shape: int) -> None:
    """Track visible areas: a new sprite occludes the earlier ones under its mask.

    ``areas`` holds per-shape visible areas; occlusion is approximated by removing
    the new sprite's area from the other shapes proportionally to their share.
    """
    new = mask.sum(axis=(1, 2)).astype(np.float32)  # (n,)
    total = areas.sum(axis=1)
    covered = np.minimum(new, total)
    share = np.divide(areas, total[:, None], out=np.zeros_like(areas), where=total[:, None] > 0)
    areas -= share * covered[:, None]
    areas[:, shape] += new


def _quadrant_stats(lum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of luminance per 2 x 2 quadrant, each (n, 4)."""
    n, h, w = lum.shape
    hh, hw = max(h // 2, 1), max(w // 2, 1)
    quads = [lum[:, :hh, :hw], lum[:, :hh, hw:], lum[:, hh:, :hw], lum[:, hh:, hw:]]
    quads = [q if q.size else lum for q in quads]
    mean = np.stack([q.mean(axis=(1, 2)) for q in quads], axis=1)
    std = np.stack([q.std(axis=(1, 2)) for q in quads], axis=1)
    return mean.astype(np.float32), std.astype(np.float32)


def render_episode(
    n_frames: int, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render a procedural movie and its per-frame latent factors.

    Parameters
    ----------
    n_frames : int
        Number of frames (>= 1).
    height, width : int
        Frame size in pixels (>= 2).
    rng : numpy.random.Generator
        Source of every random choice; the same state gives the same movie.

    Returns
    -------
    frames : ndarray of uint8, shape (n_frames, height, width, 3)
        RGB frames.
    latents : dict of str to ndarray
        ``contrast`` (n, 4), ``luminance`` (n, 4), ``motion`` (n,), ``flicker`` (n, 4),
        ``object`` (n, 3), ``scene_cut`` (n,), all float32 (see the module docstring).
    """
    if int(n_frames) < 1:
        raise ValueError(f"n_frames: expected >= 1, found {n_frames}")
    if int(height) < 2 or int(width) < 2:
        raise ValueError(f"height and width: expected >= 2, found {height}x{width}")
    n_frames, height, width = int(n_frames), int(height), int(width)
    starts = _scene_bounds(n_frames, rng)
    ends = np.append(starts[1:], n_frames)
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    motion = np.empty(n_frames, dtype=np.float32)
    areas = np.empty((n_frames, len(SHAPES)), dtype=np.float32)
    for s, e in zip(starts, ends, strict=True):
        f, motion[s:e], areas[s:e] = _render_scene(int(e - s), int(s), height, width, rng)
        frames[s:e] = np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
    lum = frames.astype(np.float32) @ (_LUMA / 255.0)  # (n, H, W)
    luminance, contrast = _quadrant_stats(lum)
    diff = np.abs(np.diff(lum, axis=0, prepend=lum[:1]))
    flicker, _ = _quadrant_stats(diff)
    obj = np.zeros((n_frames, len(SHAPES)), dtype=np.float32)
    obj[np.arange(n_frames), areas.argmax(axis=1)] = 1.0
    cut = np.zeros(n_frames, dtype=np.float32)
    cut[starts[1:]] = 1.0
    latents = {
        "contrast": contrast, "luminance": luminance, "motion": motion,
        "flicker": flicker, "object": obj, "scene_cut": cut,
    }
    return frames, latents


# ---------------------------------------------------------------------------- brain model
def latent_matrix(latents: dict[str, np.ndarray], families: tuple[str, ...]) -> np.ndarray:
    """Stack the chosen latent families into columns.

    Returns
    -------
    x : ndarray of float64, shape (n_frames, n_features)
        Families in the order given, each flattened to 2-D.
    """
    cols = [np.asarray(latents[f], dtype=np.float64).reshape(len(latents[f]), -1)
            for f in families]
    return np.concatenate(cols, axis=1)


def fine_grid_latents(x: np.ndarray, fps: float, dt: float, n_bins: int) -> np.ndarray:
    """Average per-frame values onto a fine time grid.

    Frame ``j`` (shown at ``j / fps`` s) goes to bin ``floor(j / fps / dt)``; bins with
    no frame hold the previous bin's value.

    Parameters
    ----------
    x : ndarray, shape (n_frames, k)
    fps : float
    dt : float
        Bin width in seconds.
    n_bins : int

    Returns
    -------
    fine : ndarray of float64, shape (n_bins, k)
    """
    idx = np.floor(np.arange(len(x)) / fps / dt + 1e-9).astype(np.int64)
    keep = idx < n_bins
    sums = np.zeros((n_bins, x.shape[1]))
    counts = np.zeros(n_bins)
    np.add.at(sums, idx[keep], x[keep])
    np.add.at(counts, idx[keep], 1.0)
    filled = np.flatnonzero(counts > 0)
    if filled.size == 0:
        return sums
    src = filled[np.maximum(np.searchsorted(filled, np.arange(n_bins), side="right") - 1, 0)]
    return sums[src] / counts[src, None]


def bold_from_drive(drive: np.ndarray, tr: float, oversampling: int, n_tr: int) -> np.ndarray:
    """Convolve a fine-grid drive with the Glover HRF and sample it at the TR onsets.

    Parameters
    ----------
    drive : ndarray, shape (n_bins, k)
        Neural drive on the grid ``dt = tr / oversampling``, starting at time 0.
    tr : float
        Repetition time in seconds.
    oversampling : int
        Fine bins per TR.
    n_tr : int
        Number of TRs to return; TR ``i`` is sampled at ``i * tr`` s.

    Returns
    -------
    bold : ndarray of float64, shape (n_tr, k)
        Causal convolution (the response at time t depends on the drive up to t).
    """
    from nilearn.glm.first_level import glover_hrf

    hrf = glover_hrf(tr, oversampling=oversampling, time_length=32.0)  # (n_hrf,)
    conv = lfilter(hrf, [1.0], drive, axis=0)  # (n_bins, k)
    idx = np.arange(n_tr) * oversampling
    if idx[-1] >= len(conv):
        raise ValueError(
            f"drive of {len(conv)} bins is too short for {n_tr} TRs at oversampling "
            f"{oversampling}"
        )
    return conv[idx]


def _ar1_noise(n: int, k: int, ar1: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) noise with unit variance, shape (n, k)."""
    e0 = rng.standard_normal((1, k))
    w = rng.standard_normal((n, k)) * math.sqrt(1.0 - ar1**2)
    out, _ = lfilter([1.0], [1.0, -ar1], w, axis=0, zi=ar1 * e0)
    return out


def run_id(session: int, run: int) -> str:
    """Run id in the Algonauts 2025 style, e.g. ``ses-001_task-run01``."""
    return f"ses-{session:03d}_task-run{run:02d}"


def _parcel_table(n_parcels: int, rois: list[str]) -> pd.DataFrame:
    if n_parcels < len(rois):
        raise ConfigError(
            f"fmri.n_parcels ({n_parcels}) must be at least the number of ROIs ({len(rois)})"
        )
    groups = np.array_split(np.arange(n_parcels), len(rois))
    roi_of = np.concatenate([[roi] * len(g) for roi, g in zip(rois, groups, strict=True)])
    labels = [f"{roi}_{k:03d}" for roi, g in zip(rois, groups, strict=True)
              for k in range(len(g))]
    return pd.DataFrame({"parcel": np.arange(n_parcels), "roi": roi_of, "label": labels})


def _run_table(subjects: list[str], stimuli: list[str], n_test: int, n_tr: int) -> pd.DataFrame:
    rows = []
    n = len(stimuli)
    for subject in subjects:
        for i, stim in enumerate(stimuli):
            split = "test" if i >= n - n_test else "train"
            rows.append((subject, run_id(1, i + 1), stim, n_tr, split))
        for i in range(n - n_test, n):
            rows.append((subject, run_id(2, i + 1), stimuli[i], n_tr, "test"))
    return pd.DataFrame(rows, columns=["subject", "run", "stimulus", "n_tr", "split"])


def _subject_signal(
    x_fine: dict[str, dict[str, np.ndarray]], parcels: pd.DataFrame, tr: float, n_tr: int,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """True signal per stimulus, unit variance per parcel over all stimuli.

    Returns
    -------
    signal : dict of stimulus -> ndarray (n_tr, n_parcels)
    weights : ndarray (n_features, n_parcels)
        Zero where a parcel is not tuned to a feature.
    names : list of str
        Feature names, ``family[i]``.
    """
    stimuli = list(x_fine)
    names = [f"{fam}[{i}]" for fam, a in x_fine[stimuli[0]].items() for i in range(a.shape[1])]
    fam_of = np.array([n.split("[")[0] for n in names])
    weights = np.zeros((len(names), len(parcels)))
    for p, roi in enumerate(parcels["roi"]):
        fams = ROI_FAMILIES.get(roi, LATENT_NAMES)
        sel = np.isin(fam_of, fams)
        weights[sel, p] = rng.standard_normal(int(sel.sum()))
    bold = {}
    for stim in stimuli:
        x = np.concatenate(list(x_fine[stim].values()), axis=1)  # (n_bins, n_features)
        bold[stim] = bold_from_drive(x @ weights, tr, OVERSAMPLING, n_tr)  # (n_tr, n_parcels)
    allb = np.concatenate(list(bold.values()))
    mean, std = allb.mean(axis=0), allb.std(axis=0)
    std[std == 0] = 1.0
    return {s: (b - mean) / std for s, b in bold.items()}, weights / std, names


def standardise_latents(lat: dict[str, dict[str, np.ndarray]]) -> None:
    """Z-score every latent column in place, with statistics over all stimuli."""
    for fam in LATENT_NAMES:
        allx = np.concatenate([lat[s][fam] for s in lat])
        mean, std = allx.mean(axis=0), allx.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        for s in lat:
            lat[s][fam] = (lat[s][fam] - mean) / std


def _ceiling(signal_test: np.ndarray, noise_var: float, n_repeats: int) -> np.ndarray:
    """Expected correlation of the true signal with test data averaged over repeats."""
    v = signal_test.var(axis=0)
    return np.sqrt(v / (v + noise_var / n_repeats))


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    return np.divide((a * b).sum(axis=0), den, out=np.zeros(a.shape[1]), where=den > 0)


def _check_fmri_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {"tr": 1.49, "n_runs": 4, "repeated_runs": 1, "trs_per_run": 120,
           "n_parcels": 64, "snr": [1.0], "ar1": 0.3}
    out.update({k: v for k, v in cfg.items() if k in out})
    if not 1 <= int(out["repeated_runs"]) < int(out["n_runs"]):
        raise ConfigError(
            f"fmri.repeated_runs: expected between 1 and fmri.n_runs - 1 = "
            f"{int(out['n_runs']) - 1}, found {out['repeated_runs']}"
        )
    snr = out["snr"] if isinstance(out["snr"], list | tuple) else [out["snr"]]
    if not snr or any(float(s) <= 0 for s in snr):
        raise ConfigError(f"fmri.snr: expected a non-empty list of positive numbers, "
                          f"found {snr}")
    if not 0 <= float(out["ar1"]) < 1:
        raise ConfigError(f"fmri.ar1: expected a number in [0, 1), found {out['ar1']}")
    if float(out["tr"]) <= 0 or int(out["trs_per_run"]) < 2:
        raise ConfigError(
            f"fmri.tr and fmri.trs_per_run: expected > 0 and >= 2, found {out['tr']}, "
            f"{out['trs_per_run']}"
        )
    out["snr"] = [float(s) for s in snr]
    return out


def write_synthetic_fmri(
    out_dir: str | os.PathLike,
    fmri_cfg: dict[str, Any],
    subjects: list[str],
    rois: list[str],
    seed: int,
    fps: float,
    height: int,
    width: int,
) -> None:
    """Render the stimuli and simulate an fMRI dataset in the Algonauts 2025-like layout.

    Stimulus ``movie{i:02d}`` (``i = 1 .. n_runs``) is shown in run ``ses-001_task-run{i:02d}``;
    the last ``repeated_runs`` stimuli are the test stimuli and are shown again in
    ``ses-002_task-run{i:02d}``. Every subject sees the same stimuli.

    Parameters
    ----------
    out_dir : path-like
        Dataset folder; receives ``{subject}.h5``, ``stimuli/*.mkv``, ``parcels.tsv``,
        ``truth/{subject}.h5`` and, last (the completion marker), ``runs.tsv``.
    fmri_cfg : dict
        The config's ``fmri`` section: ``tr``, ``n_runs``, ``repeated_runs``,
        ``trs_per_run``, ``n_parcels``, ``snr`` (list, cycled over subjects), ``ar1``.
    subjects : list of str
    rois : list of str
        Parcels are split evenly among them in order; see :data:`ROI_FAMILIES`.
    seed : int
    fps : float
        Frame rate of the stimulus movies.
    height, width : int
        Frame size of the stimulus movies.

    Notes
    -----
    ``truth/{subject}.h5`` holds ``weights`` (n_features, n_parcels) on the z-scored
    latents (attr ``feature_names``), ``signal/{run}`` (n_TR, n_parcels) the noise-free
    response of every run, ``noise_ceiling`` (n_parcels,) and ``oracle_r`` (n_parcels,),
    and attrs ``snr``, ``ar1``, ``n_repeats``. The signal has unit variance per parcel
    over all stimuli and the noise variance is ``1 / snr``. ``noise_ceiling`` is the
    expected Pearson correlation between the true signal and the test responses averaged
    over the ``R = 2`` repeats, ``sqrt(v / (v + (1 / snr) / R))`` where ``v`` is the
    variance of the true signal over the test TRs (test stimuli concatenated);
    ``oracle_r`` is that correlation measured on the simulated noise.
    """
    cfg = _check_fmri_cfg(fmri_cfg)
    if not subjects or not rois:
        raise ConfigError(f"subjects and rois: expected at least one of each, found {subjects} "
                          f"and {rois}")
    out_dir = Path(out_dir)
    parcels = _parcel_table(int(cfg["n_parcels"]), list(rois))  # validates before any work
    tr, n_tr, n_runs = float(cfg["tr"]), int(cfg["trs_per_run"]), int(cfg["n_runs"])
    n_test = int(cfg["repeated_runs"])
    n_frames = math.ceil(n_tr * tr * fps)
    n_bins = n_tr * OVERSAMPLING
    stimuli = [f"movie{i + 1:02d}" for i in range(n_runs)]
    latents: dict[str, dict[str, np.ndarray]] = {}
    progress = Progress(log, n_runs, "stimulus")
    for i, stim in enumerate(stimuli):
        frames, lat = render_episode(n_frames, height, width, np.random.default_rng([seed, 1, i]))
        write_video(out_dir / "stimuli" / f"{stim}.mkv", frames, fps)
        latents[stim] = lat
        progress.update(i + 1, f"{stim} ({n_frames} frames)")
    standardise_latents(latents)
    x_fine = {
        s: {f: fine_grid_latents(latent_matrix(lat, (f,)), fps, tr / OVERSAMPLING, n_bins)
            for f in LATENT_NAMES}
        for s, lat in latents.items()
    }
    runs = _run_table(list(subjects), stimuli, n_test, n_tr)
    write_tsv(out_dir / "parcels.tsv", parcels)
    write_atlas(out_dir / "atlas.nii.gz", synthetic_atlas(parcels, seed=seed))
    progress = Progress(log, len(subjects), "subject")
    for k, subject in enumerate(subjects):
        snr = cfg["snr"][k % len(cfg["snr"])]
        _write_subject(out_dir, subject, runs[runs["subject"] == subject], x_fine, parcels,
                       cfg, snr, seed, k, fmri_cfg)
        progress.update(k + 1, subject)
    write_tsv(out_dir / "runs.tsv", runs)


def _write_subject(
    out_dir: Path, subject: str, runs: pd.DataFrame, x_fine: dict, parcels: pd.DataFrame,
    cfg: dict[str, Any], snr: float, seed: int, k: int, fmri_cfg: dict[str, Any],
) -> None:
    """Simulate and write ``{subject}.h5`` and ``truth/{subject}.h5``."""
    tr, n_tr, ar1 = float(cfg["tr"]), int(cfg["trs_per_run"]), float(cfg["ar1"])
    signal, weights, names = _subject_signal(
        x_fine, parcels, tr, n_tr, np.random.default_rng([seed, 2, k])
    )
    noise_rng = np.random.default_rng([seed, 3, k])
    noise_sd = 1.0 / math.sqrt(snr)
    responses = {}
    for run, stim in zip(runs["run"], runs["stimulus"], strict=True):
        noise = _ar1_noise(n_tr, len(parcels), ar1, noise_rng) * noise_sd
        responses[run] = (signal[stim] + noise).astype(np.float32)
    test = runs[runs["split"] == "test"]
    test_stims = list(dict.fromkeys(test["stimulus"]))
    s_test = np.concatenate([signal[s] for s in test_stims])
    y_test = np.concatenate([
        np.mean([responses[r] for r in test.loc[test["stimulus"] == s, "run"]], axis=0)
        for s in test_stims
    ])
    n_rep = int(test.groupby("stimulus").size().min())
    prov = provenance(fmri_cfg, seed=seed, subject=subject, snr=snr)
    with atomic_path(out_dir / f"{subject}.h5") as tmp, h5py.File(tmp, "w") as f:
        for run, y in responses.items():
            f.create_dataset(run, data=y)
        f.attrs.update({"tr": tr, "subject": subject, **prov})
    with atomic_path(out_dir / "truth" / f"{subject}.h5") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("weights", data=weights.astype(np.float32))
        f["weights"].attrs["feature_names"] = names
        for run, stim in zip(runs["run"], runs["stimulus"], strict=True):
            f.create_dataset(f"signal/{run}", data=signal[stim].astype(np.float32))
        f.create_dataset("noise_ceiling", data=_ceiling(s_test, 1.0 / snr, n_rep))
        f.create_dataset("oracle_r", data=_corr(s_test, y_test.astype(np.float64)))
        f.attrs.update({"snr": snr, "ar1": ar1, "n_repeats": n_rep, "tr": tr, **prov})
        f.attrs["noise_ceiling_definition"] = (
            "expected Pearson r between the true signal and the test responses averaged over "
            "n_repeats repeats: sqrt(v / (v + (1/snr) / n_repeats)), v = signal variance over "
            "the test TRs"
        )
