"""Helpers for tests that run the workflow: paths, environment, configs."""

from __future__ import annotations

import os
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
}


def tiny_config() -> dict:
    """A study small enough to run end to end in about a minute."""
    from cortexscale.config import merge

    return merge(load_default_config(), TINY_OVERRIDES)
