"""Bad study configs, one case per kind (issue 13): each is refused by `cortexscale validate`
with exit code 2 and a message that names the file and the key, and at workflow start.

The data and stage side (truncated files, NaN runs, unreadable outputs) is in
tests/test_bad_inputs.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from wfutils import REPO, run_snakemake, tiny_config

from cortexscale.cli import main
from cortexscale.config import ConfigError, check_config, load_config, merge

NAN, INF = math.nan, math.inf

# (case id, override merged over the tiny study, words the message must hold)
CASES = [
    ("nan-tr", {"fmri": {"tr": NAN}}, ["'fmri.tr'", "finite", "nan"]),
    ("inf-lr", {"pretrain": {"lr": INF}}, ["'pretrain.lr'", "finite", "inf"]),
    ("nan-snr", {"fmri": {"snr": [NAN]}}, ["'fmri.snr.0'", "finite"]),
    ("neg-inf-alpha", {"encoding": {"alphas": {"min": -INF, "max": 3, "n": 5}}},
     ["'encoding.alphas.min'", "finite"]),
    ("nan-dropout", {"pretrain": {"dropout": NAN}}, ["'pretrain.dropout'", "finite"]),
    ("nan-fdr", {"encoding": {"fdr_q": NAN}}, ["'encoding.fdr_q'", "finite"]),
    ("float-steps", {"pretrain": {"steps": 20.0}}, ["'pretrain.steps'", "integer", "20.0"]),
    ("float-batch", {"tokenizer": {"batch_size": 4.0}}, ["'tokenizer.batch_size'", "integer"]),
    ("float-delay", {"encoding": {"delays": [1, 2.0]}}, ["'encoding.delays.1'", "integer"]),
    ("bool-steps", {"pretrain": {"steps": True}}, ["'pretrain.steps'", "integer", "true"]),
    ("string-steps", {"pretrain": {"steps": "20"}}, ["'pretrain.steps'", "integer", '"20"']),
    ("negative-seed", {"seed": -1}, ["'seed'", "minimum 0", "-1"]),
    ("zero-tr", {"fmri": {"tr": 0}}, ["'fmri.tr'", "exclusiveMinimum 0"]),
    ("unknown-key", {"pretrain": {"stpes": 10}}, ["'stpes'", "allowed keys"]),
    ("unknown-top-key", {"pretrian": {}}, ["'pretrian'", "allowed keys"]),
    ("bad-enum", {"encoding": {"score": "spearman"}}, ["'encoding.score'", "pearson", "spearman"]),
    ("bad-precision", {"grid": {"precision": ["fp8"]}}, ["'grid.precision.0'", "fp8"]),
    ("duplicate-subjects", {"subjects": ["sub-01", "sub-01"]}, ["'subjects'"]),
    ("shell-subject", {"subjects": ["sub-01;rm"]}, ["'subjects.0'", "pattern"]),
    ("shell-study", {"study": "a $(b)"}, ["'study'", "pattern"]),
    # results/<study>: '..' would be the repository itself (and `make clean-results` removes it)
    ("parent-study", {"study": ".."}, ["'study'", "pattern", '".."']),
    ("option-subject", {"subjects": ["-h"]}, ["'subjects.0'", "pattern"]),
    ("parent-model", {"pretrained_models": {"models": [{"name": "..", "build": "vit"}]}},
     ["'pretrained_models.models.0.name'", "pattern"]),
    ("delay-longer-than-run", {"encoding": {"delays": [1, 40]}},
     ["encoding.delays", "40 TRs", "fmri.trs_per_run"]),
    ("alphas-min-above-max", {"encoding": {"alphas": {"min": 4, "max": 1, "n": 3}}},
     ["encoding.alphas", "min (4)"]),
    ("min-lr-above-lr", {"pretrain": {"lr": 1e-4, "min_lr": 1e-2}}, ["pretrain.min_lr"]),
    ("empty-heads", {"grid": {"base": {"hidden": 2, "layers": 1, "heads": 4},
                              "vary": {"hidden": [], "layers": [], "heads": []}}},
     ["grid", "hidden must be at least the number of heads"]),
    ("prepared-without-root", {"fmri": {"source": "prepared"}}, ["fmri.root is required"]),
    ("images-through-videogpt", {"fmri": {"source": "algonauts2023", "root": "/data/nsd"}},
     ["fmri.source", "'algonauts2023'", "pretrained_models.only: true", "found False"]),
    ("frames-without-path", {"corpus": {"source": "frames_h5"}}, ["corpus.path is required"]),
    ("downsample-not-dividing", {"tokenizer": {"downsample": [4, 8, 32]}},
     ["tokenizer.downsample", "corpus.width"]),
    ("block-missing", {"features": {"layers": [5]}}, ["features.layers", "block 5"]),
    ("too-few-train-runs", {"fmri": {"n_runs": 2, "repeated_runs": 1}},
     ["fmri.repeated_runs", "cross-validation needs 2"]),
]


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


@pytest.mark.parametrize(("override", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validate_refuses(tmp_path, capsys, override, words):
    path = _write(tmp_path, merge(tiny_config(), override))
    assert main(["validate", path]) == 2
    err = capsys.readouterr().err
    assert path in err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]  # nothing written


def test_every_problem_is_listed_at_once():
    cfg = merge(tiny_config(), {"fmri": {"tr": NAN}, "pretrain": {"steps": 2.5}})
    with pytest.raises(ConfigError) as info:
        check_config(cfg, "study.yaml")
    assert "'fmri.tr'" in str(info.value) and "'pretrain.steps'" in str(info.value)


YAML_CASES = [
    ("duplicate-top-key", "study: a\nstudy: b\n", ["'study' is given twice", "lines 1 and 2"]),
    ("duplicate-nested-key", "pretrain:\n  steps: 5\n  lr: 0.1\n  steps: 6\n",
     ["'steps' is given twice", "lines 2 and 4"]),
    ("malformed", "fmri: {source: [synthetic\n", ["is not valid YAML"]),
    ("tab-indent", "pretrain:\n\tsteps: 5\n", ["is not valid YAML"]),
    ("python-object", "study: !!python/object/apply:os.system ['touch PWNED']\n",
     ["is not valid YAML"]),
    ("not-a-mapping", "- a\n- b\n", ["the config must be a mapping"]),
]


@pytest.mark.parametrize(("text", "words"), [c[1:] for c in YAML_CASES],
                         ids=[c[0] for c in YAML_CASES])
def test_validate_refuses_yaml(tmp_path, capsys, monkeypatch, text, words):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert not (tmp_path / "PWNED").exists()


def test_empty_study_file(tmp_path, capsys):
    """An empty study changes nothing: Snakemake runs the default study; alone it is empty."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--standalone", str(path)]) == 2
    assert "lacks a required key" in capsys.readouterr().err


