"""Check a study's subjects, ROIs and stimuli against its dataset before any job runs.

The workflow calls :func:`check_study_dataset` right after the config checks (Snakefile),
and ``cortexscale validate`` calls it when ``fmri.root`` exists, so a ROI name that the
dataset does not have, a missing subject or a missing stimulus stops the study before the
expensive part (feature extraction, pretraining), with the list of what exists.

Cheap by design: it reads file names, ``.npy`` headers, ROI masks and mappings, tables and
HDF5 keys, never the responses or the movies. Every source with a root is covered:

- ``algonauts2023``: ``root/{subject}`` folders, the ROI names of ``roi_masks/`` (the
  release's mappings, :mod:`cortexscale.data.nsd`), one image per response row, and
  ``pretrained_models.image_split`` fitting the image count;
- ``algonauts2025``: ``root/fmri/{subject}``, ROI names from
  ``cortexscale.data.algonauts2025.roi_names`` (else ``parcels.tsv`` / ``all``), tasks of
  the HDF5 keys, a movie per task, ``fmri.test_stimuli`` among the tasks;
- ``nifti``: ``root/{subject}/func`` BOLD files, ROI names of the atlas table (``all``
  without one), a movie per task, ``fmri.test_stimuli`` among the tasks;
- ``prepared``: ``runs.tsv``/``parcels.tsv`` (:class:`~cortexscale.data.fmri.FmriDataset`),
  a movie per stimulus.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cortexscale.errors import ConfigError

__all__ = ["DatasetError", "check_study_dataset", "dataset_problems"]

#: the sources read from ``fmri.root`` (``synthetic`` is generated)
ROOTED = ("algonauts2023", "algonauts2025", "nifti", "prepared")


class DatasetError(ConfigError):
    """The study names subjects, ROIs or stimuli that its dataset does not hold."""


def _listing(names: Iterable[str], limit: int = 40) -> str:
    names = list(names)
    more = f" ... ({len(names)} in all)" if len(names) > limit else ""
    return "[" + ", ".join(names[:limit]) + "]" + more


def _missing_rois(rois: list[str], available: list[str], where: str) -> list[str]:
    bad = [r for r in rois if r not in available]
    if not bad:
        return []
    return [f"rois: {_listing(bad)} are not ROIs of {where}; available: {_listing(available)}"]


def _missing_subjects(subjects: list[str], present: list[str], where: str) -> list[str]:
    bad = [s for s in subjects if s not in present]
    if not bad:
        return []
    return [f"subjects: {_listing(bad)} are not in {where}; available: {_listing(present)}"]


# --------------------------------------------------------------------------- sources
def _algonauts2023(cfg: dict[str, Any], root: Path, problems: list[str]) -> dict[str, Any]:
    from cortexscale.data.nsd import describe_nsd_subject

    present = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("subj"))
    subjects = [s for s in cfg["subjects"] if (root / s).is_dir()]
    problems += _missing_subjects(cfg["subjects"], present, f"{root} (subjXX folders)")
    split = cfg.get("pretrained_models", {}).get("image_split", {})
    n_test, n_train = int(split.get("n_test", 500)), int(split.get("n_train", 0))
    report = {}
    for s in subjects:
        try:
            info = describe_nsd_subject(root / s)
        except (FileNotFoundError, ValueError) as err:
            problems.append(f"{s}: {err}")
            continue
        report[s] = info
        problems += _missing_rois(cfg["rois"], info["rois"], f"{root / s / 'roi_masks'}")
        n = info["n_images"]
        if not 0 < n_test < n or n_train + n_test > n:
            problems.append(
                f"pretrained_models.image_split: n_train {n_train} + n_test {n_test} do not fit "
                f"the {n} training images of {root / s}; expected 1 <= n_test < {n} and "
                f"n_train + n_test <= {n}")
    return report


def _movie_stems(root: Path) -> dict[str, Path]:
    stim = root / "stimuli"
    return {p.stem: p for p in sorted(stim.rglob("*.mkv"))} if stim.is_dir() else {}


def _has_movie(task: str, movies: dict[str, Path]) -> bool:
    return task in movies or sum(stem.endswith(f"_{task}") for stem in movies) == 1


def _check_tasks(cfg: dict[str, Any], tasks: set[str], movies: dict[str, Path] | None,
                 root: Path, problems: list[str]) -> None:
    if movies is not None:
        lost = sorted(t for t in tasks if not _has_movie(t, movies))
        if lost:
            problems.append(f"stimuli: no movie for task(s) {_listing(lost)} under "
                            f"{root / 'stimuli'}; movies found: {_listing(sorted(movies))}")
    test = cfg["fmri"].get("test_stimuli") or []
    unknown = sorted(set(test) - tasks)
    if unknown:
        problems.append(f"fmri.test_stimuli: {_listing(unknown)} are not tasks of the study's "
                        f"subjects in {root}; tasks: {_listing(sorted(tasks))}")


def _algonauts2025(cfg: dict[str, Any], root: Path, problems: list[str]) -> dict[str, Any]:
    import h5py

    from cortexscale.data import algonauts2025

    fmri = root / "fmri"
    present = sorted(p.name for p in fmri.iterdir() if p.is_dir()) if fmri.is_dir() else []
    problems += _missing_subjects(cfg["subjects"], present, f"{fmri}")
    rois = algonauts2025.roi_names(root)
    problems += _missing_rois(cfg["rois"], rois, f"{root}")
    tasks: set[str] = set()
    report: dict[str, Any] = {"rois": rois}
    for s in (s for s in cfg["subjects"] if (fmri / s).is_dir()):
        keys = []
        for path in sorted((fmri / s).rglob("*.h5")):
            try:
                with h5py.File(path, "r") as f:
                    keys += list(f.keys())
            except OSError as err:
                problems.append(f"{path}: not a readable HDF5 file: {err}")
        if not keys:
            problems.append(f"{s}: no HDF5 run under {fmri / s}; expected "
                            f"fmri/{s}/func/*_bold.h5")
        for key in keys:
            m = algonauts2025.KEY_PATTERN.match(key)
            if m:
                tasks.add(m.group(2))
        report[s] = {"n_runs": len(keys)}
    _check_tasks(cfg, tasks, _movie_stems(root), root, problems)
    return report


def _nifti(cfg: dict[str, Any], root: Path, problems: list[str]) -> dict[str, Any]:
    import pandas as pd

    from cortexscale.data.fmri import roi_names
    from cortexscale.data.nifti import BOLD_PATTERN  # the importer's own file-name pattern

    present = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-"))
    problems += _missing_subjects(cfg["subjects"], present, f"{root} (sub-XX/func folders)")
    fmri = cfg["fmri"]
    if fmri.get("mask"):
        rois = ["all"]
    else:
        if fmri.get("atlas"):
            labels = root / fmri["atlas"]
        else:
            hits = sorted((root / "atlas").glob("*dseg.nii*")) if (root / "atlas").is_dir() else []
            labels = hits[0] if len(hits) == 1 else None
        tsv = Path(re.sub(r"\.nii(\.gz)?$", ".tsv", str(labels))) if labels else None
        if tsv is not None and tsv.is_file():
            table = pd.read_csv(tsv, sep="\t")
            rois = roi_names(table["roi"]) if "roi" in table.columns else ["all"]
        else:
            rois = ["all"]
    problems += _missing_rois(cfg["rois"], rois, f"{root} (atlas table)")
    tasks, report = set(), {"rois": rois}
    for s in (s for s in cfg["subjects"] if (root / s).is_dir()):
        files = sorted((root / s / "func").glob("*_bold.nii*")) if (root / s / "func").is_dir() else []
        found = [m.group(2) for m in map(BOLD_PATTERN.match, (p.name for p in files)) if m]
        if not found:
            problems.append(f"{s}: no BOLD image in {root / s / 'func'}; expected "
                            f"{s}_task-NAME_run-N_..._bold.nii.gz")
        tasks |= set(found)
        report[s] = {"n_runs": len(found)}
    movies = {t: root / "stimuli" / f"{t}.mkv" for t in tasks}
    lost = sorted(t for t, p in movies.items() if not p.is_file())
    if lost:
        problems.append(f"stimuli: no movie {root / 'stimuli'}/TASK.mkv for task(s) "
                        f"{_listing(lost)}")
    _check_tasks(cfg, tasks, None, root, problems)
    return report


def _prepared(cfg: dict[str, Any], root: Path, problems: list[str]) -> dict[str, Any]:
    from cortexscale.data.fmri import FmriDataset

    try:
        ds = FmriDataset(root)
    except (FileNotFoundError, ValueError, KeyError) as err:
        problems.append(str(err.args[0] if isinstance(err, KeyError) else err))
        return {}
    problems += _missing_subjects(cfg["subjects"], ds.subjects, f"{root / 'runs.tsv'}")
    problems += _missing_rois(cfg["rois"], ds.roi_names, f"{root / 'parcels.tsv'}")
    lost = [s for s in ds.stimuli if not (root / "stimuli" / f"{s}.mkv").is_file()]
    if lost:
        problems.append(f"stimuli: no movie {root / 'stimuli'}/NAME.mkv for stimulus(es) "
                        f"{_listing(lost)} of {root / 'runs.tsv'}")
    return {"subjects": ds.subjects, "n_parcels": ds.n_parcels}


_SOURCES = {"algonauts2023": _algonauts2023, "algonauts2025": _algonauts2025,
            "nifti": _nifti, "prepared": _prepared}


# --------------------------------------------------------------------------- entry points
def _dataset_root(cfg: dict[str, Any], base: str | os.PathLike | None) -> Path | None:
    """The folder to check: ``fmri.root`` (from ``base``) of a rooted source, when it
    exists; ``None`` when there is nothing to check."""
    fmri = cfg["fmri"]
    if fmri["source"] not in ROOTED or not fmri.get("root"):
        return None
    root = Path(base or ".") / fmri["root"]
    return root if root.is_dir() else None


def dataset_problems(cfg: dict[str, Any], base: str | os.PathLike | None = None
                     ) -> tuple[list[str], dict[str, Any]]:
    """Every mismatch between the study and its dataset, and what the dataset holds.

    Parameters
    ----------
    cfg : dict
        A full config (defaults filled, :func:`cortexscale.config.check_config`).
    base : path-like, optional
        Folder a relative ``fmri.root`` is taken from (default: the working directory,
        as the workflow's jobs take it).

    Returns
    -------
    problems : list of str
        Empty when the study fits the dataset, or when there is nothing to check (the
        synthetic source, or a root that does not exist yet: see :func:`check_study_dataset`).
    report : dict
        What was found, per source (subjects, ROI names, counts).
    """
    root = _dataset_root(cfg, base)
    if root is None:
        return [], {}
    problems: list[str] = []
    report = _SOURCES[cfg["fmri"]["source"]](cfg, root, problems)
    return list(dict.fromkeys(problems)), report


def check_study_dataset(cfg: dict[str, Any], source: str = "config",
                        base: str | os.PathLike | None = None) -> bool:
    """Raise :class:`DatasetError` listing every problem when the dataset does not fit.

    Returns
    -------
    checked : bool
        True when a dataset was found and checked; False when there was none to check
        (synthetic source, or ``fmri.root`` absent: a dry run may precede the data).
    """
    root = _dataset_root(cfg, base)
    if root is None:
        return False
    problems, _ = dataset_problems(cfg, base)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise DatasetError(f"{source}: the {cfg['fmri']['source']} dataset at {root} does not "
                           f"hold what the study names:\n{lines}")
    return True
