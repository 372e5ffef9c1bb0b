"""No config value reaches a shell unquoted (issue 13).

A study whose every user path holds a space, a quote, ``;`` and ``$(...)`` is dry-run with
``snakemake -n -p``; every printed shell command is then executed by bash with a stub
``cortexscale`` (and ``torchrun``) on the PATH that records its arguments. The paths must
arrive as single, intact arguments, and nothing inside them may run. Names (subjects, ROIs,
models, the study) become file names and wildcards: the schema refuses such characters in
them, which the last test checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from wfutils import run_snakemake, tiny_config, write_yaml

from cortexscale.config import ConfigError, check_config

NASTY = "a dir 'q\";x $(touch PWNED) `touch PWNED2`"
STUB = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["ARGV_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
"""


def _commands(dry_run_output: str) -> list[str]:
    """The shell commands of a ``snakemake -n -p`` output (one per job, single lines)."""
    prefix = "Shell command: "
    return [line[len(prefix):].strip() for line in dry_run_output.splitlines()
            if line.startswith(prefix) and line != prefix + "None"]  # rule all: no command


def _run_all(cmds: list[str], workdir: Path) -> list[list[str]]:
    """Run each command in bash with stub tools; return every recorded argv."""
    stubs = workdir / "stubs"
    stubs.mkdir()
    for tool in ("cortexscale", "torchrun"):
        (stubs / tool).write_text(STUB)
        (stubs / tool).chmod(0o755)
    log = workdir / "argv.jsonl"
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}",
           "ARGV_LOG": str(log)}
    for cmd in cmds:
        # a job's stderr goes to its log under logs/: make the folders the rule would have
        for target in re.findall(r"2> (\S+)", cmd):
            (workdir / target).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["bash", "-c", cmd], cwd=workdir, env=env, check=True, timeout=60)
    return [json.loads(line) for line in log.read_text().splitlines()]


def _value(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


@pytest.fixture
def nasty_study(tmp_path: Path) -> tuple[Path, dict]:
    work = tmp_path / "work"
    work.mkdir()
    root = tmp_path / NASTY
    cfg = tiny_config()
    cfg["fmri"] = {"source": "prepared", "root": str(root / "fmri")}
    cfg["reference"] = {"enabled": False}  # the synthetic world's arm
    cfg["corpus"] = {**cfg["corpus"], "source": "frames_h5", "path": str(root / "frames.h5")}
    cfg["pretrained_models"] = {
        "models": [{"name": "user-model", "path": str(root / "model"), "n_params": 10}],
        "sample_size": {"n_points": 0}, "ensembles": [],
    }
    return work, cfg


def test_dry_run_commands_keep_user_paths_whole(nasty_study):
    work, cfg = nasty_study
    configfile = write_yaml(work / "study.yaml", cfg)
    res = run_snakemake(work, "-n", "-p", "--configfile", str(configfile), "--cores", "1")
    assert res.returncode == 0, res.stderr + res.stdout
    cmds = _commands(res.stdout + res.stderr)
    assert len(cmds) >= 6, res.stdout
    argvs = _run_all(cmds, work)
    assert len(argvs) == len(cmds)
    # nothing inside a path ran, in the work folder or anywhere the commands could reach
    assert not list(work.rglob("PWNED*")), "a command substitution in a config path ran"

    fmri_root = cfg["fmri"]["root"]
    seen = {argv[1] for argv in argvs}
    assert {"fmri-check", "features", "encode", "pretrained-features"} <= seen, seen
    for argv in argvs:
        if "--fmri-root" in argv:
            assert _value(argv, "--fmri-root") == fmri_root
        if "--sections" in argv:
            sections = json.loads(_value(argv, "--sections"))  # one intact JSON argument
            if "corpus" in sections:
                assert sections["corpus"]["path"] == cfg["corpus"]["path"]
            if "fmri" in sections:
                assert sections["fmri"]["root"] == fmri_root
        if argv[1] == "pretrained-features":
            assert _value(argv, "--model") == cfg["pretrained_models"]["models"][0]["path"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("study", "x $(touch PWNED)"),
        ("subjects", ["sub-01;ls"]),
        ("rois", ["early motion"]),
        ("pretrained_models", {"models": [{"name": "m'1", "build": "vit"}]}),
    ],
)
def test_names_with_shell_characters_are_refused(key, value):
    cfg = tiny_config()
    cfg[key] = value
    with pytest.raises(ConfigError, match=re.escape(key if key != "pretrained_models"
                                                    else "pretrained_models.models.0.name")):
        check_config(cfg, "study.yaml")
