import re
import subprocess
import sys

import pytest
import yaml
from wfutils import REPO, load_default_config, run_snakemake, tool_env, write_yaml

from cortexscale.config import (
    ConfigError,
    check_config,
    load_config,
    merge,
    validate_sections,
)


def test_default_config_is_valid():
    cfg = load_config(REPO / "config" / "config.yaml")
    assert cfg["grid"]["mode"] == "one_at_a_time"


def test_paper_study_is_valid_over_the_default():
    study = yaml.safe_load((REPO / "config" / "studies" / "ahmadi2024.yaml").read_text())
    cfg = check_config(merge(load_default_config(), study), "ahmadi2024.yaml")
    assert cfg["grid"]["data_sizes"] == [10000, 100000, 1000000, 6000000]
    assert cfg["subjects"] == ["sub-01", "sub-02", "sub-04", "sub-06"]


def test_defaults_are_filled():
    cfg = load_default_config()
    del cfg["pretrain"]["warmup_steps"]
    del cfg["encoding"]
    full = check_config(cfg)
    assert full["pretrain"]["warmup_steps"] == 20
    assert full["encoding"]["score"] == "pearson"


def test_unknown_key_names_key_and_allowed():
    cfg = load_default_config()
    cfg["grid"]["hiden"] = [1]
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'hiden' in 'grid'; allowed keys: base"):
        check_config(cfg, "my.yaml")


def test_wrong_type_names_key_and_value():
    cfg = load_default_config()
    cfg["pretrain"]["steps"] = "many"
    with pytest.raises(ConfigError, match=r"'pretrain.steps' must be of type integer; given \"many\""):
        check_config(cfg)


def test_enum_names_allowed_values():
    cfg = load_default_config()
    cfg["grid"]["precision"] = ["fp8"]
    with pytest.raises(ConfigError, match=r"'grid.precision.0' must be one of \['fp32', 'fp16', 'bf16'\]"):
        check_config(cfg)


def test_every_error_is_reported_at_once():
    cfg = load_default_config()
    cfg["seed"] = -1
    cfg["encoding"]["dtype"] = "float16"
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert "'seed'" in str(info.value) and "'encoding.dtype'" in str(info.value)


def test_hidden_smaller_than_heads_is_impossible():
    cfg = load_default_config()
    cfg["grid"]["vary"]["hidden"] = [1]
    with pytest.raises(ConfigError, match="hidden size 1 with 2 heads"):
        check_config(cfg)


def test_data_size_larger_than_synthetic_corpus_names_both_numbers():
    cfg = load_default_config()
    cfg["grid"]["data_sizes"] = [10**6]
    with pytest.raises(ConfigError, match=r"needs 62500 clips .* holds 512"):
        check_config(cfg)


def test_data_size_smaller_than_a_clip():
    cfg = load_default_config()
    cfg["grid"]["data_sizes"] = [4]
    with pytest.raises(ConfigError, match="less than one clip"):
        check_config(cfg)


def test_downsample_must_divide_the_clip():
    cfg = load_default_config()
    cfg["corpus"]["height"] = 36
    with pytest.raises(ConfigError, match=r"factor 8 does not divide corpus.height = 36"):
        check_config(cfg)


def test_feature_layer_must_exist_in_every_model():
    cfg = load_default_config()
    cfg["features"]["layers"] = [1]
    with pytest.raises(ConfigError, match="smallest grid model has 1 blocks"):
        check_config(cfg)


def test_too_few_training_runs():
    cfg = load_default_config()
    cfg["fmri"]["repeated_runs"] = 3
    with pytest.raises(ConfigError, match="leaves 1 training run"):
        check_config(cfg)


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("grid: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_sections_are_validated_alone():
    out = validate_sections({"pretrain": {"steps": 5}})
    assert out["pretrain"]["steps"] == 5 and out["pretrain"]["batch_size"] == 16
    with pytest.raises(ConfigError, match="unknown key"):
        validate_sections({"pretraining": {}})
    with pytest.raises(ConfigError, match="'pretrain.steps' must satisfy minimum"):
        validate_sections({"pretrain": {"steps": 0}})


def test_cli_validate_reports_bad_config(tmp_path):
    cfg = load_default_config()
    cfg["rois"] = []
    path = write_yaml(tmp_path / "bad.yaml", cfg)
    proc = subprocess.run(
        [sys.executable, "-m", "cortexscale.cli", "validate", str(path)],
        capture_output=True, text=True, env=tool_env(), check=False,
    )
    assert proc.returncode == 2
    assert "bad.yaml is not a valid cortexscale config" in proc.stderr
    assert "'rois'" in proc.stderr


def test_cli_validate_accepts_default():
    proc = subprocess.run(
        [sys.executable, "-m", "cortexscale.cli", "validate", str(REPO / "config" / "config.yaml")],
        capture_output=True, text=True, env=tool_env(), check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "16 grid points x 2 subjects x 4 ROIs" in proc.stdout


def test_workflow_stops_before_any_job_on_bad_config(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"grid": {"precision": ["fp64"]}})
    proc = run_snakemake(tmp_path, "--cores", "1", "--configfile", str(path))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "'grid.precision.0' must be one of ['fp32', 'fp16', 'bf16']; given \"fp64\"" in out
    assert not (tmp_path / "results").exists()


def _schema_keys(node: dict, path: tuple[str, ...] = ()):
    """Every property of the config schema, nested ones (and those of list items) included."""
    for key, sub in node.get("properties", {}).items():
        yield (*path, key)
        yield from _schema_keys(sub, (*path, key))
        if isinstance(sub.get("items"), dict):
            yield from _schema_keys(sub["items"], (*path, key))


def test_every_config_key_is_documented():
    """config/README.md names every key of the schema in code spans (tables or inline)."""
    schema = yaml.safe_load(
        (REPO / "src" / "cortexscale" / "resources" / "config.schema.yaml").read_text()
    )
    spans = " ".join(re.findall(r"`([^`]+)`", (REPO / "config" / "README.md").read_text()))
    keys = list(_schema_keys(schema))
    assert len(keys) > 50
    undocumented = [".".join(p) for p in keys if not re.search(rf"\b{re.escape(p[-1])}\b", spans)]
    assert not undocumented, f"config/README.md does not document {undocumented}"
