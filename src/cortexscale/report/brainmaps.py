"""Brain maps of per-parcel encoding accuracy, drawn with nilearn on the dataset's atlas."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cortexscale.errors import InputError, MissingInputError  # noqa: E402
from cortexscale.report.figures import save_figure  # noqa: E402


def parcel_volume(atlas: nib.Nifti1Image, values: np.ndarray) -> nib.Nifti1Image:
    """Paint per-parcel values into the atlas: label ``p + 1`` gets ``values[p]``.

    Parameters
    ----------
    atlas : Nifti1Image
        Integer labels, 0 = background.
    values : ndarray, shape (n_parcels,)
        NaN parcels are left at 0.

    Returns
    -------
    image : Nifti1Image, float32, the atlas's shape
    """
    labels = np.asarray(atlas.get_fdata(), dtype=np.int64)
    if labels.max() > values.size:
        raise ValueError(
            f"the atlas has label {labels.max()} but only {values.size} parcel values were "
            "given; the atlas must number parcel p as p + 1"
        )
    lut = np.concatenate([[0.0], np.nan_to_num(values, nan=0.0)]).astype(np.float32)
    return nib.Nifti1Image(lut[labels], atlas.affine)


def _atlas_paths(atlas: str | os.PathLike | Mapping[str, str | os.PathLike] | Sequence,
                 subjects: list[str]) -> dict[str, Path]:
    """Subject -> labels image: one image for all, a mapping, or one ``{subject}.nii.gz``
    per subject."""
    if isinstance(atlas, (str, os.PathLike)):
        return {s: Path(atlas) for s in subjects}
    if isinstance(atlas, Mapping):
        paths = {str(k): Path(v) for k, v in atlas.items()}
    else:
        paths = [Path(p) for p in atlas]
        if len(paths) == 1:
            return {s: paths[0] for s in subjects}
        paths = {p.name.split(".")[0]: p for p in paths}
    missing = [s for s in subjects if s not in paths]
    if missing:
        raise InputError(f"no atlas for subject(s) {missing} of the parcel table; found "
                         f"{sorted(paths)} (one {{subject}}.nii.gz per subject, or one for all)")
    return {s: paths[s] for s in subjects}


def _load_atlas(path: Path) -> nib.Nifti1Image:
    """A labels image, or a one-line error naming the file."""
    if not path.is_file():
        raise MissingInputError(f"atlas {path} does not exist; expected a labels image "
                                "(NIfTI, parcel p labelled p + 1)")
    try:
        image = nib.load(path)
        image.get_fdata()  # reads (and caches) the voxels: a truncated file fails here
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as err:
        raise InputError(f"{path}: not a readable NIfTI labels image: {err}") from err
    return image


def plot_brain_maps(
    parcels: pd.DataFrame,
    atlas_path: str | os.PathLike | Mapping[str, str | os.PathLike] | Sequence,
    out_png: str | os.PathLike, grid: str | None = None,
) -> str:
    """Per-parcel held-out r of one grid point, one row of axial slices per subject.

    Parameters
    ----------
    parcels : DataFrame
        Per-parcel table (``tables/parcels.tsv``): ``grid, subject, parcel, r`` (and
        ``roi``). A parcel in several of the study's ROIs (``Vis`` and ``all``) is drawn
        once, with its mean r over them (the same r: penalties are chosen per parcel).
    atlas_path : path-like, mapping or sequence of path-like
        Labels image (label ``p + 1`` = parcel ``p``): one for every subject, a mapping
        subject -> image, or several images named ``{subject}.nii.gz`` (a subject's own
        atlas, as the Algonauts 2025 import copies them).
    out_png : path-like
        Figure (PNG, SVG beside it).
    grid : str, optional
        Grid point to draw; default the one with the highest mean r.

    Returns
    -------
    grid : str
        The grid point drawn.

    Raises
    ------
    InputError
        An empty parcel table or one without the columns ``grid, subject, parcel, r``; a
        ``grid`` not in it; a subject without an atlas; an unreadable atlas.
    MissingInputError
        An atlas file that does not exist.
    """
    from nilearn import plotting

    if parcels.empty:
        raise InputError("the parcel table is empty; nothing to draw")
    lacking = [c for c in ("grid", "subject", "parcel", "r") if c not in parcels.columns]
    if lacking:
        raise InputError(f"the parcel table: expected the columns grid, subject, parcel, r, "
                         f"found {list(parcels.columns)} (lacking {lacking})")
    parcels = parcels.groupby(["grid", "subject", "parcel"], as_index=False)["r"].mean()
    if grid is None:
        grid = str(parcels.groupby("grid")["r"].mean().idxmax())
    part = parcels[parcels["grid"] == grid]
    if part.empty:
        raise InputError(f"grid point {grid!r} is not in the parcel table")
    subjects = sorted(part["subject"].unique())
    paths = _atlas_paths(atlas_path, subjects)
    images = {p: _load_atlas(p) for p in dict.fromkeys(paths.values())}
    atlases = {s: images[p] for s, p in paths.items()}
    vmax = float(np.nanmax(np.abs(part["r"]))) or 1.0
    fig, axes = plt.subplots(len(subjects), 1, figsize=(10, 2.2 * len(subjects)), squeeze=False)
    for ax, subject in zip(axes[:, 0], subjects, strict=True):
        atlas = atlases[subject]
        rows = part[part["subject"] == subject]
        # parcels outside the study's ROIs stay blank (NaN -> 0)
        n_parcels = max(int(rows["parcel"].max()) + 1, int(np.max(atlas.dataobj)))
        values = np.full(n_parcels, np.nan)
        values[rows["parcel"].to_numpy()] = rows["r"].to_numpy()
        plotting.plot_stat_map(
            parcel_volume(atlas, values), display_mode="z", cut_coords=6, axes=ax,
            vmax=vmax, cmap="RdBu_r", colorbar=True, title=f"{subject}: r, {grid}",
            draw_cross=False, annotate=False,
        )
    save_figure(fig, out_png)
    return grid
