"""Atomic output: write to a temporary name beside the target, rename when complete.

Every stage writes its outputs through these helpers so that a killed job never
leaves a file that looks complete. A job killed with SIGKILL (or a crashed node) cannot
remove its temporary (``.{name}.XXXXXXXX{suffix}.tmp`` beside the target); the next run of
the same stage removes it (:func:`prepare_outputs`, called at the start of every stage that
writes, also checks that the output folders are writable before any work starts).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cortexscale.errors import CortexscaleError, InputError, MissingInputError
from cortexscale.logs import get_logger

log = get_logger(__name__)


class UnwritableOutputError(CortexscaleError, PermissionError):
    """An output folder in which the stage cannot create its files; nothing was computed."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        Final location of the file. Its parent folder is created.
    suffix : str, optional
        Suffix of the temporary file (default: the target's suffix followed by
        ``.tmp``), for writers that choose a format from the name (``.tmp.nii.gz``).

    Yields
    ------
    tmp : Path
        Where the caller writes. Removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=path.suffix + ".tmp" if suffix is None else suffix,
        dir=path.parent,
    )
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _temporary_pattern(name: str) -> re.Pattern[str]:
    """Names :func:`atomic_path` (``mkstemp``) and ``mkdtemp`` give temporaries of ``name``:
    ``.{name}.`` + 8 random characters + a suffix holding ``.tmp``."""
    return re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}(\.[^.]+)*\.tmp(\.[^.]+)*$")


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Temporaries of ``path`` left beside it by an interrupted write, sorted.

    Parameters
    ----------
    path : path-like
        A stage's output (file or folder).

    Returns
    -------
    paths : list of Path
        Siblings named like the temporaries of :func:`atomic_path` (or of a ``mkdtemp``
        folder with prefix ``.{name}.`` and suffix ``.tmp``) for this target only.
    """
    path = Path(path)
    pattern = _temporary_pattern(path.name)
    try:
        entries = list(path.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(p for p in entries if pattern.match(p.name))


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` that an interrupted write left behind.

    Call it only where no other process writes ``path`` at the same time (at the start of
    the stage that owns the output). Each removal is logged.

    Returns
    -------
    removed : list of Path
    """
    removed = []
    for tmp in stale_temporaries(path):
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
        log.info(f"removed {tmp}: a temporary of {Path(path).name} left by an interrupted run")
    return removed


def check_writable(folder: str | os.PathLike, what: str = "the stage's outputs") -> Path:
    """Check that files can be created in ``folder`` (or, if it does not exist yet, in its
    nearest existing parent, where it will be created); nothing is left behind.

    A probe file is created and removed (``os.access`` is not enough: root passes it
    everywhere, also where a read-only mount refuses the write).

    Parameters
    ----------
    folder : path-like
    what : str, optional
        What will be written there, for the message.

    Returns
    -------
    folder : Path

    Raises
    ------
    UnwritableOutputError
        A ``PermissionError`` naming the folder, what was to be written and why it cannot
        be (read-only file system, permission denied, a file in the way, disk full...).
    """
    folder = Path(folder)
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "a file is in the way", str(existing))
        fd, probe = tempfile.mkstemp(prefix=".cortexscale-write-check.", suffix=".tmp",
                                     dir=existing)
        os.close(fd)
        Path(probe).unlink(missing_ok=True)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UnwritableOutputError(
            f"output folder {folder} is not writable ({reason}: {existing}); "
            f"expected a folder where {what} can be created; nothing was computed"
        ) from err
    return folder


def prepare_outputs(paths: list[str | os.PathLike] | tuple[str | os.PathLike, ...],
                    stage: str) -> None:
    """Start of a stage that writes ``paths``: folders writable, stale temporaries gone.

    Parameters
    ----------
    paths : sequence of path-like
        The files (or folders) the stage will write.
    stage : str
        The stage's name, for the messages ("pretrain").

    Raises
    ------
    PermissionError
        From :func:`check_writable`, before any work.
    """
    checked: set[Path] = set()
    for path in map(Path, paths):
        if path.parent not in checked:
            check_writable(path.parent, f"the outputs of {stage} ({path.name}, ...)")
            checked.add(path.parent)
        remove_stale_temporaries(path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (numpy scalars are converted)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"cannot serialise {type(o).__name__} to JSON")

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=default) + "\n")


def write_tsv(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write a data frame as a tab-separated table without index, atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False)


def read_tsv(path: str | os.PathLike, what: str) -> pd.DataFrame:
    """Read a tab-separated table that a stage needs.

    Raises
    ------
    MissingInputError
        If ``path`` does not exist (naming ``what`` it should hold).
    InputError
        If it is empty or not a table.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{what} {path} does not exist")
    try:
        return pd.read_csv(path, sep="\t")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: expected {what} (a tab-separated table), found "
                         f"{type(exc).__name__}: {exc}") from None
