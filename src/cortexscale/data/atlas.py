"""A labels atlas for the synthetic brain, in MNI space, so its results can be drawn on a brain.

The synthetic parcels have no anatomy of their own; this gives them one that a reader can
recognise: the brain mask of the MNI152 template (shipped with nilearn, so nothing is
downloaded) is cut into one slab per ROI along the posterior-to-anterior axis, in the order
the ROIs are listed (so ``early`` lies in the occipital pole, as early visual cortex does),
and each slab into that ROI's parcels by k-means on the voxel coordinates. Label ``p + 1``
in the image is parcel ``p`` (column ``p`` of the responses); 0 is background.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from cortexscale.errors import ConfigError
from cortexscale.io.atomic import atomic_path


def synthetic_atlas(parcels: pd.DataFrame, resolution: int = 4, seed: int = 0) -> nib.Nifti1Image:
    """Build the labels image of a synthetic parcel table.

    Parameters
    ----------
    parcels : DataFrame
        ``parcels.tsv``: columns ``parcel`` (0..n-1) and ``roi``; each ROI's parcels
        contiguous, ROIs in their listed order.
    resolution : int
        Voxel size in mm of the MNI152 mask used (nilearn ships 1, 2 and others by
        resampling).
    seed : int
        Seed of the k-means split.

    Returns
    -------
    atlas : Nifti1Image, int16, shape of the MNI152 mask at ``resolution``
    """
    from nilearn.datasets import load_mni152_brain_mask

    mask = load_mni152_brain_mask(resolution=resolution)
    inside = np.argwhere(mask.get_fdata() > 0)  # (n_vox, 3) voxel indices
    world = nib.affines.apply_affine(mask.affine, inside)  # (n_vox, 3) mm
    rois = list(dict.fromkeys(parcels["roi"]))
    # slabs along y (posterior -> anterior), as many voxels in each as the ROI has parcels
    order = np.argsort(world[:, 1], kind="stable")
    sizes = parcels.groupby("roi", sort=False).size().reindex(rois).to_numpy()
    bounds = np.concatenate([[0], np.cumsum(sizes)]) * len(order) // sizes.sum()
    labels = np.zeros(mask.shape, dtype=np.int16)
    for i, roi in enumerate(rois):
        vox = order[bounds[i]:bounds[i + 1]]
        ids = parcels.loc[parcels["roi"] == roi, "parcel"].to_numpy()
        if ids.size > vox.size:
            raise ConfigError(
                f"ROI {roi!r} has {ids.size} parcels but its slab only {vox.size} voxels at "
                f"{resolution} mm; use a finer resolution or fewer parcels"
            )
        km = KMeans(n_clusters=ids.size, n_init=1, random_state=seed).fit(world[vox])
        labels[tuple(inside[vox].T)] = ids[km.labels_] + 1
    return nib.Nifti1Image(labels, mask.affine)


def write_atlas(path: str | os.PathLike, atlas: nib.Nifti1Image) -> None:
    """Save a labels image as NIfTI (gzip by the ``.nii.gz`` suffix), atomically."""
    with atomic_path(path, suffix=".tmp.nii.gz") as tmp:
        nib.save(atlas, tmp)
