"""Algonauts 2025 / CNeuroMod Friends: import into the internal layout, and a synthetic copy.

The challenge's release (``algonauts_2025.competitors/``) holds, per subject, HDF5 files of
parcel time series, the subject's atlas, and the movies as ``.mkv``::

    fmri/sub-01/func/sub-01_task-friends_space-MNI152NLin2009cAsym_atlas-Schaefer18_
        parcel-1000Par7Net_desc-s123456_bold.h5      keys ses-001_task-s01e02a, ...
    fmri/sub-01/func/sub-01_task-movie10_..._bold.h5  keys ses-001_task-bourne01,
                                                      ses-005_task-figures01_run-1, ...
    fmri/sub-01/atlas/sub-01_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_
        desc-dseg_parcellation.nii.gz                 labels 1..1000, 0 outside the brain
    stimuli/movies/friends/s1/friends_s01e02a.mkv
    stimuli/movies/movie10/bourne/bourne01.mkv

Each dataset is float32 ``(n_TR, 1000)`` at TR = 1.49 s (the files state no TR; it comes
from ``fmri.tr``); column ``j`` is atlas label ``j + 1``. A key's task (``s01e02a``,
``figures01``) names the stimulus: the movie whose file stem is the task or ends in
``_{task}``. Runs ``_run-1``, ``_run-2`` of the same task are repeats. Test stimuli are
``fmri.test_stimuli`` when given, else every stimulus shown in more than one run.

ROIs: an optional ``parcels.tsv`` (``parcel, roi, label``) at the root assigns parcels to
ROIs; without it the 1000 parcels get their Schaefer 2018 7-network assignment
(``resources/schaefer2018_1000parcels_7networks.tsv``) as ``roi`` ``{network}_{LH|RH}``,
so that a study may name a network (``Vis``, ``SomMot``, ``DorsAttn``, ``SalVentAttn``,
``Limbic``, ``Cont``, ``Default``), a network in one hemisphere (``Vis_LH``) or ``all``
(:func:`roi_names`, :func:`cortexscale.data.fmri.roi_mask`).

The rest of the release is ignored: the out-of-distribution movies under
``stimuli/movies/ood/`` (``task-{movie}{N}_video.mkv`` beside unsplit files), the
transcripts (``stimuli/transcripts/``, ``.tsv``), ``fmri/sub-0X/target_sample_number/``
(and every other folder of a subject but ``func/`` and ``atlas/``), and movies no study
subject has a run of (Friends season 7). Runs one study subject lacks but another has
(sub-02 ``s05e20a``; sub-05 ``s04e01a``, ``s04e01b``, ``s04e13b``) are listed in
``import.json`` (``missing_runs``) and on stderr, not an error.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from cortexscale.data.checks import check_run_durations, movie_durations
from cortexscale.data.fmri import FmriDataset, open_h5
from cortexscale.data.fmri import roi_names as _roi_names
from cortexscale.data.layout import write_dataset
from cortexscale.errors import ConfigError, InputError, MissingInputError
from cortexscale.logs import get_logger

__all__ = [
    "ATLAS_NAME", "KEY_PATTERN", "N_PARCELS", "import_algonauts2025", "parse_key", "roi_names",
    "schaefer_parcels", "write_synthetic_algonauts2025",
]

log = get_logger(__name__)

#: ``ses-001_task-s01e02a`` or ``ses-005_task-figures01_run-1``
KEY_PATTERN = re.compile(r"^ses-(\d+)_task-([A-Za-z0-9]+?)(?:_run-(\d+))?$")
_EXPECTED = "datasets named ses-NNN_task-NAME[_run-N] of shape (n_TR, n_parcels)"
#: the subject's atlas in the release, under ``fmri/{subject}/atlas/``
ATLAS_NAME = ("{subject}_space-MNI152NLin2009cAsym_atlas-Schaefer18_parcel-1000Par7Net_"
              "desc-dseg_parcellation.nii.gz")
#: parcels of the release's atlas (Schaefer 2018, 1000 parcels, 7 networks)
N_PARCELS = 1000
SCHAEFER_TSV = "schaefer2018_1000parcels_7networks.tsv"
NETWORKS = ("Vis", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Cont", "Default")
HEMISPHERES = ("LH", "RH")


def schaefer_parcels() -> pd.DataFrame:
    """The 7-network assignment of the 1000 Schaefer 2018 parcels, as ``parcels.tsv`` rows.

    Read from the package's ``resources/schaefer2018_1000parcels_7networks.tsv`` (label
    ranges from the atlas's published label table) and checked to cover labels 1..1000 once.

    Returns
    -------
    parcels : DataFrame, 1000 rows
        ``parcel`` (0..999; response column ``j`` is atlas label ``j + 1``), ``roi``
        (``{network}_{hemisphere}``, e.g. ``Vis_LH``), ``label``
        (``Schaefer{j+1}_{hemisphere}_{network}``), ``network``, ``hemisphere``.
    """
    path = resources.files("cortexscale") / "resources" / SCHAEFER_TSV
    table = pd.read_csv(str(path), sep="\t", comment="#")
    hemi = np.full(N_PARCELS, "", dtype=object)
    net = np.full(N_PARCELS, "", dtype=object)
    for row in table.itertuples(index=False):
        if (row.network not in NETWORKS or row.hemisphere not in HEMISPHERES
                or not 1 <= row.first_label <= row.last_label <= N_PARCELS):
            raise InputError(f"{path}: row {tuple(row)} is not (first_label, last_label, "
                             f"hemisphere in {HEMISPHERES}, network in {NETWORKS})")
        span = slice(row.first_label - 1, row.last_label)
        if (net[span] != "").any():
            raise InputError(f"{path}: labels {row.first_label}-{row.last_label} overlap "
                             "another row")
        hemi[span], net[span] = row.hemisphere, row.network
    if (net == "").any():
        raise InputError(f"{path}: labels {(np.flatnonzero(net == '') + 1)[:10].tolist()} "
                         f"have no network; expected every label 1..{N_PARCELS} once")
    labels = np.arange(1, N_PARCELS + 1)
    return pd.DataFrame({
        "parcel": labels - 1, "roi": [f"{n}_{h}" for n, h in zip(net, hemi, strict=True)],
        "label": [f"Schaefer{k}_{h}_{n}" for k, n, h in zip(labels, net, hemi, strict=True)],
        "network": net, "hemisphere": hemi,
    })


def _peek_n_parcels(root: Path) -> int | None:
    """The column count of the first run of the first subject file, or None (no file)."""
    for path in sorted((root / "fmri").glob("*/func/*.h5")):
        with open_h5(path, _EXPECTED) as f:
            for key in sorted(f.keys()):
                shape = f[key].shape
                return int(shape[1]) if len(shape) == 2 else None
    return None


def roi_names(root: str | os.PathLike) -> list[str]:
    """The ROI names a study may use with an Algonauts 2025 release.

    Parameters
    ----------
    root : path-like
        The release folder (``fmri.root``).

    Returns
    -------
    names : list of str
        With a ``parcels.tsv`` at the root: its ``roi`` values, their groups and ``all``
        (:func:`cortexscale.data.fmri.roi_names`). Otherwise, for the release's 1000
        parcels: the hemisphere splits ``Vis_LH``, ..., ``Default_RH``, the networks
        ``Vis``, ``SomMot``, ``DorsAttn``, ``SalVentAttn``, ``Limbic``, ``Cont``,
        ``Default``, and ``all``; for runs of another parcel count only ``all``.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"Algonauts 2025 folder {root} does not exist (fmri.root)")
    if (root / "parcels.tsv").is_file():
        return _roi_names(pd.read_csv(root / "parcels.tsv", sep="\t")["roi"].astype(str))
    n = _peek_n_parcels(root)
    if n is not None and n != N_PARCELS:
        return _roi_names(["all"] * n)
    return _roi_names(schaefer_parcels()["roi"])


