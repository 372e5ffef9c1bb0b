"""Algonauts 2025 / CNeuroMod Friends: import into the internal layout, and a synthetic copy.

The challenge's release (``algonauts_2025.competitors/``) holds, per subject, HDF5 files of
parcel time series and the movies as ``.mkv``::

    fmri/sub-01/func/sub-01_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_
        parcel-1000Par7Net_desc-s123456_bold.h5      keys ses-001_task-s01e02a, ...
    fmri/sub-01/func/sub-01_task-movie10_..._bold.h5  keys ses-001_task-bourne01,
                                                      ses-005_task-figures01_run-1, ...
    stimuli/movies/friends/s1/friends_s01e02a.mkv
    stimuli/movies/movie10/bourne/bourne01.mkv

Each dataset is float32 ``(n_TR, 1000)`` at TR = 1.49 s (the files state no TR; it comes
from ``fmri.tr``). A key's task (``s01e02a``, ``figures01``) names the stimulus: the movie
whose file stem is the task or ends in ``_{task}``. Runs ``_run-1``, ``_run-2`` of the same
task are repeats. Test stimuli are ``fmri.test_stimuli`` when given, else every stimulus
shown in more than one run. An optional ``parcels.tsv`` (``parcel, roi, label``) at the
root assigns parcels to ROIs; without it every parcel is in ROI ``all``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from cortexscale.data.checks import check_run_durations, movie_durations
from cortexscale.data.fmri import FmriDataset, open_h5
from cortexscale.data.layout import write_dataset

__all__ = ["KEY_PATTERN", "import_algonauts2025", "parse_key", "write_synthetic_algonauts2025"]

#: ``ses-001_task-s01e02a`` or ``ses-005_task-figures01_run-1``
KEY_PATTERN = re.compile(r"^ses-(\d+)_task-([A-Za-z0-9]+?)(?:_run-(\d+))?$")
_EXPECTED = "datasets named ses-NNN_task-NAME[_run-N] of shape (n_TR, n_parcels)"


def parse_key(key: str, path: Path) -> tuple[int, str, int | None]:
    """Session, task (stimulus) and optional run number of a dataset key."""
    m = KEY_PATTERN.match(key)
    if m is None:
        raise ValueError(f"{path}: key {key!r} does not look like ses-NNN_task-NAME[_run-N]")
    return int(m.group(1)), m.group(2), (int(m.group(3)) if m.group(3) else None)


def _subject_files(root: Path, subject: str) -> list[Path]:
    files = sorted((root / "fmri" / subject).rglob("*.h5"))
    if not files:
        files = sorted(p for p in root.rglob(f"{subject}*.h5") if "truth" not in p.parts)
    if not files:
        raise FileNotFoundError(
            f"no HDF5 file for {subject} under {root / 'fmri' / subject} (nor {root}/**/"
            f"{subject}*.h5); expected the Algonauts 2025 layout fmri/{subject}/func/*_bold.h5"
        )
    return files


def _movie_index(root: Path) -> dict[str, Path]:
    movies = sorted((root / "stimuli").rglob("*.mkv")) if (root / "stimuli").is_dir() else []
    if not movies:
        raise FileNotFoundError(f"no .mkv movie under {root / 'stimuli'}; expected "
                                "stimuli/movies/**/NAME.mkv")
    return {p.stem: p for p in movies}


def _find_movie(task: str, movies: dict[str, Path], where: str) -> Path:
    if task in movies:
        return movies[task]
    hits = [p for stem, p in movies.items() if stem.endswith(f"_{task}")]
    if len(hits) != 1:
        raise FileNotFoundError(
            f"{where}: expected one movie named {task}.mkv or *_{task}.mkv under stimuli/, "
            f"found {len(hits)}: {[str(h) for h in hits]}"
        )
    return hits[0]


def _parcel_table(root: Path, n_parcels: int) -> pd.DataFrame:
    path = root / "parcels.tsv"
    if not path.is_file():
        return pd.DataFrame({"parcel": np.arange(n_parcels), "roi": "all",
                             "label": [f"parcel{i:04d}" for i in range(n_parcels)]})
    df = pd.read_csv(path, sep="\t")
    if len(df) != n_parcels or list(df.columns[:3]) != ["parcel", "roi", "label"]:
        raise ValueError(
            f"{path}: expected columns parcel, roi, label and {n_parcels} rows (the response "
            f"columns), found columns {list(df.columns)} and {len(df)} rows"
        )
    return df


def _check_parcel_counts(rows: list[tuple], root: Path) -> int | None:
    """The parcel count of every run; an error naming each run that has another.

    The count is the row count of ``parcels.tsv`` when there is one, else the count most
    runs share, so that one odd (e.g. transposed) run is named, not the runs around it.
    """
    if not rows:
        return None
    table = root / "parcels.tsv"
    if table.is_file():
        n, basis = len(pd.read_csv(table, sep="\t")), f"the {table} rows"
    else:
        counts = Counter(r[5] for r in rows)
        n, k = counts.most_common(1)[0]
        basis = f"{k} of the {len(rows)} runs"
    odd = [r for r in rows if r[5] != n]
    if odd:
        lines = [f"{r[4]}: expected (n_TR, n_parcels) = (n_TR, {n}), found ({r[3]}, {r[5]})"
                 + (" (transposed? its first axis has the parcel count)" if r[3] == n else "")
                 for r in odd]
        sep = "\n  " if len(lines) > 1 else " "
        raise ValueError(f"{len(odd)} run(s) have another parcel count than {basis} "
                         f"({n}):{sep}" + sep.join(lines))
    return n


def import_algonauts2025(
    root: str | os.PathLike, out_dir: str | os.PathLike, subjects: list[str],
    tr: float = 1.49, test_stimuli: list[str] | None = None, cfg: Any = None,
) -> None:
    """Convert an Algonauts 2025 release into the internal layout at ``out_dir``.

    Parameters
    ----------
    root : path-like
        The release folder (holding ``fmri/`` and ``stimuli/``).
    out_dir : path-like
        Where the internal layout is written (``results/data/fmri``).
    subjects : list of str
        Subject ids (``sub-01``).
    tr : float, optional
        Repetition time in seconds.
    test_stimuli : list of str, optional
        Stimuli (task names) held out for testing; default: those shown more than once.
    cfg : JSON-serialisable, optional
        Recorded in the provenance.

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file and key: missing or unreadable files, keys not in the pattern,
        arrays that are not 2-D floats, runs whose parcel count differs from
        ``parcels.tsv`` (or from most runs; a transposed run is named as such), runs whose
        TR count differs from the movie's duration by more than one TR, runs in which every
        parcel is NaN/inf or constant (:func:`cortexscale.data.layout.screen_parcels`).
        Nothing is written then.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Algonauts 2025 folder {root} does not exist (fmri.root)")
    movies = _movie_index(root)
    rows, sources, stim_paths = [], {}, {}
    for subject in subjects:
        for path in _subject_files(root, subject):
            with open_h5(path, _EXPECTED) as f:
                for key in sorted(f.keys()):
                    _, task, _ = parse_key(key, path)
                    shape = f[key].shape
                    if len(shape) != 2 or not np.issubdtype(f[key].dtype, np.floating):
                        raise ValueError(f"{path}[{key!r}]: expected float (n_TR, n_parcels), "
                                         f"found {f[key].dtype} {shape}")
                    if (subject, key) in sources:
                        raise ValueError(f"{path}: key {key!r} of {subject} also in "
                                         f"{sources[(subject, key)][0]}")
                    sources[(subject, key)] = (path, key)
                    stim_paths[task] = _find_movie(task, movies, f"{path}[{key!r}]")
                    rows.append((subject, key, task, shape[0], f"{path}[{key!r}]", shape[1]))
    n_parcels = _check_parcel_counts(rows, root)
    rows = [r[:5] for r in rows]
    runs = pd.DataFrame(rows, columns=["subject", "run", "stimulus", "n_tr", "source"])
    if runs.empty:
        raise ValueError(f"{root}: no runs found for subjects {subjects}")
    test = set(test_stimuli or [])
    if not test:
        counts = runs.groupby(["subject", "stimulus"]).size()
        test = {s for (_, s), n in counts.items() if n > 1}
    unknown = sorted(test - set(runs["stimulus"]))
    if unknown:
        raise ValueError(f"fmri.test_stimuli {unknown} are not tasks of {root}; "
                         f"found {sorted(set(runs['stimulus']))}")
    if not test:
        raise ValueError(f"{root}: no stimulus is shown twice; name the held-out stimuli "
                         "in fmri.test_stimuli")
    runs["split"] = np.where(runs["stimulus"].isin(test), "test", "train")
    notes = check_run_durations(runs, tr, movie_durations(stim_paths), str(root))
    parcels = _parcel_table(root, int(n_parcels))

    def arrays():
        for subject in subjects:
            out = {}
            for key in runs.loc[runs["subject"] == subject, "run"]:
                path, k = sources[(subject, key)]
                with open_h5(path, _EXPECTED) as f:
                    out[key] = f[k][()]
            yield subject, out

    write_dataset(out_dir, runs, parcels, tr, arrays(), stim_paths,
                  {"source": "algonauts2025", "root": str(root), "duration_notes": notes},
                  cfg=cfg)


