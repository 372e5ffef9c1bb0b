"""Faults a long sweep meets: a job that fails its first attempt, and a killed Snakemake.

Both run locally (no Slurm) and compare the encoding table with an uninterrupted run of the
same config (clusterutils.local_reference via copy_of_reference, shared with test_slurm.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clusterutils import TABLE, TARGET, assert_same_table, cluster_config, copy_of_reference
from wfutils import BIN, REPO, tool_env


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), *args]


def _fail_once_bin(tmp: Path, stage: str) -> Path:
    """A `cortexscale` first on PATH that fails the first `stage` call like an OOM kill."""
    bindir = tmp / "failbin"
    bindir.mkdir()
    script = bindir / "cortexscale"
    mark = tmp / "failed-once"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = {stage} ] && [ ! -e {mark} ]; then\n'
        f"  touch {mark}\n"
        '  echo "MemoryError: simulated out-of-memory kill on the first attempt" >&2\n'
        "  exit 137\n"
        "fi\n"
        f'exec {BIN / "cortexscale"} "$@"\n'
    )
    script.chmod(0o755)
    return bindir


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_failed_first_attempt_is_retried_with_more_memory(tmp_path, tmp_path_factory):
    ref, work = copy_of_reference(tmp_path_factory.getbasetemp(), tmp_path)
    # one encoding job (and the tables downstream) must run again
    victim = work / "results" / "tiny" / "encoding"
    table = sorted(victim.rglob("*.tsv"))[0]
    table.unlink()
    table.with_suffix(".json").unlink()
    (work / TABLE).unlink()
    config = work / "tiny.yaml"
    env = tool_env()
    env["PATH"] = f"{_fail_once_bin(tmp_path, 'encode')}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        _snakemake(work, TARGET, "--cores", "2", "--configfile", str(config), "--retries", "1"),
        capture_output=True, text=True, env=env, timeout=500, check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert (tmp_path / "failed-once").exists()  # the first attempt really failed
    base = cluster_config()["resources"]["mem_mb"]
    encode_mems = [int(m) for m in re.findall(r"rule encode:.*?mem_mb=(\d+)", out, re.S)]
    assert encode_mems[:2] == [base, 2 * base], encode_mems  # attempt 2 asked for twice
    assert_same_table(ref, work)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path, tmp_path_factory):
    # the reference's data and tokenizer are kept; training, features and encoding rerun
    ref, work = copy_of_reference(tmp_path_factory.getbasetemp(), tmp_path)
    for stage in ("pretrain", "features", "encoding", "tables"):
        shutil.rmtree(work / "results" / "tiny" / stage)
    shutil.rmtree(work / "logs" / "tiny" / "pretrain")
    config = work / "tiny.yaml"
    # a new session: killing its process group kills Snakemake and its running jobs at once,
    # as a crashed node or an OOM-killed login session would
    proc = subprocess.Popen(
        _snakemake(work, TARGET, "--cores", "2", "--configfile", str(config)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=tool_env(),
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any((work / "logs" / "tiny" / "pretrain").glob("*.log")):
                time.sleep(1.0)  # kill while pretraining runs
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (work / TABLE).exists()
    # the lock of the killed run stays behind; --unlock removes it (docs/cluster.md)
    unlock = subprocess.run(_snakemake(work, "--configfile", str(config), "--unlock"),
                            capture_output=True, text=True, env=tool_env(), check=False)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    again = subprocess.run(
        _snakemake(work, TARGET, "--cores", "2", "--configfile", str(config), "--rerun-incomplete"),
        capture_output=True, text=True, env=tool_env(), timeout=500, check=False,
    )
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert_same_table(ref, work)
