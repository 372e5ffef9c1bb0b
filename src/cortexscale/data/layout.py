"""Writing the workflow's internal fMRI layout (``docs/formats.md``) from imported data.

Importers (:mod:`cortexscale.data.algonauts2025`, :mod:`cortexscale.data.nifti`) read and
validate a user's dataset, then call :func:`write_dataset`, which builds the whole folder
under a temporary name beside the target and moves the files in only when everything was
written (``runs.tsv`` last, the completion marker), so a failed import leaves no dataset
that looks complete.

Bad parcels: a parcel that holds NaN/inf in any run, or is constant in any run, is set to
0 in every run of that subject and listed in the import report (``import.json``) and on
stderr. The encoding stage then finds it constant, gives it ``r = NaN`` and counts it in
``n_excluded``: reported and excluded, never silently scored.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from cortexscale.data.fmri import PARCELS_COLUMNS, RUNS_COLUMNS
from cortexscale.io.atomic import write_json, write_tsv
from cortexscale.io.provenance import provenance

__all__ = ["screen_parcels", "write_dataset"]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def screen_parcels(
    runs: dict[str, np.ndarray], where: str
) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Find NaN/inf and constant parcels of one subject and zero them in every run.

    Parameters
    ----------
    runs : dict of str to ndarray, each (n_TR, n_parcels)
        One subject's runs.
    where : str
        The subject's source (file), named in the log line.

    Returns
    -------
    clean : dict of str to ndarray of float32, each (n_TR, n_parcels)
    bad : dict
        ``nonfinite`` and ``constant``: sorted parcel indices.
    """
    first = next(iter(runs.values()))
    n_parcels = first.shape[1]
    nonfinite = np.zeros(n_parcels, dtype=bool)
    constant = np.zeros(n_parcels, dtype=bool)
    for y in runs.values():
        finite = np.isfinite(y)
        nonfinite |= ~finite.all(axis=0)
        yz = np.where(finite, y, 0.0)
        constant |= np.ptp(yz, axis=0) == 0
    constant &= ~nonfinite
    bad = nonfinite | constant
    clean = {}
    for run, y in runs.items():
        y = np.asarray(y, dtype=np.float32).copy()
        y[:, bad] = 0.0
        clean[run] = y
    report = {"nonfinite": np.flatnonzero(nonfinite).tolist(),
              "constant": np.flatnonzero(constant).tolist()}
    if bad.any():
        _log(f"import: {where}: {int(nonfinite.sum())} parcel(s) with NaN/inf "
             f"{report['nonfinite'][:20]} and {int(constant.sum())} constant "
             f"{report['constant'][:20]}: set to 0, the encoding stage excludes them")
    return clean, report


def write_dataset(
    out_dir: str | os.PathLike,
    runs: pd.DataFrame,
    parcels: pd.DataFrame,
    tr: float,
    subjects: Iterable[tuple[str, dict[str, np.ndarray]]],
    stimuli: dict[str, Path],
    report: dict[str, Any],
    cfg: Any = None,
    link_stimuli: bool = True,
) -> None:
    """Write a dataset in the internal layout, all or nothing.

    Parameters
    ----------
    out_dir : path-like
        Target folder (created; files already there with the same names are replaced).
    runs : DataFrame
        ``runs.tsv`` rows: ``subject, run, stimulus, n_tr, split``.
    parcels : DataFrame
        ``parcels.tsv`` rows: ``parcel, roi, label``.
    tr : float
        Repetition time in seconds (root attr of every ``{subject}.h5``).
    subjects : iterable of (subject, {run: ndarray (n_TR, n_parcels)})
        Consumed one subject at a time; bad parcels are screened (:func:`screen_parcels`).
    stimuli : dict of str to Path
        Stimulus name -> movie file; linked (or copied) as ``stimuli/{name}{suffix}``.
    report : dict
        Written to ``import.json`` with the bad-parcel lists added per subject.
    cfg : JSON-serialisable, optional
        Recorded (hashed) in the provenance.
    link_stimuli : bool, optional
        Symbolic links to the movies (default) instead of copies.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        report = {**report, "bad_parcels": {}}
        prov = provenance(cfg)
        for subject, arrays in subjects:
            clean, bad = screen_parcels(arrays, f"{subject}")
            report["bad_parcels"][subject] = bad
            with h5py.File(tmp / f"{subject}.h5", "w") as f:
                for run, y in clean.items():
                    f.create_dataset(run, data=y)
                f.attrs.update({"tr": float(tr), "subject": subject, **prov})
        (tmp / "stimuli").mkdir()
        for name, src in stimuli.items():
            dst = tmp / "stimuli" / f"{name}.mkv"
            if link_stimuli:
                os.symlink(Path(src).resolve(), dst)
            else:
                shutil.copyfile(src, dst)
        write_tsv(tmp / "parcels.tsv", parcels[list(PARCELS_COLUMNS)])
        write_json(tmp / "import.json", {**report, "provenance": prov})
        # move in: everything but runs.tsv, then runs.tsv (the completion marker)
        (out_dir / "runs.tsv").unlink(missing_ok=True)  # a stale marker must go first
        (out_dir / "stimuli").mkdir(parents=True, exist_ok=True)
        for path in sorted((tmp / "stimuli").iterdir()):
            if (out_dir / "stimuli" / path.name).is_symlink():
                (out_dir / "stimuli" / path.name).unlink()
            os.replace(path, out_dir / "stimuli" / path.name)
        for path in sorted(tmp.iterdir()):
            if path.is_file():
                os.replace(path, out_dir / path.name)
        write_tsv(out_dir / "runs.tsv", runs[list(RUNS_COLUMNS)])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
