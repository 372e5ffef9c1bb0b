import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cortexscale.data.atlas import synthetic_atlas, write_atlas
from cortexscale.report.brainmaps import parcel_volume, plot_brain_maps

ROIS = ["early", "motion", "object", "scene"]


@pytest.fixture(scope="module")
def parcels():
    return pd.DataFrame({"parcel": np.arange(16), "roi": np.repeat(ROIS, 4)})


@pytest.fixture(scope="module")
def atlas(parcels):
    return synthetic_atlas(parcels, resolution=4, seed=0)


def test_atlas_labels_every_parcel_in_roi_order(parcels, atlas):
    labels = np.asarray(atlas.get_fdata(), dtype=int)
    assert set(np.unique(labels)) == set(range(17))  # background + 16 parcels
    # ROIs run from posterior to anterior in their listed order
    ys = []
    for roi in ROIS:
        ids = parcels.loc[parcels["roi"] == roi, "parcel"].to_numpy() + 1
        vox = np.argwhere(np.isin(labels, ids))
        ys.append(nib.affines.apply_affine(atlas.affine, vox)[:, 1].mean())
    assert ys == sorted(ys)


def test_atlas_is_deterministic_and_saves(tmp_path, parcels, atlas):
    again = synthetic_atlas(parcels, resolution=4, seed=0)
    assert np.array_equal(atlas.get_fdata(), again.get_fdata())
    write_atlas(tmp_path / "atlas.nii.gz", atlas)
    assert np.array_equal(nib.load(tmp_path / "atlas.nii.gz").get_fdata(), atlas.get_fdata())
    assert [p.name for p in tmp_path.iterdir()] == ["atlas.nii.gz"]


def test_parcel_volume_paints_values(atlas):
    values = np.arange(16, dtype=float)
    values[3] = np.nan
    vol = parcel_volume(atlas, values).get_fdata()
    labels = np.asarray(atlas.get_fdata(), dtype=int)
    assert np.all(vol[labels == 5] == 4.0) and np.all(vol[labels == 4] == 0.0)
    assert np.all(vol[labels == 0] == 0.0)
    with pytest.raises(ValueError, match="atlas has label 16 but only 8 parcel values"):
        parcel_volume(atlas, values[:8])


def test_plot_brain_maps_picks_the_best_grid_point(tmp_path, atlas, rng, saved):
    write_atlas(tmp_path / "atlas.nii.gz", atlas)
    rows = [
        {"grid": g, "subject": s, "parcel": p, "r": rng.normal(mu, 0.05)}
        for g, mu in (("d1_h8_l1_a1_fp32_s0", 0.1), ("d2_h8_l1_a1_fp32_s0", 0.3))
        for s in ("sub-01", "sub-02") for p in range(16)
    ]
    grid = plot_brain_maps(pd.DataFrame(rows), tmp_path / "atlas.nii.gz", tmp_path / "m.png")
    assert grid == "d2_h8_l1_a1_fp32_s0"
    # a valid PNG and SVG; what the slices show is checked in tests/report/test_figures.py
    assert saved[tmp_path / "m.png"].axes
    with pytest.raises(ValueError, match="not in the parcel table"):
        plot_brain_maps(pd.DataFrame(rows), tmp_path / "atlas.nii.gz", tmp_path / "x.png",
                        grid="d9_h8_l1_a1_fp32_s0")
