"""Helpers for the cluster and fault tests: a cached local reference run, table comparison."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
from wfutils import run_snakemake, tiny_config, write_yaml

TABLE = Path("results") / "tiny" / "tables" / "encoding.tsv"  # the tiny study's folder
# the runs build only the encoding table (not figures or other arms of the workflow)
TARGET = str(TABLE)


def cluster_config() -> dict:
    """The tiny study, as the Slurm and fault tests run it (one config for every run)."""
    cfg = tiny_config()
    # two grid points (hidden 8 and 16), so that every Slurm job's overhead counts twice only
    cfg["grid"] = {**cfg["grid"], "data_sizes": [256], "seeds": [0]}
    cfg["reference"] = {"enabled": False}  # the reference arm runs in the local tiny study
    cfg["resources"] = {**cfg.get("resources", {}), "mem_mb": 500, "runtime": 10}
    return cfg


def local_reference(base: Path) -> Path:
    """Run the tiny study locally once per test session (under ``base``); its work dir."""
    work = base / "local-reference"
    if (work / TABLE).is_file():
        return work
    work.mkdir(parents=True, exist_ok=True)
    config = write_yaml(work / "tiny.yaml", cluster_config())
    proc = run_snakemake(work, TARGET, "--cores", "2", "--configfile", str(config),
                         timeout=400)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return work


def copy_of_reference(base: Path, dest: Path) -> tuple[Path, Path]:
    """The session's local reference (:func:`local_reference` under ``base``) and a copy
    of its work dir at ``dest / 'work'``, for a test to rerun parts of."""
    ref = local_reference(base)
    work = dest / "work"
    shutil.copytree(ref, work, symlinks=True)
    return ref, work


# columns that measure the run (wall-clock time, throughput) and so differ between two runs
TIMING = re.compile(r"(^|_)(time|wall|tokens_per_s|mfu)(_|$)")


def assert_same_table(a: Path, b: Path) -> None:
    """The two encoding tables are identical, cell for cell as written (no tolerance),
    except the timing columns (wall_time_s and the like), which measure the run."""
    fa = pd.read_csv(a / TABLE, sep="\t", dtype=str, keep_default_na=False)
    fb = pd.read_csv(b / TABLE, sep="\t", dtype=str, keep_default_na=False)
    assert list(fa.columns) == list(fb.columns)
    keep = [c for c in fa.columns if not TIMING.search(c)]
    assert len(keep) >= len(fa.columns) - 3, fa.columns
    fa, fb = fa[keep], fb[keep]
    if not fa.equals(fb):
        diff = fa.compare(fb) if fa.shape == fb.shape else (fa, fb)
        raise AssertionError(f"encoding tables differ:\n{diff}")
