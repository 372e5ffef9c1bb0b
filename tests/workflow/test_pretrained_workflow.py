"""The pretrained-model arm in the workflow: job counts of the Matsuyama study (a dry run
without any weights or data) and of the default study; config checks."""

from __future__ import annotations

import pytest
import yaml
from wfutils import REPO, dry_run, load_default_config, pretrained_counts, write_yaml

from cortexscale.config import ConfigError, check_config, check_models_config, merge


def test_matsuyama_study_dry_runs(tmp_path):
    study = REPO / "config" / "studies" / "matsuyama2023.yaml"
    cfg = check_config(merge(load_default_config(), yaml.safe_load(study.read_text())))
    counts = dry_run(tmp_path, study)
    # image data, pretrained arm only: no VideoGPT job, models are params (not inputs)
    assert counts == {**pretrained_counts(cfg), "all": 1, "total": 58}
    # six models x eight subjects (every ROI stream in one job), two ensembles
    assert counts["pretrained_features"] == 6 and counts["pretrained_encode"] == 48
    assert counts["pretrained_ensemble"] == 2
    pre = cfg["pretrained_models"]
    assert pre["image_split"] == {"n_train": 4500, "n_test": 500}
    assert pre["sample_size"]["max"] == 8779 and len(cfg["subjects"]) == 8


def test_no_pretrained_models_keeps_videogpt_only(tmp_path):
    cfg = load_default_config()
    cfg["pretrained_models"] = {"models": [], "ensembles": []}
    counts = dry_run(tmp_path, write_yaml(tmp_path / "s.yaml", cfg))
    assert not any(k.startswith("pretrained") for k in counts) and counts["encode"] > 0
    del cfg["pretrained_models"]
    check_config(cfg)  # the section is optional


def test_config_checks():
    pre = check_config(load_default_config())["pretrained_models"]
    check_models_config(pre)
    bad = {**pre, "ensembles": [{"name": "e", "members": ["tiny-vit", "nope"]}]}
    with pytest.raises(ValueError, match="'nope'"):
        check_models_config(bad)
    both = {**pre, "models": [{"name": "m", "path": "x", "build": "vit"}]}
    with pytest.raises(ValueError, match="exactly one of 'path'"):
        check_models_config(both)
    cfg = load_default_config()
    cfg["pretrained_models"]["pool_kernels"] = [0]
    with pytest.raises(ConfigError, match="pool_kernels"):
        check_config(cfg)
