"""Kill-and-rerun recovery of the tiny study (docs/recovery.md).

Snakemake runs in its own process group; the whole group (Snakemake and every running job) is
killed with SIGKILL at a seeded random point, as a node failure would: while the k-th
pretrain, features or encode job (k random, in the order the jobs start) runs, once its log
has a random fraction of the progress lines it has in the uninterrupted run (pretraining steps,
the stimuli done), plus a random fraction of a second. Counting jobs and log lines instead of
seconds keeps the point where it was drawn on a slow or busy machine. Then
``snakemake --unlock`` and ``snakemake --rerun-incomplete`` must finish the study with every
``results/tiny/tables/*.tsv`` equal, cell for cell as written, to the uninterrupted run's (the
session's ``tiny_study`` fixture), except the wall-time columns, with no temporary file left
under ``results/``, and with every pretraining run killed after a checkpoint resumed from it.

The seed is ``CORTEXSCALE_KILL_SEED`` (default 0); a failure names it, so the same kill
point can be drawn again.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from wfutils import BIN, REPO, results_of, tool_env

KILL_SEED = int(os.environ.get("CORTEXSCALE_KILL_SEED", "0"))
#: the kill comes while a job of these rules runs (the long jobs of both arms of the study)
KILL_RULES = ("pretrain", "features", "encode", "pretrained_features", "pretrained_encode")
#: ... at most this long after its log reached the drawn line (a tiny pretraining run prints
#: a line every ~15 ms once it trains, and finishes 0.3 s after its first line)
MAX_DELAY_S = 0.1
#: columns that measure the run (seconds, throughput), not its result; every other column of
#: every table must be identical
WALL_TIME_COLUMNS = frozenset({"wall_time_s", "train_time_s", "tokens_per_s", "mfu"})
#: early outputs the killed copy keeps from the reference (data, tokenizer, the pretrained
#: arm's built models, in the study's results folder); everything else under results/ is made
#: again by the killed run
KEEP = ("data", "checks", "tokenizer", "pretrained/models")

JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", re.M)
FINISHED = re.compile(r"^Finished jobid: (\d+)", re.M)


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), *args]


def _jobs(log_text: str) -> list[dict[str, str]]:
    """Jobs in the order Snakemake started them: rule, jobid and log file ("" if none)."""
    jobs = []
    for m in JOB.finditer(log_text):
        fields = dict(line.strip().split(": ", 1) for line in m.group(2).splitlines()
                      if ": " in line)
        if "jobid" in fields:
            jobs.append({"rule": m.group(1), "jobid": fields["jobid"],
                         "log": fields.get("log", "")})
    return jobs


def _forget_late_outputs(work: Path) -> None:
    """Delete every output under ``work/results`` except :data:`KEEP`, and the job logs."""
    keep = {results_of(work) / k for k in KEEP}

    def prune(folder: Path) -> None:
        for path in folder.iterdir():
            if path in keep:
                continue
            if path.is_dir() and any(path in k.parents for k in keep):
                prune(path)
            elif path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    prune(work / "results")
    shutil.rmtree(work / "logs", ignore_errors=True)


def _temporaries(folder: Path) -> list[str]:
    """Files and folders under ``folder`` with a temporary name (``*.tmp``, ``.*.tmp``)."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [os.path.join(root, n) for n in dirs + files if n.endswith(".tmp")]
    return sorted(found)


def _lines(path: Path) -> int:
    """Complete lines in a file (0 if it does not exist)."""
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def _kill_at_random_point(proc: subprocess.Popen, log: Path, work: Path, ref: Path, k: int,
                          fraction: float, delay: float, timeout: float) -> dict:
    """SIGKILL the process group of ``proc`` once the k-th job of :data:`KILL_RULES` (in the
    order they start) has ``fraction`` of the lines its log has in ``ref``, plus ``delay``
    seconds, at the first moment from then on when a job runs (its log file exists: its shell
    started). Returns the kill point: the job, the lines, the jobs that were running."""
    deadline = time.monotonic() + timeout
    target, need, reached = None, 0, None
    while time.monotonic() < deadline and proc.poll() is None:
        text = log.read_text()
        jobs = _jobs(text)
        done = set(FINISHED.findall(text))
        if target is None and sum(j["rule"] in KILL_RULES for j in jobs) >= k:
            target = [j for j in jobs if j["rule"] in KILL_RULES][k - 1]
            need = int(fraction * _lines(ref / target["log"]))
        if target is not None and reached is None and (
                _lines(work / target["log"]) >= need or target["jobid"] in done):
            reached = time.monotonic()
        if reached is not None and time.monotonic() - reached >= delay:
            running = [j for j in jobs
                       if j["jobid"] not in done and j["log"] and (work / j["log"]).exists()]
            if running:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return {"job": target, "lines": need, "of": _lines(ref / target["log"]),
                        "running": running}
        time.sleep(0.02)
    raise AssertionError(
        f"seed {KILL_SEED}: the run ended (exit {proc.poll()}) or timed out before the kill "
        f"point (job {k} of {KILL_RULES}, {fraction:.2f} of its log):\n"
        f"{log.read_text()[-3000:]}"
    )


