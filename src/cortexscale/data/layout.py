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

Bad runs: a run in which *every* parcel holds NaN/inf or is constant (an all-NaN or all-inf
run, a run of zeros, a TR that is NaN in every parcel) would exclude every parcel of the
subject through the rule above; it is an error naming the file, the run and what was found
instead, and nothing is written. So is a subject whose bad parcels, over all runs, leave no
parcel to score.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from cortexscale.data.fmri import PARCELS_COLUMNS, RUNS_COLUMNS
from cortexscale.errors import InputError
from cortexscale.io.atomic import prepare_outputs, write_json, write_tsv
from cortexscale.io.provenance import provenance
from cortexscale.logs import get_logger

__all__ = ["screen_parcels", "write_dataset"]

log = get_logger(__name__)


def _describe_run(y: np.ndarray) -> str:
    """What is wrong with a run whose every parcel is non-finite or constant."""
    n_nan, n_inf = int(np.isnan(y).sum()), int(np.isinf(y).sum())
    finite = np.isfinite(y)
    parts = [f"{n_nan} NaN and {n_inf} inf of its {y.size} values"]
    if n_nan + n_inf == y.size:
        return f"every value is NaN/inf ({parts[0]})"
    all_bad_trs = np.flatnonzero(~finite.any(axis=1))
    if all_bad_trs.size:
        parts.append(f"TR(s) {all_bad_trs[:10].tolist()} NaN/inf in every parcel")
    n_const = int((np.ptp(np.where(finite, y, 0.0), axis=0) == 0).sum())
    parts.append(f"{n_const} of {y.shape[1]} parcels constant")
    return ", ".join(parts)


def screen_parcels(
    runs: dict[str, np.ndarray], where: str, sources: dict[str, str] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """Find NaN/inf and constant parcels of one subject and zero them in every run.

    Parameters
    ----------
    runs : dict of str to ndarray, each (n_TR, n_parcels)
        One subject's runs.
    where : str
        The subject, named in the log line and errors.
    sources : dict of str to str, optional
        Run -> its file (and key), named in errors.

    Returns
    -------
    clean : dict of str to ndarray of float32, each (n_TR, n_parcels)
    bad : dict
        ``nonfinite`` and ``constant``: sorted parcel indices.

    Raises
    ------
    ValueError
        A run in which every parcel is NaN/inf or constant (naming its file, the run and
        what it holds), or a subject left without a usable parcel.
    """
    sources = sources or {}
    first = next(iter(runs.values()))
    n_parcels = first.shape[1]
    nonfinite = np.zeros(n_parcels, dtype=bool)
    constant = np.zeros(n_parcels, dtype=bool)
    for run, y in runs.items():
        finite = np.isfinite(y)
        run_nonfinite = ~finite.all(axis=0)
        run_constant = np.ptp(np.where(finite, y, 0.0), axis=0) == 0
        if (run_nonfinite | run_constant).all():
            raise InputError(
                f"{sources.get(run, where)}: run {run!r} of {where} is unusable: "
                f"{_describe_run(y)}; expected finite responses that vary in time in at "
                "least one parcel (screening it would exclude every parcel of the subject; "
                "remove the run or fix the file)"
            )
        nonfinite |= run_nonfinite
        constant |= run_constant
    constant &= ~nonfinite
    bad = nonfinite | constant
    if bad.all():
        raise InputError(
            f"{where}: every one of its {n_parcels} parcels holds NaN/inf or is constant in "
            f"some run ({int(nonfinite.sum())} NaN/inf, {int(constant.sum())} constant) over "
            f"runs {[sources.get(r, r) for r in runs]}; expected at least one usable parcel"
        )
    clean = {}
    for run, y in runs.items():
        y = np.asarray(y, dtype=np.float32).copy()
        y[:, bad] = 0.0
        clean[run] = y
    report = {"nonfinite": np.flatnonzero(nonfinite).tolist(),
              "constant": np.flatnonzero(constant).tolist()}
    if bad.any():
        log.warning(f"{where}: {int(nonfinite.sum())} parcel(s) with NaN/inf "
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
    files: dict[str, Path] | None = None,
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
    files : dict of str to Path, optional
        Further files copied into the dataset at these relative paths (an importer's
        ``atlas/{subject}.nii.gz``), moved in before ``runs.tsv``.
    """
    out_dir = Path(out_dir)
    files = files or {}
    prepare_outputs([out_dir, *(out_dir / n for n in ("runs.tsv", "parcels.tsv",
                                                       "import.json", *files))], "fmri-import")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        report = {**report, "bad_parcels": {}}
        prov = provenance(cfg)
        sources = ({(str(a), str(b)): str(c) for a, b, c in
                    zip(runs["subject"], runs["run"], runs["source"], strict=True)}
                   if "source" in runs.columns else {})
        for subject, arrays in subjects:
            clean, bad = screen_parcels(arrays, f"{subject}", {
                run: sources.get((subject, run), run) for run in arrays})
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
        for rel, src in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)
        # move in: everything but runs.tsv, then runs.tsv (the completion marker)
        (out_dir / "runs.tsv").unlink(missing_ok=True)  # a stale marker must go first
        (out_dir / "stimuli").mkdir(parents=True, exist_ok=True)
        for path in sorted((tmp / "stimuli").iterdir()):
            if (out_dir / "stimuli" / path.name).is_symlink():
                (out_dir / "stimuli" / path.name).unlink()
            os.replace(path, out_dir / "stimuli" / path.name)
        for rel in files:
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, out_dir / rel)
        for path in sorted(tmp.iterdir()):
            if path.is_file():
                os.replace(path, out_dir / path.name)
        write_tsv(out_dir / "runs.tsv", runs[list(RUNS_COLUMNS)])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