def write_synthetic_algonauts2025(
    out_dir: str | os.PathLike, fmri_cfg: dict[str, Any], subjects: list[str],
    rois: list[str], seed: int, fps: float, height: int, width: int,
) -> None:
    """The synthetic world in the Algonauts 2025 release layout.

    Simulates with :func:`cortexscale.data.synthetic.write_synthetic_fmri` and lays the
    result out like the release: ``fmri/{subject}/func/{subject}_task-synthetic_..._bold.h5``
    with keys ``ses-001_task-movie01`` (training) and ``ses-00S_task-movieNN_run-R``
    (repeats of a test stimulus), ``stimuli/movies/synthetic/movieNN.mkv``, a root
    ``parcels.tsv`` and ``truth/`` (see ``write_synthetic_fmri``).
    """
    from cortexscale.data.synthetic import write_synthetic_fmri

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        write_synthetic_fmri(tmp, fmri_cfg, subjects, rois, seed, fps, height, width)
        ds = FmriDataset(tmp)
        for subject in subjects:
            func = out_dir / "fmri" / subject / "func"
            func.mkdir(parents=True, exist_ok=True)
            name = (f"{subject}_task-synthetic_space-MNI152NLin2009cAsym_atlas-synthetic_"
                    "desc-s123456_bold.h5")
            sub = ds.runs[ds.runs["subject"] == subject]
            with h5py.File(func / name, "w") as f:
                for run, stim, split in zip(sub["run"], sub["stimulus"], sub["split"],
                                            strict=True):
                    ses = int(run.split("_")[0][4:])
                    key = f"ses-{ses:03d}_task-{stim}"
                    if split == "test":
                        key += f"_run-{ses}"
                    f.create_dataset(key, data=ds.responses(subject, run))
        movies = out_dir / "stimuli" / "movies" / "synthetic"
        movies.mkdir(parents=True, exist_ok=True)
        for stim in ds.stimuli:
            shutil.copyfile(ds.stimulus_path(stim), movies / f"{stim}.mkv")
        shutil.copyfile(Path(tmp) / "parcels.tsv", out_dir / "parcels.tsv")
        if (out_dir / "truth").exists():
            shutil.rmtree(out_dir / "truth")
        shutil.copytree(Path(tmp) / "truth", out_dir / "truth")
