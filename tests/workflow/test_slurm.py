"""The tiny study through a real one-node Slurm cluster (scripts/slurm-cluster.sh).

The fixture starts the cluster, installing Debian's slurm-wlm and munge with apt-get when
they are missing (CI runs as root on a fresh Debian machine); elsewhere, without root and
without Slurm, the test is skipped. The cluster is stopped at the end of the session.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from clusterutils import (
    TABLE,
    TARGET,
    assert_same_table,
    cluster_config,
    copy_of_reference,
    local_reference,
)
from wfutils import BIN, REPO, run_snakemake, tool_env, write_yaml

pytestmark = pytest.mark.slurm

SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
STATE = "/tmp/cortexscale-slurm-test"
LOCK = "/tmp/cortexscale-slurm-test.lock"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        pytest.skip("starting munged and slurmd needs root (CI runs as root)")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("no Slurm installed and no apt-get to install it")
    # One cluster per machine: sessions take turns (a lock), and a cluster left behind by a
    # killed session (same fixed folder) is stopped before this one starts.
    lock = open(LOCK, "w")  # noqa: SIM115 - held for the whole session
    fcntl.flock(lock, fcntl.LOCK_EX)
    env = {**os.environ, "CORTEXSCALE_SLURM_DIR": STATE}
    # SIGTERM (a CI timeout) becomes KeyboardInterrupt, so the teardown below still runs
    previous = signal.signal(signal.SIGTERM, _interrupt)
    subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120,
                   check=False)
    try:
        proc = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True,
                              timeout=400, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield Path(STATE) / "slurm.conf"
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120,
                       check=False)
        signal.signal(signal.SIGTERM, previous)
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def test_profile_config_in_repo_is_valid():
    import yaml

    prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert "--signal=TERM@" in prof["set-resources"]["pretrain"]["slurm_extra"]
    assert any(g.startswith("encode=") for g in prof["group-components"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_study_on_slurm_equals_local(slurm_cluster, tmp_path, tmp_path_factory):
    ref = local_reference(tmp_path_factory.getbasetemp())
    # The stages go to Slurm as three packs (group jobs): data and tokenizer; pretraining,
    # features and encoding of both grid points; aggregation. Few jobs keep the test fast:
    # each Slurm job starts two Snakemake processes, and the executor's status polling
    # backs off by 10 s per round in which no job finished.
    groups = {"corpus": "prep", "fmri_synthetic": "prep", "fmri_check": "prep",
              "tokenizer": "prep", "pretrain": "train", "features": "train",
              "encode": "train"}
    profile = _write_profile(tmp_path / "profile", retries=0, groups=groups,
                             components=["train=2"])
    config = write_yaml(tmp_path / "tiny.yaml", cluster_config())
    # the cluster's config is also at /etc/slurm/slurm.conf (the job's inner srun needs it)
    proc = run_snakemake(tmp_path, TARGET, "--profile", str(profile), "--configfile",
                         str(config), timeout=800)
    out = proc.stdout[-6000:] + proc.stderr[-6000:]
    assert proc.returncode == 0, out
    assert "slurm" in out.lower()
    # jobs really went through Slurm: the plugin kept their logs
    slurm_logs = list((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert any("group_train" in str(p) for p in slurm_logs), out
    assert any("rule_aggregate" in str(p) for p in slurm_logs), out
    assert (tmp_path / TABLE).is_file()
    # `cortexscale` was found in the jobs: the venv's bin is on PATH (tool_env) and the
    # plugin submits with --export=ALL
    assert_same_table(ref, tmp_path)


def _write_profile(path, retries: int, groups=None, components=()):
    """A test profile: the Slurm executor with squeue status, no account, fast polling."""
    path.mkdir()
    write_yaml(path / "config.yaml", {
        "executor": "slurm",
        "jobs": 4,
        # caps each job's threads and each group's pooled cores (the node has 2 CPUs in CI)
        "cores": 2,
        "latency-wait": 5,
        "retries": retries,
        "slurm-status-command": "squeue",
        "slurm-no-account": True,
        "slurm-init-seconds-before-status-checks": 1,
        "seconds-between-status-checks": 1,
        "max-status-checks-per-second": 10,
        "slurm-keep-successful-logs": True,
        "default-resources": {"mem_mb": 500, "runtime": 10},
        "set-resources": {"pretrain": {"slurm_extra": "'--signal=TERM@120'"}},
        **({"groups": [f"{r}={g}" for r, g in groups.items()]} if groups else {}),
        **({"group-components": list(components)} if components else {}),
    })
    return path


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_signal_checkpoints_and_retry_resumes_on_slurm(slurm_cluster, tmp_path,
                                                       tmp_path_factory):
    """SIGTERM to the job's processes (what --signal=TERM@120 sends before the time limit):
    pretraining checkpoints and exits 75, Snakemake retries the job, the retry resumes."""
    ref, work = copy_of_reference(tmp_path_factory.getbasetemp(), tmp_path)
    cfg = cluster_config()
    # long enough to be caught running; no periodic checkpoints, so a resume proves that
    # the signal's checkpoint was written
    cfg["pretrain"] = {**cfg["pretrain"], "steps": 3000, "eval_every": 1000,
                       "checkpoint_every": 0}
    config = write_yaml(work / "long.yaml", cfg)
    grid = sorted(p.name for p in (work / "results" / "tiny" / "pretrain").iterdir())[0]
    target = f"results/tiny/pretrain/{grid}/summary.json"
    profile = _write_profile(tmp_path / "profile", retries=1)
    env = tool_env()
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(work), target, "--profile", str(profile), "--configfile", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    log = work / "logs" / "tiny" / "pretrain" / f"{grid}.log"
    signalled = None
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None and signalled is None:
            text = log.read_text() if log.is_file() else ""
            if re.search(r"step \d+/3000, elapsed .*train_loss", text):  # a progress line
                q = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i|%k"], env=env,
                                   capture_output=True, text=True, check=False)
                ids = [line.split("|")[0] for line in q.stdout.split()
                       if "pretrain" in line]
                if ids:
                    subprocess.run(["scancel", "--signal=TERM", ids[0]], env=env, check=True)
                    signalled = ids[0]
            time.sleep(0.3)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert signalled, "the pretraining job was never seen running"
    assert proc.returncode == 0, out[-6000:]
    summary = json.loads((work / target).read_text())
    assert summary["resumed"] is True, out[-3000:]
    assert summary["steps"] == 3000
    first = next((work / ".snakemake" / "slurm_logs").rglob(f"{signalled}.log")).read_text()
    assert "75" in first or "non-zero exit" in first, first[-2000:]
    assert "resuming from" in log.read_text()


def test_estimate_matches_flops_formula():
    from cortexscale.config import check_config
    from cortexscale.estimate import estimate
    from cortexscale.grid import expand

    cfg = check_config(cluster_config())
    cfg["resources"].update(gpu=1, gpus_per_model=[{"min_params": 12 * 16**2, "gpus": 2}])
    rows = estimate(cfg, device="H100 SXM", mfu=0.5)
    assert [r["grid"] for r in rows] == [p.name for p in expand(cfg["grid"])]
    pre = cfg["pretrain"]
    for r in rows:
        assert r["tokens"] % (pre["steps"] * pre["batch_size"]) == 0
        assert r["flops"] > 6 * r["n_params"] * r["tokens"] * 0.5
        assert r["gpu_hours"] == pytest.approx(r["flops"] / (0.5 * 494.7e12) / 3600)
        assert r["gpus"] == (2 if "_h16_" in r["grid"] else 1)
        assert r["wall_hours"] == pytest.approx(r["gpu_hours"] / r["gpus"])


def test_install_profile(tmp_path):
    from cortexscale.cli import main

    assert main(["install-profile", "slurm", "--dest", str(tmp_path)]) == 0
    installed = tmp_path / "slurm" / "config.yaml"
    assert installed.read_text() == (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    assert main(["install-profile", "slurm", "--dest", str(tmp_path)]) == 2
    assert main(["install-profile", "slurm", "--dest", str(tmp_path), "--force"]) == 0


def test_multi_gpu_pretraining_per_grid_point_dry_run(tmp_path):
    cfg = cluster_config()
    cfg["resources"] = {**cfg["resources"], "gpu": 1, "threads": 2,
                        "gpus_per_model": [{"min_params": 12 * 16**2, "gpus": 4}]}
    config = write_yaml(tmp_path / "gpu.yaml", cfg)
    proc = run_snakemake(tmp_path, "-n", "-p", "--configfile", str(config),
                         "--resources", "gpu=4", "--cores", "8", "--forcerun", "pretrain")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    jobs = out.split("rule pretrain:")[1:]
    assert jobs
    for job in jobs:
        big = "_h16_" in job.split("wildcards:")[1].split("\n")[0]
        if big:
            assert "gpu=4" in job and "cpus_per_gpu=2" in job
            assert "torchrun --standalone --nnodes 1 --nproc-per-node 4 -m cortexscale.cli" \
                in job and "--threads 2 " in job and "--device cuda" in job
        else:
            assert "gpu=1" in job and "exec cortexscale pretrain" in job
