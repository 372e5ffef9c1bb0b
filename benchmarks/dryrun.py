"""Time a dry run of the paper-scale sweep (config/studies/ahmadi2024.yaml).

Builds the whole DAG (every grid point x subject x ROI) without running a job and prints
the job count and wall time. Run from the repository root:

    python benchmarks/dryrun.py [--configfile config/studies/ahmadi2024.yaml] [--repeat 3]

The last line is `RESULT jobs=<n> seconds=<s>` (the best of the repeats). Target: < 10 s.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run(configfile: Path, workdir: Path) -> tuple[int, float]:
    """Run `snakemake -n` once; return (job count, seconds)."""
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [
        str(snakemake), "-n", "--quiet", "rules", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(configfile),
    ]
    env = {**os.environ, "PATH": f"{snakemake.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"dry run failed:\n{proc.stdout}\n{proc.stderr}")
    m = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.MULTILINE)
    if m is None:
        sys.exit(f"no job count in the dry run's output:\n{proc.stdout}\n{proc.stderr}")
    return int(m.group(1)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configfile", type=Path, default=REPO / "config" / "studies" / "ahmadi2024.yaml"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    best = float("inf")
    jobs = 0
    with tempfile.TemporaryDirectory() as workdir:
        for i in range(args.repeat):
            jobs, seconds = dry_run(args.configfile.resolve(), Path(workdir))
            best = min(best, seconds)
            print(f"run {i + 1}: {jobs} jobs in {seconds:.2f} s")
    print(f"RESULT jobs={jobs} seconds={best:.2f}")


if __name__ == "__main__":
    main()
