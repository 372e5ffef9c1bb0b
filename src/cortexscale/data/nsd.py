"""Algonauts 2023 / NSD: a validating reader, and the synthetic world in that layout.

Layout of one subject (the challenge's release)::

    subj01/training_split/training_fmri/lh_training_fmri.npy    float (n_images, n_lh)
    subj01/training_split/training_fmri/rh_training_fmri.npy    float (n_images, n_rh)
    subj01/training_split/training_images/train-0001_nsd-00013.png ...   (sorted = row order)
    subj01/roi_masks/lh.prf-visualrois_challenge_space.npy      int (n_lh,), 0 = outside
    subj01/roi_masks/rh.prf-visualrois_challenge_space.npy      int (n_rh,)
    subj01/roi_masks/lh.all-vertices_fsaverage_space.npy        optional, bool (163842,)
    subj01/roi_masks/mapping_prf-visualrois.json                optional: {"1": "V1v", ...}

The release's ``mapping_*.npy`` files are pickled dicts; this reader never unpickles, so
ROI names come from a ``mapping_{class}.json`` when present, else ``{class}{value}`` (with
the non-alphanumeric characters of the class dropped, since ROI names are alphanumeric).
The images are still pictures: encoding them is the pretrained-model path's job; this
module reads and validates only.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["HEMIS", "NsdSubject", "read_nsd_subject", "write_synthetic_nsd"]

HEMIS = ("lh", "rh")
STILL_FAMILIES = ("contrast", "luminance", "object")
_MASK = re.compile(r"^(lh|rh)\.(.+)_challenge_space\.npy$")


@dataclass
class NsdSubject:
    """One validated Algonauts 2023 subject.

    Attributes
    ----------
    root : Path
        ``subjXX`` folder.
    responses : dict of str to ndarray of float32, each (n_images, n_vertices[hemi])
    images : list of Path
        PNG files in row order (sorted names).
    rois : dict of str to dict of str to ndarray of bool (n_vertices[hemi],)
        ROI name -> hemisphere -> vertex mask.
    bad_vertices : dict of str to list of int
        Per hemisphere: vertices with NaN/inf or constant responses (reported; the
        encoding excludes them).
    """

    root: Path
    responses: dict[str, np.ndarray]
    images: list[Path]
    rois: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    bad_vertices: dict[str, list[int]] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return len(self.images)

    def load_images(self) -> np.ndarray:
        """All images as uint8 RGB, shape (n_images, H, W, 3) (sizes must agree)."""
        from PIL import Image

        out = []
        for p in self.images:
            try:
                with Image.open(p) as im:
                    out.append(np.asarray(im.convert("RGB")))
            except OSError as err:
                raise ValueError(f"{p}: not a readable image: {err}") from err
        shapes = {a.shape for a in out}
        if len(shapes) > 1:
            raise ValueError(f"{self.root}: images differ in size: {sorted(shapes)[:3]}")
        return np.stack(out)


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected {what}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npy array ({what}): {err}") from err


def read_nsd_subject(root: str | os.PathLike) -> NsdSubject:
    """Read and validate one subject folder (``.../subj01``).

    Raises
    ------
    FileNotFoundError
        A missing response file or image folder.
    ValueError
        Responses that are not 2-D floats, hemispheres with different row counts, an image
        count that differs from the rows, ROI masks whose length differs from their
        hemisphere's vertex count, an ``all-vertices`` mask whose size differs from it, a
        response row (image) that is NaN/inf in every vertex, a hemisphere without a usable
        vertex.
    """
    root = Path(root)
    fmri_dir = root / "training_split" / "training_fmri"
    responses = {}
    for h in HEMIS:
        path = fmri_dir / f"{h}_training_fmri.npy"
        y = _load_npy(path, "float (n_images, n_vertices) responses")
        if y.ndim != 2 or not np.issubdtype(y.dtype, np.floating):
            raise ValueError(f"{path}: expected float (n_images, n_vertices), found "
                             f"{y.dtype} {y.shape}")
        responses[h] = y.astype(np.float32, copy=False)
    n_l, n_r = responses["lh"].shape[0], responses["rh"].shape[0]
    if n_l != n_r:
        raise ValueError(f"{fmri_dir}: lh has {n_l} rows and rh {n_r}; expected one row per "
                         "image in both hemispheres")
    img_dir = root / "training_split" / "training_images"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"image folder {img_dir} does not exist")
    images = sorted(img_dir.glob("*.png"))
    if len(images) != n_l:
        raise ValueError(f"{img_dir} holds {len(images)} PNG images but "
                         f"{fmri_dir / 'lh_training_fmri.npy'} has {n_l} rows; expected one "
                         "image per response row")
    n_vert = {h: responses[h].shape[1] for h in HEMIS}
    rois: dict[str, dict[str, np.ndarray]] = {}
    mask_dir = root / "roi_masks"
    for path in sorted(mask_dir.glob("*.npy")) if mask_dir.is_dir() else []:
        if path.name.startswith(tuple(f"{h}.all-vertices" for h in HEMIS)):
            h = path.name[:2]
            m = _load_npy(path, "bool fsaverage mask")
            if int(np.count_nonzero(m)) != n_vert[h]:
                raise ValueError(f"{path} selects {int(np.count_nonzero(m))} vertices; "
                                 f"expected {n_vert[h]} (columns of {h}_training_fmri.npy)")
            continue
        match = _MASK.match(path.name)
        if match is None:
            continue
        h, cls = match.groups()
        labels = _load_npy(path, f"int ({n_vert[h]},) ROI labels")
        if labels.shape != (n_vert[h],):
            raise ValueError(f"{path} has shape {labels.shape}; expected ({n_vert[h]},) like "
                             f"the columns of {fmri_dir / f'{h}_training_fmri.npy'}")
        names = _mapping(mask_dir, cls)
        for v in np.unique(labels[labels > 0]).astype(int):
            name = names.get(v, re.sub(r"[^A-Za-z0-9]", "", cls) + str(v))
            rois.setdefault(name, {hh: np.zeros(n_vert[hh], bool) for hh in HEMIS})
            rois[name][h] |= labels == v
    bad = {}
    for h in HEMIS:
        y = responses[h]
        path = fmri_dir / f"{h}_training_fmri.npy"
        dead = np.flatnonzero(~np.isfinite(y).any(axis=1))
        if dead.size:
            raise ValueError(
                f"{path}: row(s) {dead[:10].tolist()} (image(s) "
                f"{[images[i].name for i in dead[:3]]}) are NaN/inf in every vertex; expected "
                "finite responses (screening would exclude every vertex)")
        b = ~np.isfinite(y).all(axis=0) | (np.ptp(np.where(np.isfinite(y), y, 0), axis=0) == 0)
        if b.all():
            raise ValueError(f"{path}: every one of its {y.shape[1]} vertices holds NaN/inf or "
                             "is constant; expected at least one usable vertex")
        bad[h] = np.flatnonzero(b).tolist()
    return NsdSubject(root, responses, images, rois, bad)


def _mapping(mask_dir: Path, cls: str) -> dict[int, str]:
    path = mask_dir / f"mapping_{cls}.json"
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    return {int(k): re.sub(r"[^A-Za-z0-9]", "", str(v)) for k, v in raw.items()}


def write_synthetic_nsd(
    out_dir: str | os.PathLike, subjects: list[str], rois: list[str], seed: int,
    n_images: int = 48, n_vertices: tuple[int, int] = (20, 20), size: int = 32,
    snr: float | list[float] = 1.0,
) -> None:
    """The synthetic world as still images and per-hemisphere responses (Algonauts 2023).

    Image ``i`` is the single frame of :func:`cortexscale.data.synthetic.render_episode`
    with ``rng([seed, 5, i])`` (1-3 sprites over a background; every subject sees the same
    images). Its static latents (quadrant contrast and luminance, dominant object shape;
    z-scored over images) drive the vertices: vertex weights are standard normal on the
    families of its ROI (``early``: contrast, luminance; ``object``: object; other ROIs:
    all three) and 0 elsewhere; the signal is scaled to unit variance per vertex and
    Gaussian noise of variance ``1 / snr`` is added (one response per image, as the
    release's averaged betas). Vertices are split evenly among the ROIs, then into
    hemispheres (the first ``n_vertices[0]`` are ``lh``). ROI masks are written as
    ``{hemi}.synthetic_challenge_space.npy`` with ``mapping_synthetic.json``.
    ``truth/{subject}.h5`` holds ``weights``, ``signal_lh``, ``signal_rh`` and the
    per-vertex ``noise_ceiling_lh/rh`` = ``sqrt(v / (v + 1 / snr))``.
    """
    import h5py
    from PIL import Image

    from cortexscale.data.synthetic import (
        ROI_FAMILIES,
        _standardise_latents,
        latent_matrix,
        render_episode,
    )

    out_dir = Path(out_dir)
    snrs = snr if isinstance(snr, list | tuple) else [snr]
    n_l, n_r = (int(n) for n in n_vertices)
    n_v = n_l + n_r
    if n_v < len(rois):
        raise ValueError(f"n_vertices {n_vertices} must total at least the {len(rois)} ROIs")
    imgs, lat = [], {}
    for i in range(int(n_images)):
        frame, latents = render_episode(1, size, size, np.random.default_rng([seed, 5, i]))
        imgs.append(frame[0])
        lat[i] = latents
    _standardise_latents(lat)
    x = np.concatenate([latent_matrix(lat[i], STILL_FAMILIES) for i in lat])  # (n_img, k)
    fam_of = np.concatenate([[f] * lat[0][f].reshape(1, -1).shape[1] for f in STILL_FAMILIES])
    groups = np.array_split(np.arange(n_v), len(rois))
    roi_of = np.empty(n_v, dtype=object)
    for roi, g in zip(rois, groups, strict=True):
        roi_of[g] = roi
    for k, subject in enumerate(subjects):
        rng = np.random.default_rng([seed, 6, k])
        w = np.zeros((x.shape[1], n_v))
        for v, roi in enumerate(roi_of):
            fams = [f for f in ROI_FAMILIES.get(roi, STILL_FAMILIES) if f in STILL_FAMILIES]
            sel = np.isin(fam_of, fams or STILL_FAMILIES)
            w[sel, v] = rng.standard_normal(int(sel.sum()))
        s = x @ w
        s = (s - s.mean(0)) / np.where(s.std(0) > 0, s.std(0), 1.0)
        nv = 1.0 / float(snrs[k % len(snrs)])
        y = (s + rng.standard_normal(s.shape) * np.sqrt(nv)).astype(np.float32)
        sub = out_dir / subject
        fdir = sub / "training_split" / "training_fmri"
        fdir.mkdir(parents=True, exist_ok=True)
        np.save(fdir / "lh_training_fmri.npy", y[:, :n_l])
        np.save(fdir / "rh_training_fmri.npy", y[:, n_l:])
        idir = sub / "training_split" / "training_images"
        idir.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(imgs):
            Image.fromarray(img).save(idir / f"train-{i + 1:04d}_nsd-{i:05d}.png")
        mdir = sub / "roi_masks"
        mdir.mkdir(parents=True, exist_ok=True)
        codes = np.array([rois.index(r) + 1 for r in roi_of], dtype=np.int32)
        np.save(mdir / "lh.synthetic_challenge_space.npy", codes[:n_l])
        np.save(mdir / "rh.synthetic_challenge_space.npy", codes[n_l:])
        (mdir / "mapping_synthetic.json").write_text(
            json.dumps({str(i + 1): r for i, r in enumerate(rois)}))
        v = s.var(axis=0)
        ceil = np.sqrt(v / (v + nv))
        (out_dir / "truth").mkdir(parents=True, exist_ok=True)
        with h5py.File(out_dir / "truth" / f"{subject}.h5", "w") as f:
            f["weights"] = w.astype(np.float32)
            f["signal_lh"], f["signal_rh"] = s[:, :n_l], s[:, n_l:]
            f["noise_ceiling_lh"], f["noise_ceiling_rh"] = ceil[:n_l], ceil[n_l:]
            f.attrs["snr"] = 1.0 / nv


