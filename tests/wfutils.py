"""Helpers for tests that run the workflow: paths, environment, configs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool_env() -> dict[str, str]:
    """Environment in which `cortexscale` and `snakemake` of this interpreter are found."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` and capture its output."""
    cmd = [
        str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir), *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, env=tool_env(), timeout=timeout, check=False
    )


def write_yaml(path: Path, obj) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return path


def load_default_config() -> dict:
    """The default study config as YAML gives it (no defaults filled)."""
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


TINY_OVERRIDES = {
    "study": "tiny",
    "corpus": {"n_sources": 2, "frames_per_source": 256, "clip_len": 8, "height": 16,
               "width": 16},
    "fmri": {"n_runs": 3, "repeated_runs": 1, "trs_per_run": 40, "n_parcels": 8,
             "snr": [2.0]},
    "subjects": ["sub-01"],
    "rois": ["early", "motion"],
    "grid": {"data_sizes": [128, 256], "base": {"hidden": 16, "layers": 1, "heads": 1},
             "vary": {"hidden": [8, 16], "layers": [], "heads": []},
             "mode": "one_at_a_time", "precision": ["fp32"]},
    "tokenizer": {"codebook_size": 32, "embedding_dim": 8, "hidden": 8, "n_res_layers": 1,
                  "downsample": [4, 8, 8], "steps": 20, "batch_size": 4},
    "pretrain": {"steps": 20, "batch_size": 4, "warmup_steps": 2, "eval_every": 10,
                 "eval_clips": 4},
    "encoding": {"alphas": {"min": -1, "max": 3, "n": 5}, "delays": [1, 2], "cv_folds": 2},
    "scaling": {"n_boot": 50},
    # the planted law at 3 budgets x 5 sizes (its optima lie inside), one noise seed
    "reference": {"budgets": ["1e10", "3e10", "1e11"],
                  "n_params": [2500, 5000, 10000, 20000, 40000],
                  "seeds": [0]},
}


def results_of(work: Path, study: str = "tiny") -> Path:
    """A study's results folder in a work dir (``results/<study>/``; the tiny study is
    named ``tiny``)."""
    return work / "results" / study


def tiny_config() -> dict:
    """A study small enough to run end to end in about a minute."""
    from cortexscale.config import merge

    return merge(load_default_config(), TINY_OVERRIDES)


def run_tiny_study(work: Path, cfg: dict | None = None, timeout: float = 400) -> Path:
    """Run the whole tiny study (``cfg``, default :func:`tiny_config`; every target) in
    ``work`` once.

    The config is ``work / 'tiny.yaml'``; Snakemake's output is kept beside the work dir as
    ``work.parent / (work.name + '.log')`` (outside the work dir, so copies of it do not carry
    it). A second call with the same ``work`` finds the finished run and returns at once.
    """
    log = work.parent / f"{work.name}.log"
    if log.is_file() and (results_of(work) / "summary.md").is_file():
        return work
    work.mkdir(parents=True, exist_ok=True)
    config = write_yaml(work / "tiny.yaml", tiny_config() if cfg is None else cfg)
    proc = run_snakemake(work, "--cores", "2", "--configfile", str(config), timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    log.write_text(out)
    return work


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a Snakemake dry run."""
    table = output.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def pretrained_counts(cfg: dict) -> dict[str, int]:
    """Jobs of the pretrained-model arm (workflow/rules/pretrained.smk)."""
    pre = cfg.get("pretrained_models", {})
    models, ensembles = pre.get("models", []), pre.get("ensembles", [])
    if not models:
        return {}
    out = {"pretrained_features": len(models),
           "pretrained_encode": len(models) * len(cfg["subjects"]),
           "pretrained_aggregate": 1}
    if any(m.get("build") for m in models):
        out["pretrained_build"] = 1
    if ensembles:
        out["pretrained_ensemble"] = len(ensembles)
    return out


def dry_run(tmp_path, configfile):
    proc = run_snakemake(tmp_path, "-n", "--quiet", "rules", "--configfile", str(configfile))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return job_counts(proc.stdout + proc.stderr)
