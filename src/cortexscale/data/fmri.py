"""Reader of the Algonauts 2025-like fMRI layout (see ``docs/formats.md``).

The folder holds::

    runs.tsv                 subject, run, stimulus, n_tr, split (train | test)
    parcels.tsv              parcel, roi, label
    {subject}.h5             one float32 dataset (n_TR, n_parcels) per run; attrs tr, subject
    stimuli/{stimulus}.mkv   the movie of each stimulus

Every accessor validates what it reads and raises an error that names the file, the
key and what was expected.

ROI names (:func:`roi_names`, :func:`roi_mask`): a study may name a ``roi`` value of
``parcels.tsv``; a group ``G`` of the values named ``G_<part>`` (``Vis`` for ``Vis_LH`` and
``Vis_RH``); and ``all``, every parcel. A name that is itself a ``roi`` value means just
those parcels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from cortexscale.errors import InputError, MissingInputError
from cortexscale.io.hdf5 import open_h5
from cortexscale.io.video import read_video, resample_frames

__all__ = ["ALL_PARCELS", "FmriDataset", "PARCELS_COLUMNS", "RUNS_COLUMNS", "open_h5",
           "roi_mask", "roi_names"]

RUNS_COLUMNS = ("subject", "run", "stimulus", "n_tr", "split")
PARCELS_COLUMNS = ("parcel", "roi", "label")
#: the ROI of every parcel, whatever parcels.tsv assigns
ALL_PARCELS = "all"
SPLITS = ("train", "test")
_LAYOUT = (
    "runs.tsv (subject, run, stimulus, n_tr, split), parcels.tsv (parcel, roi, label), "
    "{subject}.h5 (one (n_TR, n_parcels) dataset per run) and stimuli/{stimulus}.mkv"
)


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingInputError(
            f"{what} {path} does not exist; an fMRI dataset folder must contain {_LAYOUT}"
        )
    return path


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """Read a TSV and check it has ``columns`` (extra columns are kept)."""
    df = pd.read_csv(path, sep="\t", dtype={"subject": str, "run": str, "stimulus": str})
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{path} lacks column(s) {missing}; expected columns {list(columns)}, "
            f"found {list(df.columns)}"
        )
    return df


def roi_names(values: Sequence[str]) -> list[str]:
    """Every ROI name a study may use, given the ``roi`` column of ``parcels.tsv``.

    Parameters
    ----------
    values : sequence of str, one per parcel
        The ``roi`` column.

    Returns
    -------
    names : list of str
        The distinct values in order of first appearance, then each group ``G`` of values
        named ``G_<part>`` (every prefix ending before an ``_``) that is not a value itself,
        then :data:`ALL_PARCELS` (unless it is a value).
    """
    stored = list(dict.fromkeys(str(v) for v in values))
    groups = [v[:i] for v in stored for i, c in enumerate(v) if c == "_" and i > 0]
    extra = [g for g in dict.fromkeys(groups) if g not in stored]
    return stored + extra + ([] if ALL_PARCELS in stored else [ALL_PARCELS])


def roi_mask(values: Sequence[str], roi: str) -> np.ndarray:
    """Which parcels an ROI name selects (see :func:`roi_names`).

    Returns
    -------
    mask : ndarray of bool, shape (n_parcels,)
        All False when the name selects nothing.
    """
    values = np.asarray([str(v) for v in values], dtype=object)
    exact = values == roi
    if exact.any():
        return exact
    if roi == ALL_PARCELS:
        return np.ones(values.shape, dtype=bool)
    return np.array([v.startswith(f"{roi}_") for v in values], dtype=bool)


def _validate_runs(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    if df.empty:
        raise InputError(f"{path} has no rows; expected one row per run")
    if df[list(RUNS_COLUMNS)].isna().any().any():
        raise InputError(f"{path} has empty cells in columns {list(RUNS_COLUMNS)}")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise InputError(f"{path}: column 'split' must be one of {list(SPLITS)}, found {bad}")
    n_tr = pd.to_numeric(df["n_tr"], errors="coerce")
    if n_tr.isna().any() or (n_tr < 1).any() or (n_tr != n_tr.round()).any():
        raise InputError(f"{path}: column 'n_tr' must hold positive integers")
    dup = df.duplicated(["subject", "run"])
    if dup.any():
        first = df.loc[dup, ["subject", "run"]].iloc[0].tolist()
        raise InputError(f"{path}: (subject, run) pairs must be unique, {first} repeats")
    df = df.copy()
    df["n_tr"] = n_tr.astype(np.int64)
    return df.reset_index(drop=True)


def _validate_parcels(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    expected = np.arange(len(df))
    if len(df) == 0 or not np.array_equal(df["parcel"].to_numpy(), expected):
        raise InputError(
            f"{path}: column 'parcel' must be 0, 1, ..., n_parcels - 1 in order "
            f"(n_parcels = {len(df)})"
        )
    df = df.copy()
    df["parcel"] = df["parcel"].astype(np.int64)
    df["roi"] = df["roi"].astype(str)
    return df


class FmriDataset:
    """An fMRI dataset folder in the Algonauts 2025-like layout.

    Parameters
    ----------
    root : path-like
        The dataset folder (e.g. ``results/data/fmri``).

    Attributes
    ----------
    root : Path
        The folder.
    runs : DataFrame
        ``runs.tsv``: columns ``subject, run, stimulus, n_tr, split``.
    parcels : DataFrame
        ``parcels.tsv``: columns ``parcel, roi, label``.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingInputError(
                f"fMRI dataset folder {self.root} does not exist; it must contain {_LAYOUT}"
            )
        runs_path = _require_file(self.root / "runs.tsv", "run table")
        parcels_path = _require_file(self.root / "parcels.tsv", "parcel table")
        self.runs = _validate_runs(_read_table(runs_path, RUNS_COLUMNS), runs_path)
        self.parcels = _validate_parcels(
            _read_table(parcels_path, PARCELS_COLUMNS), parcels_path
        )

    def __repr__(self) -> str:
        return (
            f"FmriDataset({str(self.root)!r}: {len(self.subjects)} subjects, "
            f"{len(self.runs)} runs, {self.n_parcels} parcels)"
        )

    # ------------------------------------------------------------------ tables
    @property
    def subjects(self) -> list[str]:
        """Subject ids in the order they first appear in ``runs.tsv``."""
        return list(dict.fromkeys(self.runs["subject"]))

    @property
    def stimuli(self) -> list[str]:
        """Stimulus names in the order they first appear in ``runs.tsv``."""
        return list(dict.fromkeys(self.runs["stimulus"]))

    @property
    def n_parcels(self) -> int:
        """Number of parcels (columns of every response array)."""
        return len(self.parcels)

    @property
    def rois(self) -> list[str]:
        """ROI names in the order they first appear in ``parcels.tsv``."""
        return list(dict.fromkeys(self.parcels["roi"]))

    @property
    def roi_names(self) -> list[str]:
        """Every ROI name a study may use with this dataset (:func:`roi_names`)."""
        return roi_names(self.parcels["roi"])

    def subject_path(self, subject: str) -> Path:
        """Path of ``{subject}.h5`` (checked to exist)."""
        self._check_subject(subject)
        return _require_file(self.root / f"{subject}.h5", f"response file of {subject}")

    def stimulus_path(self, stimulus: str) -> Path:
        """Path of ``stimuli/{stimulus}.mkv`` (checked to exist)."""
        if stimulus not in self.stimuli:
            raise InputError(
                f"stimulus {stimulus!r} is not in {self.root / 'runs.tsv'}; "
                f"available: {self.stimuli}"
            )
        return _require_file(self.root / "stimuli" / f"{stimulus}.mkv", "stimulus movie")

    @cached_property
    def tr(self) -> float:
        """Repetition time in seconds (root attr ``tr``; must agree across subjects)."""
        values = {}
        for subject in self.subjects:
            path = self.subject_path(subject)
            with open_h5(path, "one (n_TR, n_parcels) dataset per run") as f:
                if "tr" not in f.attrs:
                    raise InputError(f"{path} lacks the root attribute 'tr' (seconds)")
                values[subject] = float(f.attrs["tr"])
        distinct = sorted(set(values.values()))
        if len(distinct) > 1:
            raise InputError(
                f"subjects of {self.root} disagree on the TR: {values}; expected one value"
            )
        tr = distinct[0]
        if not np.isfinite(tr) or tr <= 0:
            raise InputError(f"TR must be positive, {self.root} states {tr}")
        return tr

    def _check_subject(self, subject: str) -> None:
        if subject not in self.subjects:
            raise InputError(
                f"subject {subject!r} is not in {self.root / 'runs.tsv'}; "
                f"available: {self.subjects}"
            )

    def _run_row(self, subject: str, run: str) -> pd.Series:
        self._check_subject(subject)
        rows = self.runs[(self.runs["subject"] == subject) & (self.runs["run"] == run)]
        if rows.empty:
            known = self.runs.loc[self.runs["subject"] == subject, "run"].tolist()
            raise InputError(
                f"run {run!r} of {subject} is not in {self.root / 'runs.tsv'}; "
                f"available: {known}"
            )
        return rows.iloc[0]

    def _split_runs(self, subject: str, split: str) -> list[str]:
        self._check_subject(subject)
        sel = (self.runs["subject"] == subject) & (self.runs["split"] == split)
        return self.runs.loc[sel, "run"].tolist()

    def train_runs(self, subject: str) -> list[str]:
        """Run ids of ``subject`` with split ``train``, in table order."""
        return self._split_runs(subject, "train")

    def test_runs(self, subject: str) -> list[str]:
        """Run ids of ``subject`` with split ``test`` (repeats included), in table order."""
        return self._split_runs(subject, "test")

    def run_stimulus(self, subject: str, run: str) -> str:
        """Stimulus shown in a run."""
        return str(self._run_row(subject, run)["stimulus"])

    def stimulus_n_tr(self, stimulus: str) -> int:
        """TR count of a stimulus: the longest run of it in ``runs.tsv``."""
        sel = self.runs["stimulus"] == stimulus
        if not sel.any():
            raise InputError(
                f"stimulus {stimulus!r} is not in {self.root / 'runs.tsv'}; "
                f"available: {self.stimuli}"
            )
        return int(self.runs.loc[sel, "n_tr"].max())

    def roi_parcels(self, roi: str) -> np.ndarray:
        """Column indices of an ROI's parcels (a ``roi`` value, a group of them, ``all``).

        Returns
        -------
        parcels : ndarray of int64, shape (n_roi_parcels,)
        """
        sel = roi_mask(self.parcels["roi"], roi)
        if not sel.any():
            raise InputError(
                f"ROI {roi!r} is not in {self.root / 'parcels.tsv'}; available ROIs: "
                f"{self.roi_names}"
            )
        return self.parcels.loc[sel, "parcel"].to_numpy(dtype=np.int64)

    # ------------------------------------------------------------------ arrays
    def responses(self, subject: str, run: str) -> np.ndarray:
        """Responses of one run.

        Parameters
        ----------
        subject : str
            Subject id (a row of ``runs.tsv``).
        run : str
            Run id, the dataset key in ``{subject}.h5``.

        Returns
        -------
        y : ndarray of float32, shape (n_TR, n_parcels)
            ``n_TR`` equals the run's ``n_tr`` in ``runs.tsv``.

        Raises
        ------
        KeyError
            If the run is not listed or not stored.
        ValueError
            If the shape disagrees with the tables or the array holds NaN or inf.
        """
        row = self._run_row(subject, run)
        path = self.subject_path(subject)
        with open_h5(path, "one (n_TR, n_parcels) dataset per run") as f:
            if run not in f:
                raise InputError(
                    f"{path} has no dataset {run!r} (listed in runs.tsv); "
                    f"stored: {sorted(f.keys())}"
                )
            y = f[run][()]
        expected = (int(row["n_tr"]), self.n_parcels)
        if y.ndim != 2 or y.shape != expected:
            hint = " (transposed?)" if y.shape == expected[::-1] else ""
            raise InputError(
                f"{path}[{run!r}] has shape {y.shape}{hint}; expected (n_TR, n_parcels) = "
                f"{expected} from runs.tsv and parcels.tsv"
            )
        if not np.issubdtype(y.dtype, np.floating):
            raise InputError(f"{path}[{run!r}] has dtype {y.dtype}; expected float32")
        n_bad = int(np.count_nonzero(~np.isfinite(y)))
        if n_bad:
            raise InputError(
                f"{path}[{run!r}] holds {n_bad} NaN/inf value(s); expected finite responses"
            )
        return y.astype(np.float32, copy=False)

    def stimulus_frames(
        self, stimulus: str, fps: float, height: int, width: int
    ) -> np.ndarray:
        """Decode a stimulus movie and resample it.

        Parameters
        ----------
        stimulus : str
            Stimulus name (``stimuli/{stimulus}.mkv``).
        fps : float
            Target frame rate.
        height, width : int
            Target frame size.

        Returns
        -------
        frames : ndarray of uint8, shape (n_frames, height, width, 3)
            Frame ``j`` is the movie frame nearest to ``j / fps`` seconds.
        """
        frames, src_fps = read_video(self.stimulus_path(stimulus))
        return resample_frames(frames, src_fps, fps, height, width)
