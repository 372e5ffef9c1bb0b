"""The CLI dispatches: every stage module's commands, user errors as one line, bugs loud."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from cortexscale import cli
from cortexscale.errors import CortexscaleError, InputError


def test_every_stage_module_declares_its_commands():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "stage")
    assert {"validate", "estimate", "install-profile", "corpus", "fmri", "fmri-import",
            "fmri-check", "tokenizer", "pretrain", "launch", "features", "reference-features",
            "encode", "aggregate", "analyse", "brain-maps", "pretrained-build",
            "pretrained-features", "pretrained-encode", "pretrained-ensemble",
            "pretrained-aggregate"} == set(sub.choices)
    for name in cli.STAGE_MODULES:  # one module per rule file, each with register()
        assert callable(importlib.import_module(f"cortexscale.stages.{name}").register)


def _run_with(monkeypatch, exc):
    def fail(args):
        raise exc

    real = cli.build_parser

    def parser():
        p = real()
        sub = next(a for a in p._actions if a.dest == "stage")
        sub.choices["fmri-check"].set_defaults(func=fail)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)
    return cli.main(["fmri-check", "--sections", "{}", "--fmri-root", "x", "--out", "y"])


def test_a_user_error_is_one_line_and_exit_2(monkeypatch, capsys):
    assert _run_with(monkeypatch, InputError("runs.tsv: expected a column 'split', found none")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cortexscale fmri-check: error: runs.tsv: expected a column 'split', found "
                   "none"]
    assert issubclass(InputError, CortexscaleError) and issubclass(InputError, ValueError)


@pytest.mark.parametrize("exc", [ValueError("a bug"), KeyError("k"), OSError(5, "I/O error")])
def test_any_other_exception_keeps_its_traceback(monkeypatch, exc):
    with pytest.raises(type(exc)):
        _run_with(monkeypatch, exc)


def test_the_console_script_exits_1_with_a_traceback_on_a_bug(tmp_path):
    # a stage function that is not a CortexscaleError: Python's own exit status and traceback
    code = ("import sys\nfrom cortexscale import cli\nreal = cli.build_parser\n"
            "def p():\n    q = real()\n    s = next(a for a in q._actions if a.dest == 'stage')\n"
            "    s.choices['fmri-check'].set_defaults(func=lambda a: 1 / 0)\n    return q\n"
            "cli.build_parser = p\nsys.exit(cli.main(['fmri-check', '--sections', '{}', "
            "'--fmri-root', 'x', '--out', 'y']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr
