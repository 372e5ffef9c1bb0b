"""One pass over an fMRI dataset before any model is trained: is it usable for this study?"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from cortexscale.data.fmri import FmriDataset
from cortexscale.errors import InputError
from cortexscale.io.provenance import provenance
from cortexscale.io.video import video_info
from cortexscale.logs import Progress, get_logger

log = get_logger(__name__)


def check_dataset(
    root: str | os.PathLike, subjects: list[str], rois: list[str]
) -> dict[str, Any]:
    """Read every run of the study's subjects once and check it.

    Checks that every subject and ROI of the config is in the dataset, that every run's
    TR count matches its stimulus movie's duration within one TR, that every run
    has the shape the tables promise and holds finite values, that each subject has
    training and test runs, and that every stimulus movie exists. Constant parcels are
    counted (the encoding stage excludes them).

    Parameters
    ----------
    root : path-like
        The dataset folder (docs/formats.md).
    subjects, rois : list of str
        The config's ``subjects`` and ``rois``.

    Returns
    -------
    report : dict
        Per subject: runs, TRs, constant parcels; the dataset's TR and parcel count.

    Raises
    ------
    InputError, MissingInputError
        On the first problem found, naming the file and what was expected.
    """
    ds = FmriDataset(root)
    missing = [s for s in subjects if s not in ds.subjects]
    if missing:
        raise InputError(
            f"subject(s) {missing} of the config are not in {ds.root / 'runs.tsv'}; "
            f"available: {ds.subjects}"
        )
    for roi in rois:
        ds.roi_parcels(roi)
    durations = movie_durations({s: ds.stimulus_path(s) for s in ds.stimuli})
    study_runs = ds.runs[ds.runs["subject"].isin(subjects)].copy()
    study_runs["source"] = [f"{ds.root / (s + '.h5')}[{r!r}]"
                            for s, r in zip(study_runs["subject"], study_runs["run"], strict=True)]
    for note in check_run_durations(study_runs, ds.tr, durations, str(ds.root / "runs.tsv")):
        log.warning(f"{note} (trimmed)")
    report: dict[str, Any] = {"root": str(ds.root), "tr": ds.tr, "n_parcels": ds.n_parcels}
    per_subject = {}
    progress = Progress(log, len(subjects), "subject")
    for k, subject in enumerate(subjects):
        train, test = ds.train_runs(subject), ds.test_runs(subject)
        if len(train) < 2 or not test:
            raise InputError(
                f"{ds.root / 'runs.tsv'}: {subject} has {len(train)} train and {len(test)} "
                "test runs; expected at least 2 train runs (for cross-validation) and 1 test run"
            )
        constant = np.zeros(ds.n_parcels, dtype=bool)
        n_tr = 0
        for run in train + test:
            y = ds.responses(subject, run)
            constant |= y.std(axis=0) == 0
            n_tr += y.shape[0]
        per_subject[subject] = {
            "train_runs": len(train),
            "test_runs": len(test),
            "n_tr": n_tr,
            "constant_parcels": int(constant.sum()),
        }
        progress.update(k + 1, f"{subject}: {len(train)} train + {len(test)} test runs, "
                               f"{n_tr} TRs, {int(constant.sum())} constant parcel(s)")
    report["subjects"] = per_subject
    report["provenance"] = provenance()
    return report


def movie_durations(paths: dict[str, Any]) -> dict[str, float]:
    """Stimulus name -> movie duration in seconds (frame count / frame rate, by demuxing)."""
    out = {}
    for stimulus, path in paths.items():
        n_frames, fps = video_info(path)
        out[stimulus] = n_frames / fps
    return out


def check_run_durations(
    runs: Any, tr: float, durations: dict[str, float], where: str, tolerance_trs: float = 1.0
) -> list[str]:
    """Check every run's scan length against its stimulus duration.

    Parameters
    ----------
    runs : DataFrame
        Columns ``subject, run, stimulus, n_tr`` (``runs.tsv``), plus an optional
        ``source`` column naming the file/key of the run (used in messages).
    tr : float
        Repetition time in seconds.
    durations : dict of str to float
        Stimulus name -> movie duration in seconds.
    where : str
        The dataset (folder or file) named in messages.
    tolerance_trs : float, optional
        Largest allowed difference in TRs; smaller differences are reported, not errors
        (the features stage trims them).

    Returns
    -------
    notes : list of str
        One line per run whose length differs by less than the tolerance but by more
        than one frame.

    Raises
    ------
    ValueError
        Naming every run that is off by more than ``tolerance_trs`` TRs: the run (file
        and key), its scan length and its stimulus file and duration.
    """
    problems, notes = [], []
    for row in runs.itertuples(index=False):
        stim = str(row.stimulus)
        if stim not in durations:
            raise InputError(f"{where}: no stimulus movie for {stim!r} (run {row.run!r})")
        scan = int(row.n_tr) * float(tr)
        diff = durations[stim] - scan
        src = getattr(row, "source", f"{row.subject} run {row.run!r}")
        msg = (
            f"{src}: {int(row.n_tr)} TRs x {tr:g} s = {scan:.2f} s of scan, but stimulus "
            f"{stim!r} lasts {durations[stim]:.2f} s ({diff / tr:+.2f} TRs)"
        )
        if abs(diff) > tolerance_trs * tr + 1e-6:
            problems.append(msg)
        elif abs(diff) > 0.5 * tr:
            notes.append(msg)
    if problems:
        raise InputError(
            f"{where}: {len(problems)} run(s) differ from their stimulus by more than "
            f"{tolerance_trs:g} TR (expected |stimulus duration - n_TR x TR| <= "
            f"{tolerance_trs:g} TR):\n  " + "\n  ".join(problems)
        )
    return notes