def parse_key(key: str, path: Path) -> tuple[int, str, int | None]:
    """Session, task (stimulus) and optional run number of a dataset key."""
    m = KEY_PATTERN.match(key)
    if m is None:
        raise InputError(f"{path}: key {key!r} does not look like ses-NNN_task-NAME[_run-N]")
    return int(m.group(1)), m.group(2), (int(m.group(3)) if m.group(3) else None)


def _subject_files(root: Path, subject: str) -> list[Path]:
    # the release's runs are in func/; other folders (target_sample_number/, ...) are ignored
    files = sorted((root / "fmri" / subject / "func").glob("*.h5"))
    if not files:
        files = sorted((root / "fmri" / subject).rglob("*.h5"))
    if not files:
        files = sorted(p for p in root.rglob(f"{subject}*.h5") if "truth" not in p.parts)
    if not files:
        raise MissingInputError(
            f"no HDF5 file for {subject} under {root / 'fmri' / subject} (nor {root}/**/"
            f"{subject}*.h5); expected the Algonauts 2025 layout fmri/{subject}/func/*_bold.h5"
        )
    return files


#: movies without fMRI in the release (out-of-distribution test set): never indexed
OOD = Path("stimuli") / "movies" / "ood"


def _movie_index(root: Path) -> dict[str, list[Path]]:
    """File stem -> the movies of that stem under ``stimuli/``, the OOD folder left out."""
    stimuli = root / "stimuli"
    movies = sorted(stimuli.rglob("*.mkv")) if stimuli.is_dir() else []
    movies = [p for p in movies if not p.is_relative_to(root / OOD)]
    if not movies:
        raise MissingInputError(f"no .mkv movie under {stimuli} (outside {OOD}); expected "
                                "stimuli/movies/**/NAME.mkv")
    index: dict[str, list[Path]] = {}
    for p in movies:
        index.setdefault(p.stem, []).append(p)
    return index