def _group_gone(pgid: int, wait: float = 10.0) -> bool:
    """Whether no process of the group is left (within ``wait`` seconds)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _assert_same_tables(ref: Path, work: Path, context: str) -> None:
    """Every ``results/tiny/tables/*.tsv`` of ``work`` equals ``ref``'s, cell for cell as written,
    except :data:`WALL_TIME_COLUMNS`; both runs have the same tables."""
    ref_tables, tables = results_of(ref) / "tables", results_of(work) / "tables"
    names = sorted(p.name for p in ref_tables.glob("*.tsv"))
    assert names, f"{ref}: the reference has no tables"
    got = sorted(p.name for p in tables.glob("*.tsv"))
    assert got == names, f"{context}: tables {got}, expected {names}"
    for name in names:
        a, b = _read(ref_tables / name), _read(tables / name)
        assert list(a.columns) == list(b.columns), f"{context}: {name} columns differ"
        keep = [c for c in a.columns if c not in WALL_TIME_COLUMNS]
        a, b = a[keep], b[keep]
        if not a.equals(b):
            diff = a.compare(b) if a.shape == b.shape else f"shapes {a.shape} != {b.shape}"
            raise AssertionError(f"{context}: {name} differs from the uninterrupted run:\n{diff}")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_at_random_point_then_rerun_incomplete_gives_the_same_tables(
        tiny_study, tmp_path):
    ref = tiny_study
    assert not _temporaries(ref / "results"), "the uninterrupted run left temporaries"
    ref_log = (ref.parent / f"{ref.name}.log").read_text()
    n_jobs = sum(j["rule"] in KILL_RULES for j in _jobs(ref_log))
    assert n_jobs >= 4, f"the reference ran {n_jobs} jobs of {KILL_RULES}"
    # the copy below runs these same jobs again; not after the last two, so that one runs
    rng = random.Random(KILL_SEED)
    k, fraction, delay = rng.randint(1, n_jobs - 2), rng.random(), rng.uniform(0, MAX_DELAY_S)

    work = tmp_path / "work"
    shutil.copytree(ref, work, symlinks=True)
    _forget_late_outputs(work)
    config = str(work / "tiny.yaml")
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        # a new session: killing its process group kills Snakemake and its running jobs at
        # once (jobs run in Snakemake's group), as a failed node would
        proc = subprocess.Popen(
            _snakemake(work, "--cores", "2", "--configfile", config), stdout=out,
            stderr=subprocess.STDOUT, env=tool_env(), start_new_session=True,
        )
        try:
            point = _kill_at_random_point(proc, log, work, ref, k, fraction, delay, timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    running = point["running"]
    context = (f"seed {KILL_SEED}: killed {delay:.2f} s after {point['job']['log']} (job {k} "
               f"of {n_jobs}) had {point['lines']} of its {point['of']} lines; running: "
               + ", ".join(j["log"] for j in running))
    assert _group_gone(proc.pid), f"{context}: processes of the killed group are left"
    checkpoints = sorted((results_of(work) / "pretrain").glob("*/checkpoint.pt"))
    assert not (results_of(work) / "summary.md").exists(), context
    locks = work / ".snakemake" / "locks"
    assert locks.is_dir() and any(locks.iterdir()), f"{context}: the kill left no lock"

    unlock = subprocess.run(_snakemake(work, "--configfile", config, "--unlock"),
                            capture_output=True, text=True, env=tool_env(), check=False)
    assert unlock.returncode == 0, f"{context}: --unlock failed:\n{unlock.stderr[-3000:]}"
    assert not locks.exists() or not any(locks.iterdir()), \
        f"{context}: --unlock left {sorted(locks.iterdir())}"
    again = subprocess.run(
        _snakemake(work, "--cores", "2", "--configfile", config, "--rerun-incomplete"),
        capture_output=True, text=True, env=tool_env(), timeout=400, check=False,
    )
    out = again.stdout + again.stderr
    assert again.returncode == 0, f"{context}: the rerun failed:\n{out[-5000:]}"
    # the interrupted jobs ran again (all of them but one that had just finished when the
    # kill came, before Snakemake logged it)
    rerun = {j["log"] for j in _jobs(out)}
    assert {j["log"] for j in running} & rerun, f"{context}: rerun jobs {sorted(rerun)}"

    # a pretraining run killed after a checkpoint resumed from it (and removed it)
    for ckpt in checkpoints:
        summary = json.loads((ckpt.parent / "summary.json").read_text())
        assert summary["resumed"] is True and not ckpt.exists(), f"{context}: {ckpt}"
    _assert_same_tables(ref, work, context)
    left = _temporaries(work / "results")
    assert not left, f"{context}: temporaries left under results/: {left}"
    incomplete = work / ".snakemake" / "incomplete"
    assert not incomplete.is_dir() or not any(incomplete.iterdir()), \
        f"{context}: Snakemake still marks outputs incomplete: {sorted(incomplete.iterdir())}"
