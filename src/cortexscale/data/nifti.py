"""NIfTI BOLD in a BIDS/fMRIPrep tree: import into the internal layout, and a synthetic copy.

Expected tree (fMRIPrep derivatives naming)::

    sub-01/func/sub-01_task-movie01_run-1_space-X_desc-preproc_bold.nii.gz   4-D BOLD
    sub-01/func/sub-01_task-movie01_run-1_desc-confounds_timeseries.tsv       confounds
    atlas/atlas_dseg.nii.gz     labels image (0 = background), same grid as the BOLD
    atlas/atlas_dseg.tsv        optional: columns index, name[, roi]
    stimuli/movie01.mkv         the movie of task ``movie01``

Each run is reduced to parcels with nilearn's ``NiftiLabelsMasker`` (mean over each atlas
label) or, with a mask image, to voxels with ``NiftiMasker``; confounds are chosen with
``nilearn.interfaces.fmriprep.load_confounds`` (strategy ``fmri.confounds``), regressed
out by the masker, and every time series is z-scored per run (``zscore_sample``).
The task names the stimulus; a task scanned in several runs is a test stimulus unless
``fmri.test_stimuli`` says otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cortexscale.data.checks import check_run_durations, movie_durations
from cortexscale.data.layout import write_dataset
from cortexscale.errors import ConfigError, InputError, MissingInputError

__all__ = ["BOLD_PATTERN", "DEFAULT_CONFOUNDS", "import_nifti", "reduce_run",
           "write_synthetic_nifti"]

DEFAULT_CONFOUNDS = ("motion", "wm_csf", "global_signal")
#: a BOLD file name: groups subject, task, run (optional)
BOLD_PATTERN = re.compile(r"^(sub-[A-Za-z0-9]+)_.*?task-([A-Za-z0-9]+)(?:_.*?run-(\d+))?.*_bold\.nii(\.gz)?$")
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
CONFOUND_COLUMNS = (*MOTION, "csf", "white_matter", "global_signal")


def _bold_files(root: Path, subject: str) -> list[Path]:
    func = root / subject / "func"
    files = sorted(p for p in func.glob("*_bold.nii*") if "desc-preproc" in p.name
                   or "_desc-" not in p.name)
    if not files:
        raise MissingInputError(
            f"no BOLD image for {subject} in {func}; expected "
            f"{subject}_task-NAME_run-N_[space-X_]desc-preproc_bold.nii.gz"
        )
    return files


def _labels(root: Path, atlas: str) -> tuple[Path, pd.DataFrame | None]:
    path = root / atlas if atlas else None
    if path is None:
        hits = sorted((root / "atlas").glob("*dseg.nii*")) if (root / "atlas").is_dir() else []
        if len(hits) != 1:
            raise MissingInputError(
                f"expected one labels image {root / 'atlas'}/*dseg.nii.gz (or fmri.atlas / "
                f"fmri.mask), found {len(hits)}"
            )
        path = hits[0]
    if not path.is_file():
        raise MissingInputError(f"atlas image {path} does not exist (fmri.atlas)")
    tsv = Path(re.sub(r"\.nii(\.gz)?$", ".tsv", str(path)))
    return path, (pd.read_csv(tsv, sep="\t") if tsv.is_file() else None)


def reduce_run(
    bold: Path, masker: Any, confounds: tuple[str, ...], tr: float
) -> np.ndarray:
    """Parcel (or voxel) time series of one run, confounds regressed out, z-scored.

    Parameters
    ----------
    bold : Path
        fMRIPrep-named 4-D image; its confounds TSV is found by ``load_confounds``.
    masker : nilearn masker
        A fitted ``NiftiLabelsMasker`` or ``NiftiMasker``.
    confounds : tuple of str
        ``load_confounds`` strategy; empty for none.
    tr : float

    Returns
    -------
    y : ndarray of float32, shape (n_TR, n_parcels)
    """
    from nilearn.interfaces.fmriprep import load_confounds

    conf, sample_mask = None, None
    if confounds:
        try:
            conf, sample_mask = load_confounds(str(bold), strategy=tuple(confounds),
                                               motion="basic", wm_csf="basic",
                                               global_signal="basic")
        except (ValueError, FileNotFoundError, KeyError) as err:
            raise InputError(f"{bold}: confounds for strategy {list(confounds)} could not be "
                             f"loaded (expected an fMRIPrep desc-confounds_timeseries.tsv "
                             f"beside it): {err}") from err
    if sample_mask is not None:
        raise InputError(f"{bold}: confound strategy {list(confounds)} censors volumes; "
                         "censoring is not supported (runs must stay aligned to the movie)")
    with warnings.catch_warnings():
        # nilearn 0.13 announces that confounds will be z-scored with the sample std; scaling
        # the confounds does not change what regressing them out removes, so neither matters
        warnings.filterwarnings("ignore", message=r"From release 0\.14\.0, confounds",
                                category=DeprecationWarning)
        y = masker.transform(str(bold), confounds=conf)
    return np.asarray(y, dtype=np.float32)


def import_nifti(
    root: str | os.PathLike, out_dir: str | os.PathLike, subjects: list[str], tr: float,
    atlas: str = "", mask: str = "", confounds: tuple[str, ...] = DEFAULT_CONFOUNDS,
    test_stimuli: list[str] | None = None, cfg: Any = None,
) -> None:
    """Reduce NIfTI BOLD runs to parcels and write the internal layout at ``out_dir``.

    Parameters
    ----------
    root : path-like
        The BIDS/fMRIPrep tree (see the module docstring).
    out_dir : path-like
    subjects : list of str
    tr : float
        Repetition time in seconds (checked against the images' header when they state it).
    atlas, mask : str, optional
        Labels image or binary mask, relative to ``root``; at most one. Default: the one
        ``atlas/*dseg.nii.gz``.
    confounds : tuple of str, optional
        ``load_confounds`` strategy; ``()`` to skip confound removal.
    test_stimuli : list of str, optional
    cfg : JSON-serialisable, optional

    Raises
    ------
    FileNotFoundError, ValueError
        Missing or unreadable images, an atlas on another grid, runs whose TR count differs
        from the movie by more than one TR. Nothing is written then.
    """
    import nibabel as nib
    from nilearn.maskers import NiftiLabelsMasker, NiftiMasker

    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"NIfTI dataset folder {root} does not exist (fmri.root)")
    if atlas and mask:
        raise ConfigError("give fmri.atlas or fmri.mask, not both")
    rows, stim_paths = [], {}
    for subject in subjects:
        for path in _bold_files(root, subject):
            m = BOLD_PATTERN.match(path.name)
            if m is None or m.group(1) != subject:
                raise InputError(f"{path}: name does not match {subject}_task-NAME[_run-N]_..."
                                 "_bold.nii.gz")
            try:
                shape = nib.load(path).shape
            except Exception as err:  # nibabel raises many types for damaged files
                raise InputError(f"{path}: not a readable NIfTI image: {err}") from err
            if len(shape) != 4:
                raise InputError(f"{path}: expected a 4-D BOLD image, found shape {shape}")
            task, run = m.group(2), m.group(3)
            movie = root / "stimuli" / f"{task}.mkv"
            if not movie.is_file():
                raise MissingInputError(f"{path}: stimulus movie {movie} of task {task!r} "
                                        "does not exist")
            stim_paths[task] = movie
            key = f"task-{task}" + (f"_run-{int(run)}" if run else "")
            rows.append((subject, key, task, shape[3], str(path)))
    runs = pd.DataFrame(rows, columns=["subject", "run", "stimulus", "n_tr", "source"])
    test = set(test_stimuli or [])
    if not test:
        counts = runs.groupby(["subject", "stimulus"]).size()
        test = {s for (_, s), n in counts.items() if n > 1}
    if not test or not test <= set(runs["stimulus"]):
        raise ConfigError(f"{root}: test stimuli {sorted(test)} not among the tasks "
                         f"{sorted(set(runs['stimulus']))}; set fmri.test_stimuli")
    runs["split"] = np.where(runs["stimulus"].isin(test), "test", "train")
    notes = check_run_durations(runs, tr, movie_durations(stim_paths), str(root))
    common = {"standardize": "zscore_sample", "t_r": tr}
    if mask:
        mask_path = root / mask
        if not mask_path.is_file():
            raise MissingInputError(f"mask image {mask_path} does not exist (fmri.mask)")
        masker = NiftiMasker(mask_img=str(mask_path), **common).fit()
        n = int(np.count_nonzero(np.asarray(nib.load(mask_path).dataobj)))
        parcels = pd.DataFrame({"parcel": np.arange(n), "roi": "all",
                                "label": [f"voxel{i:06d}" for i in range(n)]})
    else:
        labels_path, table = _labels(root, atlas)
        img = nib.load(labels_path)
        values = np.unique(np.asarray(img.dataobj).astype(np.int64))
        values = values[values != 0]
        masker = NiftiLabelsMasker(labels_img=str(labels_path), **common).fit()
        parcels = _atlas_parcels(values, table, labels_path)
    ref = nib.load(runs["source"].iloc[0])
    grid = masker.mask_img_ if mask else nib.load(labels_path)
    if ref.shape[:3] != grid.shape[:3] or not np.allclose(ref.affine, grid.affine, atol=1e-3):
        raise InputError(f"{runs['source'].iloc[0]}: grid {ref.shape[:3]} does not match the "
                         f"atlas/mask grid {grid.shape[:3]} (resample the atlas first)")

    def arrays():
        for subject in subjects:
            out = {}
            for row in runs[runs["subject"] == subject].itertuples(index=False):
                y = reduce_run(Path(row.source), masker, tuple(confounds), tr)
                if y.shape != (row.n_tr, len(parcels)):
                    raise InputError(f"{row.source}: reduced to {y.shape}; expected "
                                     f"({row.n_tr}, {len(parcels)})")
                out[row.run] = y
            yield subject, out

    write_dataset(out_dir, runs, parcels, tr, arrays(), stim_paths,
                  {"source": "nifti", "root": str(root), "confounds": list(confounds),
                   "duration_notes": notes}, cfg=cfg)


def _atlas_parcels(values: np.ndarray, table: pd.DataFrame | None, path: Path) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame({"parcel": np.arange(len(values)), "roi": "all",
                             "label": [f"label{v}" for v in values]})
    if "index" not in table.columns or "name" not in table.columns:
        raise InputError(f"{path.with_suffix('')}.tsv: expected columns index, name[, roi], "
                         f"found {list(table.columns)}")
    table = table.set_index("index")
    missing = [int(v) for v in values if v not in table.index]
    if missing:
        raise InputError(f"atlas table of {path}: labels {missing[:10]} have no row")
    roi = table["roi"] if "roi" in table.columns else pd.Series("all", index=table.index)
    return pd.DataFrame({"parcel": np.arange(len(values)),
                         "roi": [str(roi[v]) for v in values],
                         "label": [str(table.loc[v, "name"]) for v in values]})


def write_synthetic_nifti(
    out_dir: str | os.PathLike, fmri_cfg: dict[str, Any], subjects: list[str],
    rois: list[str], seed: int, fps: float, height: int, width: int,
    voxels_per_parcel: int = 4, confound_amplitude: float = 2.0,
) -> None:
    """The synthetic world as NIfTI BOLD with an atlas and fMRIPrep-style confounds.

    The parcel responses of :func:`cortexscale.data.synthetic.write_synthetic_fmri`
    (signal + AR(1) noise) are spread over ``voxels_per_parcel`` voxels each (a row of a
    ``(n_parcels + 1, voxels_per_parcel, 1)`` grid; the last row is background, label 0),
    with voxel noise of s.d. 0.3, a baseline of 100 and nine confound regressors mixed in:
    six motion traces, CSF, white matter and a global signal, each z-scored AR(1) noise
    (coefficient 0.5)
    with per-parcel loadings of s.d. ``confound_amplitude`` (plus small voxel jitter).
    The same regressors are written to ``..._desc-confounds_timeseries.tsv``, so regressing
    them out recovers the parcel responses and skipping it does not.

    Writes ``sub-XX/func/sub-XX_task-movieNN_run-R_space-synthetic_desc-preproc_bold.nii.gz``
    and the confounds TSV, ``atlas/atlas_dseg.nii.gz`` + ``atlas_dseg.tsv`` (index, name,
    roi), ``stimuli/movieNN.mkv``, ``truth/{subject}.h5`` and ``truth/parcels/{subject}.h5``
    (the parcel responses before the voxel model, keyed by the internal run ids).
    """
    import nibabel as nib
    from scipy.signal import lfilter

    from cortexscale.data.fmri import FmriDataset
    from cortexscale.data.synthetic import write_synthetic_fmri

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    v = int(voxels_per_parcel)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        write_synthetic_fmri(tmp, fmri_cfg, subjects, rois, seed, fps, height, width)
        ds = FmriDataset(tmp)
        n_p = ds.n_parcels
        affine = np.diag([3.0, 3.0, 3.0, 1.0])
        labels = np.zeros((n_p + 1, v, 1), dtype=np.int16)
        labels[:n_p] = (np.arange(n_p) + 1)[:, None, None]
        (out_dir / "atlas").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(labels, affine), out_dir / "atlas" / "atlas_dseg.nii.gz")
        pd.DataFrame({"index": np.arange(1, n_p + 1), "name": ds.parcels["label"],
                      "roi": ds.parcels["roi"]}).to_csv(out_dir / "atlas" / "atlas_dseg.tsv",
                                                        sep="\t", index=False)
        (out_dir / "stimuli").mkdir(exist_ok=True)
        for stim in ds.stimuli:
            shutil.copyfile(ds.stimulus_path(stim), out_dir / "stimuli" / f"{stim}.mkv")
        shutil.copytree(Path(tmp) / "truth", out_dir / "truth", dirs_exist_ok=True)
        (out_dir / "truth" / "parcels").mkdir(exist_ok=True)
        for k, subject in enumerate(subjects):
            rng = np.random.default_rng([seed, 7, k])
            func = out_dir / subject / "func"
            func.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / f"{subject}.h5", out_dir / "truth" / "parcels" /
                            f"{subject}.h5")
            load = rng.standard_normal((len(CONFOUND_COLUMNS), n_p)) * confound_amplitude
            for run in ds.runs.loc[ds.runs["subject"] == subject].itertuples(index=False):
                y = ds.responses(subject, run.run).astype(np.float64)  # (n_tr, n_p)
                n_tr = y.shape[0]
                c = lfilter([1.0], [1.0, -0.5], rng.standard_normal((n_tr, len(CONFOUND_COLUMNS))),
                            axis=0)  # AR(1), coefficient 0.5
                c = (c - c.mean(0)) / c.std(0)
                jitter = 0.1 * rng.standard_normal((len(CONFOUND_COLUMNS), n_p, v))
                vox = (y[:, :, None] + 0.3 * rng.standard_normal((n_tr, n_p, v))
                       + np.einsum("tc,cpv->tpv", c, load[:, :, None] + jitter))
                data = np.zeros((n_p + 1, v, 1, n_tr), dtype=np.float32)
                data[:n_p, :, 0, :] = (100.0 + vox).transpose(1, 2, 0)
                ses = int(run.run.split("_")[0][4:])
                stem = f"{subject}_task-{run.stimulus}_run-{ses}"
                img = nib.Nifti1Image(data, affine)
                img.header.set_xyzt_units("mm", "sec")
                img.header["pixdim"][4] = ds.tr
                nib.save(img, func / f"{stem}_space-synthetic_desc-preproc_bold.nii.gz")
                conf = pd.DataFrame(c, columns=list(CONFOUND_COLUMNS))
                conf.to_csv(func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t",
                            index=False)
                (func / f"{stem}_desc-confounds_timeseries.json").write_text(
                    json.dumps({"synthetic": True}))
