import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from cortexscale.cli import main
from cortexscale.data.atlas import synthetic_atlas, write_atlas
from cortexscale.errors import InputError
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
    with pytest.raises(InputError, match="not in the parcel table"):
        plot_brain_maps(pd.DataFrame(rows), tmp_path / "atlas.nii.gz", tmp_path / "x.png",
                        grid="d9_h8_l1_a1_fp32_s0")
    with pytest.raises(InputError, match=r"no atlas for subject\(s\) \['sub-02'\]"):
        plot_brain_maps(pd.DataFrame(rows), {"sub-01": tmp_path / "atlas.nii.gz"},
                        tmp_path / "x.png")


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture
def parcels_tsv(tmp_path, atlas):
    write_atlas(tmp_path / "atlas.nii.gz", atlas)
    rows = pd.DataFrame({"grid": "d1_h8_l1_a1_fp32_s0", "subject": "sub-01",
                         "parcel": np.arange(16), "r": np.linspace(-0.2, 0.5, 16)})
    rows.to_csv(tmp_path / "parcels.tsv", sep="\t", index=False)
    return tmp_path / "parcels.tsv"


def brain_maps_cli(capsys, parcels, atlas, out, *extra) -> tuple[int, str]:
    """Exit code and the one error line of ``cortexscale brain-maps`` (no traceback)."""
    capsys.readouterr()
    code = main(["brain-maps", "--parcels", str(parcels), "--atlas", *map(str, atlas),
                 "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert code != 2 or len(lines) == 1, err
    return code, lines[0] if lines else ""


def test_cli_draws_the_map(capsys, tmp_path, parcels_tsv, saved):
    code, _ = brain_maps_cli(capsys, parcels_tsv, [tmp_path / "atlas.nii.gz"],
                             tmp_path / "m.png")
    assert code == 0 and saved[tmp_path / "m.png"].axes


@pytest.mark.parametrize(("case", "found"), [
    ("grid", "grid point 'd9_h8_l1_a1_fp32_s0' is not in the parcel table"),
    ("subject", "no atlas for subject(s) ['sub-01'] of the parcel table"),
    ("missing atlas", "nowhere.nii.gz does not exist; expected a labels image"),
    ("unreadable atlas", "bad.nii.gz: not a readable NIfTI labels image"),
    ("truncated atlas", "cut.nii.gz: not a readable NIfTI labels image"),
    ("columns", "the parcel table: expected the columns grid, subject, parcel, r, found"),
    ("empty", "the parcel table is empty; nothing to draw"),
    ("missing table", "the per-parcel table"),
    ("zero-byte table", "expected the per-parcel table (a tab-separated table), found"),
])
def test_cli_user_errors_are_one_line(capsys, tmp_path, parcels_tsv, saved, case, found):
    atlas, extra = [tmp_path / "atlas.nii.gz"], []
    if case == "grid":
        extra = ["--grid", "d9_h8_l1_a1_fp32_s0"]
    elif case == "subject":
        shutil.copy(atlas[0], tmp_path / "sub-02.nii.gz")
        shutil.copy(atlas[0], tmp_path / "sub-03.nii.gz")
        atlas = [tmp_path / "sub-02.nii.gz", tmp_path / "sub-03.nii.gz"]
    elif case == "missing atlas":
        atlas = [tmp_path / "nowhere.nii.gz"]
    elif case == "unreadable atlas":
        (tmp_path / "bad.nii.gz").write_bytes(b"not an image")
        atlas = [tmp_path / "bad.nii.gz"]
    elif case == "truncated atlas":
        data = atlas[0].read_bytes()
        (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
        atlas = [tmp_path / "cut.nii.gz"]
    elif case == "columns":
        pd.read_csv(parcels_tsv, sep="\t").rename(columns={"r": "score"}).to_csv(
            parcels_tsv, sep="\t", index=False)
    elif case == "missing table":
        parcels_tsv.unlink()
    elif case == "zero-byte table":
        parcels_tsv.write_bytes(b"")
    else:
        pd.read_csv(parcels_tsv, sep="\t").iloc[:0].to_csv(parcels_tsv, sep="\t", index=False)
    if case == "missing table":
        found = f"the per-parcel table {parcels_tsv} does not exist"
    code, line = brain_maps_cli(capsys, parcels_tsv, atlas, tmp_path / "x.png", *extra)
    assert code == 2 and found in line, line
    assert len(saved) == 0 and not (tmp_path / "x.png").exists()