def _find_movie(task: str, movies: dict[str, list[Path]], where: str) -> Path:
    hits = movies.get(task) or [p for stem, ps in movies.items() if stem.endswith(f"_{task}")
                                for p in ps]
    if len(hits) != 1:
        raise MissingInputError(
            f"{where}: expected one movie named {task}.mkv or *_{task}.mkv under stimuli/, "
            f"found {len(hits)}: {[str(h) for h in hits]}"
        )
    return hits[0]


def _parcel_table(root: Path, n_parcels: int) -> pd.DataFrame:
    path = root / "parcels.tsv"
    if not path.is_file():
        if n_parcels == N_PARCELS:
            return schaefer_parcels()
        return pd.DataFrame({"parcel": np.arange(n_parcels), "roi": "all",
                             "label": [f"parcel{i:04d}" for i in range(n_parcels)]})
    df = pd.read_csv(path, sep="\t")
    if len(df) != n_parcels or list(df.columns[:3]) != ["parcel", "roi", "label"]:
        raise InputError(
            f"{path}: expected columns parcel, roi, label and {n_parcels} rows (the response "
            f"columns), found columns {list(df.columns)} and {len(df)} rows"
        )
    return df


def _subject_atlas(root: Path, subject: str, n_parcels: int) -> Path:
    """The release's atlas of one subject, checked against the runs' parcel count.

    ``fmri/{subject}/atlas/`` + :data:`ATLAS_NAME`; else the one
    ``{subject}_*desc-dseg_parcellation.nii.gz`` there (another atlas of the same layout).

    Raises
    ------
    FileNotFoundError, ValueError
        No atlas, several candidates, or an image that is not a 3-D integer labels image
        with labels 0..``n_parcels`` (label ``j + 1`` = response column ``j``).
    """
    import nibabel as nib

    folder = root / "fmri" / subject / "atlas"
    path = folder / ATLAS_NAME.format(subject=subject)
    if not path.is_file():
        hits = sorted(folder.glob(f"{subject}_*desc-dseg_parcellation.nii.gz"))
        if len(hits) != 1:
            raise MissingInputError(
                f"{subject}: expected the release's atlas {path} (it ships in every subject's "
                f"atlas/ folder: datalad get fmri/{subject}/atlas), found "
                f"{[str(h) for h in hits] or 'no *_desc-dseg_parcellation.nii.gz there'}"
            )
        path = hits[0]
    try:
        image = nib.load(path)
        labels = np.asarray(image.dataobj)
    except Exception as e:  # nibabel raises several types for damaged files
        raise InputError(f"{path}: cannot be read as NIfTI ({type(e).__name__}: {e}); "
                         "expected the subject's labels atlas") from e
    if labels.ndim != 3 or not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
        raise InputError(f"{path}: expected a 3-D image of integer labels, found "
                         f"{labels.dtype} {labels.shape}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi > n_parcels or hi == 0:
        raise InputError(f"{path}: labels run {lo}..{hi}; expected 0 (outside the brain) and "
                         f"1..{n_parcels}, label j + 1 for response column j")
    return path


def _missing_runs(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Per study subject, the stimuli another study subject has a run of but it has not."""
    tasks = runs.groupby("subject")["stimulus"].apply(set).to_dict()
    every = set().union(*tasks.values()) if tasks else set()
    return {subject: sorted(every - own) for subject, own in tasks.items() if every - own}


def _ignored(root: Path, movies: dict[str, list[Path]], used: set[str],
             subjects: list[str]) -> dict[str, Any]:
    """What of the release the import leaves out (counts and a few names), for import.json."""
    def names(paths: list[Path], k: int = 10) -> list[str]:
        return [str(p.relative_to(root)) for p in paths[:k]]

    ood = sorted((root / OOD).rglob("*.mkv")) if (root / OOD).is_dir() else []
    transcripts = sorted((root / "stimuli").rglob("*.tsv")) if (root / "stimuli").is_dir() else []
    unused = sorted(p for ps in movies.values() for p in ps if p not in used)
    other = sorted(d for s in subjects if (root / "fmri" / s).is_dir()
                   for d in (root / "fmri" / s).iterdir() if d.name not in ("func", "atlas"))
    return {
        "ood_movies": {"count": len(ood), "first": names(ood)},
        "transcripts": {"count": len(transcripts), "first": names(transcripts)},
        "movies_without_runs": {"count": len(unused), "first": names(unused)},
        "subject_folders": names(other, 100),
    }


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
        raise InputError(f"{len(odd)} run(s) have another parcel count than {basis} "
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

    Writes, besides the internal layout, ``atlas/{subject}.nii.gz``: a copy of each
    subject's release atlas (for brain maps), and in ``import.json`` the runs missing for
    some subjects (``missing_runs``) and what of the release was left out (``ignored``).

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file and key: missing or unreadable files, keys not in the pattern, a
        subject atlas missing or whose labels do not fit the runs' parcel count,
        arrays that are not 2-D floats, runs whose parcel count differs from
        ``parcels.tsv`` (or from most runs; a transposed run is named as such), runs whose
        TR count differs from the movie's duration by more than one TR, runs in which every
        parcel is NaN/inf or constant (:func:`cortexscale.data.layout.screen_parcels`).
        Nothing is written then.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"Algonauts 2025 folder {root} does not exist (fmri.root)")
    movies = _movie_index(root)
    rows, sources, stim_paths = [], {}, {}
    for subject in subjects:
        for path in _subject_files(root, subject):
            with open_h5(path, _EXPECTED) as f:
                for key in sorted(f.keys()):
                    _, task, _ = parse_key(key, path)
                    shape = f[key].shape
                    if len(shape) != 2 or not np.issubdtype(f[key].dtype, np.floating):
                        raise InputError(f"{path}[{key!r}]: expected float (n_TR, n_parcels), "
                                         f"found {f[key].dtype} {shape}")
                    if (subject, key) in sources:
                        raise InputError(f"{path}: key {key!r} of {subject} also in "
                                         f"{sources[(subject, key)][0]}")
                    sources[(subject, key)] = (path, key)
                    stim_paths[task] = _find_movie(task, movies, f"{path}[{key!r}]")
                    rows.append((subject, key, task, shape[0], f"{path}[{key!r}]", shape[1]))
    n_parcels = _check_parcel_counts(rows, root)
    rows = [r[:5] for r in rows]
    runs = pd.DataFrame(rows, columns=["subject", "run", "stimulus", "n_tr", "source"])
    if runs.empty:
        raise InputError(f"{root}: no runs found for subjects {subjects}")
    test = set(test_stimuli or [])
    if not test:
        counts = runs.groupby(["subject", "stimulus"]).size()
        test = {s for (_, s), n in counts.items() if n > 1}
    unknown = sorted(test - set(runs["stimulus"]))
    if unknown:
        raise ConfigError(f"fmri.test_stimuli {unknown} are not tasks of {root}; "
                         f"found {sorted(set(runs['stimulus']))}")
    if not test:
        raise InputError(f"{root}: no stimulus is shown twice; name the held-out stimuli "
                         "in fmri.test_stimuli")
    runs["split"] = np.where(runs["stimulus"].isin(test), "test", "train")
    notes = check_run_durations(runs, tr, movie_durations(stim_paths), str(root))
    parcels = _parcel_table(root, int(n_parcels))
    atlases = {f"atlas/{subject}.nii.gz": _subject_atlas(root, subject, int(n_parcels))
               for subject in subjects}
    missing = _missing_runs(runs)
    for subject, tasks in missing.items():
        log.warning(f"{subject} has no run of {len(tasks)} stimulus(es) other study "
                    f"subjects have: {tasks[:20]} (listed in import.json, missing_runs)")
    ignored = _ignored(root, movies, set(stim_paths.values()), subjects)

    def arrays():
        for subject in subjects:
            out = {}
            for key in runs.loc[runs["subject"] == subject, "run"]:
                path, k = sources[(subject, key)]
                with open_h5(path, _EXPECTED) as f:
                    out[key] = f[k][()]
            yield subject, out

    write_dataset(out_dir, runs, parcels, tr, arrays(), stim_paths,
                  {"source": "algonauts2025", "root": str(root), "duration_notes": notes,
                   "atlases": {k: str(v) for k, v in atlases.items()},
                   "missing_runs": missing, "ignored": ignored},
                  cfg=cfg, files=atlases)


def write_synthetic_algonauts2025(
    out_dir: str | os.PathLike, fmri_cfg: dict[str, Any], subjects: list[str],
    rois: list[str], seed: int, fps: float, height: int, width: int,
) -> None:
    """The synthetic world in the Algonauts 2025 release layout.

    Simulates with :func:`cortexscale.data.synthetic.write_synthetic_fmri` and lays the
    result out like the release: ``fmri/{subject}/func/{subject}_task-synthetic_..._bold.h5``
    with keys ``ses-001_task-movie01`` (training) and ``ses-00S_task-movieNN_run-R``
    (repeats of a test stimulus), ``fmri/{subject}/atlas/{subject}_..._atlas-synthetic_
    desc-dseg_parcellation.nii.gz`` (the synthetic world's MNI atlas),
    ``stimuli/movies/synthetic/movieNN.mkv``, a root ``parcels.tsv`` and ``truth/`` (see
    ``write_synthetic_fmri``).
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
        for subject in subjects:
            atlas = out_dir / "fmri" / subject / "atlas"
            atlas.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / "atlas.nii.gz", atlas / (
                f"{subject}_space-MNI152NLin2009cAsym_atlas-synthetic_"
                "desc-dseg_parcellation.nii.gz"))
        shutil.copyfile(Path(tmp) / "parcels.tsv", out_dir / "parcels.tsv")
        if (out_dir / "truth").exists():
            shutil.rmtree(out_dir / "truth")
        shutil.copytree(Path(tmp) / "truth", out_dir / "truth")