def test_missing_config_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml does not exist" in capsys.readouterr().err


def test_load_config_keeps_yaml_tags_out(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("study: !!python/name:os.system\n")
    with pytest.raises(ConfigError, match="s.yaml is not valid YAML"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "words"),
    [("study: a\nstudy: b\n", ["study.yaml", "'study' is given twice"]),
     ("encoding:\n  delays: [1, 500]\n", ["encoding.delays", "500 TRs"]),
     ("pretrain:\n  steps: 20.0\n", ["'pretrain.steps'", "integer"])],
    ids=["duplicate-key", "delay-too-long", "float-steps"],
)
def test_workflow_start_refuses(tmp_path, text, words):
    """The same checks stop `snakemake` before any job, naming the file."""
    (tmp_path / "study.yaml").write_text(text)
    res = run_snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "study.yaml"))
    assert res.returncode != 0
    for word in words:
        assert word in res.stderr + res.stdout
    assert not (tmp_path / "results").exists()


def test_encode_refuses_delays_longer_than_a_run():
    from cortexscale.encoding.design import feature_design

    runs = [{"run": "r1", "x": np.ones((30, 2)), "y": np.ones((30, 3))},
            {"run": "short", "x": np.ones((4, 2)), "y": np.ones((4, 3))}]
    with pytest.raises(ValueError, match="delay of 4 TRs does not fit run 'short' of 4 TRs"):
        feature_design(runs, [1, 4])


def test_default_config_is_strict_clean():
    """The shipped default study passes the stricter types (no float counts, no NaN)."""
    load_config(REPO / "config" / "config.yaml")


# --------------------------------------------------------------- validate = what Snakemake runs
@pytest.mark.parametrize("study", sorted((REPO / "config" / "studies").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_study_validates(study, capsys):
    assert main(["validate", str(study)]) == 0
    assert "valid" in capsys.readouterr().out


def test_partial_study_is_merged_over_the_default(tmp_path, capsys):
    """A study file with only the keys it changes validates, as `--configfile` runs it."""
    path = tmp_path / "mine.yaml"
    path.write_text("study: mine\npretrain:\n  steps: 30\n")
    assert main(["validate", str(path)]) == 0
    assert main(["validate", "--standalone", str(path)]) == 2  # alone it lacks the corpus etc.
    assert "'corpus'" in capsys.readouterr().err


def test_validate_lists_every_problem_with_the_semantic_checks(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "encoding:\n  delays: [1, 500]\n"
        "pretrained_models:\n  ensembles:\n    - {name: e, members: [tiny-vit, nope]}\n"
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "mine.yaml (merged over" in err
    assert "500 TRs" in err and "member(s) ['nope']" in err
