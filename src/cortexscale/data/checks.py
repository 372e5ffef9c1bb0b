"""One pass over an fMRI dataset before any model is trained: is it usable for this study?"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from cortexscale.data.fmri import FmriDataset
from cortexscale.io.provenance import provenance


def check_dataset(
    root: str | os.PathLike, subjects: list[str], rois: list[str]
) -> dict[str, Any]:
    """Read every run of the study's subjects once and check it.

    Checks that every subject and ROI of the config is in the dataset, that every run
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
    KeyError, ValueError, FileNotFoundError
        On the first problem found, naming the file and what was expected.
    """
    ds = FmriDataset(root)
    missing = [s for s in subjects if s not in ds.subjects]
    if missing:
        raise KeyError(
            f"subject(s) {missing} of the config are not in {ds.root / 'runs.tsv'}; "
            f"available: {ds.subjects}"
        )
    for roi in rois:
        ds.roi_parcels(roi)
    for stimulus in ds.stimuli:
        ds.stimulus_path(stimulus)
    report: dict[str, Any] = {"root": str(ds.root), "tr": ds.tr, "n_parcels": ds.n_parcels}
    per_subject = {}
    for subject in subjects:
        train, test = ds.train_runs(subject), ds.test_runs(subject)
        if len(train) < 2 or not test:
            raise ValueError(
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
        print(
            f"fmri-check: {subject}: {len(train)} train + {len(test)} test runs, {n_tr} TRs, "
            f"{int(constant.sum())} constant parcel(s)",
            file=sys.stderr,
        )
    report["subjects"] = per_subject
    report["provenance"] = provenance()
    return report
