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


def fixed_grid_config() -> dict:
    """The default study with the fixed-size grid it had before the IsoFLOP default (2 data
    sizes x 4 models x 2 precisions, 8 x 1088 frames) and no reference arm: what these tests
    of the one_at_a_time checks start from."""
    cfg = load_default_config()
    cfg["corpus"].update(n_sources=8, frames_per_source=1088)
    cfg["grid"] = {"data_sizes": [2048, 8192], "base": {"hidden": 64, "layers": 2, "heads": 2},
                   "vary": {"hidden": [32, 64], "layers": [1, 2], "heads": [1, 2]},
                   "mode": "one_at_a_time", "precision": ["fp32", "bf16"]}
    cfg["reference"] = {"enabled": False}
    return cfg


def test_default_config_is_valid():
    cfg = load_config(REPO / "config" / "config.yaml")
    # the default study identifies the compute-optimal allocation: an IsoFLOP design with at
    # least 3 budgets over 10x, 3 models and 2 seeds (issue 14)
    grid = cfg["grid"]
    budgets = sorted(float(b) for b in grid["budgets"])
    assert grid["mode"] == "isoflop" and len(budgets) >= 3 and budgets[-1] / budgets[0] >= 10
    assert len(grid["models"]) >= 3 and len(grid["seeds"]) >= 2
    assert cfg["reference"]["n_params"] and cfg["pretrained_models"]["models"]


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
    cfg = fixed_grid_config()
    cfg["grid"]["hiden"] = [1]
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'hiden' in 'grid'; allowed keys: base"):
        check_config(cfg, "my.yaml")


def test_wrong_type_names_key_and_value():
    cfg = fixed_grid_config()
    cfg["pretrain"]["steps"] = "many"
    with pytest.raises(ConfigError, match=r"'pretrain.steps' must be of type integer; found \"many\""):
        check_config(cfg)


def test_enum_names_allowed_values():
    cfg = fixed_grid_config()
    cfg["grid"]["precision"] = ["fp8"]
    with pytest.raises(ConfigError, match=r"'grid.precision.0' must be one of \['fp32', 'fp16', 'bf16'\]"):
        check_config(cfg)


def test_every_error_is_reported_at_once():
    cfg = fixed_grid_config()
    cfg["seed"] = -1
    cfg["encoding"]["dtype"] = "float16"
    with pytest.raises(ConfigError) as info:
        check_config(cfg)
    assert "'seed'" in str(info.value) and "'encoding.dtype'" in str(info.value)


def test_hidden_smaller_than_heads_is_impossible():
    cfg = fixed_grid_config()
    cfg["grid"]["vary"]["hidden"] = [1]
    with pytest.raises(ConfigError, match="hidden size 1 with 2 heads"):
        check_config(cfg)


def test_data_size_larger_than_synthetic_corpus_names_both_numbers():
    cfg = fixed_grid_config()
    cfg["corpus"].update(n_sources=8, frames_per_source=1024)
    cfg["grid"]["data_sizes"] = [10**6]
    with pytest.raises(ConfigError, match=r"needs 62500 clips .* holds 512"):
        check_config(cfg)


def test_data_size_smaller_than_a_clip():
    cfg = fixed_grid_config()
    cfg["grid"]["data_sizes"] = [4]
    with pytest.raises(ConfigError, match="less than one clip"):
        check_config(cfg)


def test_downsample_must_divide_the_clip():
    cfg = fixed_grid_config()
    cfg["corpus"]["height"] = 36
    with pytest.raises(ConfigError, match=r"factor 8 does not divide corpus.height = 36"):
        check_config(cfg)


def test_feature_layer_must_exist_in_every_model():
    cfg = fixed_grid_config()
    cfg["features"]["layers"] = [1]
    with pytest.raises(ConfigError, match="smallest grid model has 1 blocks"):
        check_config(cfg)


def test_too_few_training_runs():
    cfg = fixed_grid_config()
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
    cfg = fixed_grid_config()
    cfg["rois"] = []
    path = write_yaml(tmp_path / "bad.yaml", cfg)
    proc = subprocess.run(
        [sys.executable, "-m", "cortexscale.cli", "validate", str(path)],
        capture_output=True, text=True, env=tool_env(), check=False,
    )
    assert proc.returncode == 2
    assert "bad.yaml (merged over" in proc.stderr and "is not a valid cortexscale config" in proc.stderr
    assert "'rois'" in proc.stderr


def test_cli_validate_accepts_default():
    proc = subprocess.run(
        [sys.executable, "-m", "cortexscale.cli", "validate", str(REPO / "config" / "config.yaml")],
        capture_output=True, text=True, env=tool_env(), check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "18 grid points x 2 subjects x 4 ROIs" in proc.stdout


def test_workflow_stops_before_any_job_on_bad_config(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", {"grid": {"precision": ["fp64"]}})
    proc = run_snakemake(tmp_path, "--cores", "1", "--configfile", str(path))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "'grid.precision.0' must be one of ['fp32', 'fp16', 'bf16']; found \"fp64\"" in out
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


# ------------------------------------------------------------------ grid modes (issue 14)
def _fits_reserve(cfg: dict) -> dict:
    """The default study with a synthetic corpus large enough for its largest data size
    and the validation reserve (9 x 1024 frames: 576 clips, 544 after 32 for validation)."""
    cfg["corpus"].update(n_sources=9, frames_per_source=1024)
    return cfg


def _isoflop(**grid) -> dict:
    cfg = _fits_reserve(fixed_grid_config())
    cfg["grid"] = {"mode": "isoflop", "budgets": [1e11, "3e11", 1e12],
                   "models": [{"hidden": 32, "layers": 1, "heads": 2},
                              {"hidden": 64, "layers": 2, "heads": 2}],
                   "precision": ["fp32"], "seeds": [0, 1], **grid}
    return cfg


def test_an_isoflop_grid_needs_no_data_sizes_base_or_vary():
    cfg = check_config(_isoflop())
    assert cfg["grid"]["single_epoch"] is False and cfg["grid"]["seeds"] == [0, 1]
    from cortexscale.grid import expand

    names = [p.name for p in expand(cfg["grid"])]
    assert len(names) == 3 * 2 * 2 and names[0] == "c1e11_h32_l1_a2_fp32_s0"
    # merged over the default (data_sizes, base, vary present): ignored, still valid
    merged = merge(_fits_reserve(fixed_grid_config()), {"grid": _isoflop()["grid"]})
    assert [p.name for p in expand(check_config(merged)["grid"])] == names


@pytest.mark.parametrize(("grid", "match"), [
    ({"mode": "isoflop", "precision": ["fp32"]}, r"'grid' lacks a required key: 'budgets'"),
    ({"data_sizes": [2048], "precision": ["fp32"]}, r"'grid' lacks a required key: 'base'"),
    ({"mode": "isoflop", "budgets": [0.5], "models": [{"hidden": 8, "layers": 1, "heads": 1}],
      "precision": ["fp32"]}, r"'grid.budgets.0' must satisfy minimum 1; found 0.5"),
    ({"mode": "isoflop", "budgets": ["lots"], "models": [{"hidden": 8, "layers": 1,
                                                           "heads": 1}],
      "precision": ["fp32"]}, r"'grid.budgets.0' must match the pattern"),
])
def test_the_schema_requires_each_modes_keys(grid, match):
    cfg = _fits_reserve(fixed_grid_config())
    cfg["grid"] = grid
    with pytest.raises(ConfigError, match=match):
        check_config(cfg)


def test_a_budget_below_the_warmup_names_the_budget_and_the_model():
    # h64_l2_a2: 748,032 FLOPs per position x 64 positions x 16 clips = 7.66e8 FLOPs a step
    with pytest.raises(ConfigError) as info:
        check_config(_isoflop(budgets=[1e10, 1e12]))
    msg = str(info.value)
    assert re.search(r"grid.budgets: budget 1e10 gives model h64_l2_a2 13 steps .* 748,032 "
                     r"FLOPs per position.*allowed: at least 21 \(more than "
                     r"pretrain.warmup_steps = 20, and at least 10\)", msg), msg
    # the smaller model gets 78 steps of the same budget; 1e12 buys 1305 steps
    assert "budget 1e10 gives model h32_l1_a2" not in msg and "budget 1e12" not in msg


def test_a_budget_must_fit_in_three_significant_digits():
    with pytest.raises(ConfigError, match=r"grid.budgets: 3.162e\+?12 has more than 3 "
                                          r"significant digits.*write 3.16e12"):
        check_config(_isoflop(budgets=[1e12, 3.162e12]))


def test_single_epoch_refuses_more_tokens_than_the_pool_holds():
    check_config(_isoflop(budgets=[1e11]))  # 131 steps x 16 clips: repeats the 544-clip pool
    with pytest.raises(ConfigError) as info:
        check_config(_isoflop(budgets=[1e11], single_epoch=True))
    msg = str(info.value)
    assert re.search(r"grid.single_epoch: budget 1e11 trains model h64_l2_a2 on 2096 clips "
                     r"\(131 steps x 16; 134,144 tokens\) but the training pool holds 544 "
                     r"clips", msg), msg
    cfg = _isoflop(budgets=[1e10], single_epoch=True,
                   models=[{"hidden": 64, "layers": 2, "heads": 2}])
    cfg["pretrain"]["warmup_steps"] = 2
    check_config(cfg)  # 13 steps x 16 = 208 clips <= 544: one epoch


def test_tokens_axis_checks_steps_and_single_epoch():
    cfg = _fits_reserve(fixed_grid_config())
    cfg["grid"]["tokens"] = [64 * 16 * 40]  # 40 steps of 16 clips x 64 tokens
    assert len(check_config(cfg)["grid"]["tokens"]) == 1
    cfg["grid"]["tokens"] = [64 * 16 * 5]
    with pytest.raises(ConfigError, match=r"grid.tokens: 5120 tokens give every model 5 steps"):
        check_config(cfg)
    cfg["grid"]["tokens"] = [64 * 16 * 40]
    cfg["grid"]["single_epoch"] = True  # 640 clips > the 128 clips of data size 2048
    with pytest.raises(ConfigError, match=r"single_epoch: 40960 tokens trains every model on "
                                          r"640 clips .* data size 2048 frames holds 128"):
        check_config(cfg)


def test_a_data_size_that_leaves_no_room_for_validation_names_size_pool_and_clips():
    cfg = fixed_grid_config()
    cfg["corpus"].update(n_sources=8, frames_per_source=1024)  # 512 clips; 8192 frames = all
    cfg["grid"]["data_sizes"] = [2048, 8192]
    with pytest.raises(ConfigError, match=r"grid.data_sizes: 8192 frames needs 512 clips but "
                                          r"the training pool holds 480: .* 512 clips less the "
                                          r"pretrain.eval_clips = 32 validation clips"):
        check_config(cfg)
    cfg["grid"]["data_sizes"] = [2048, 7680]  # 480 clips: exactly the pool
    check_config(cfg)


def test_planted_defaults_are_the_schemas():
    # references.py sits below config and keeps its own copy of the planted law's defaults
    from cortexscale.config import load_schema
    from cortexscale.references import PLANTED_DEFAULTS

    planted = load_schema()["properties"]["reference"]["properties"]["planted"]["properties"]
    assert {k: v["default"] for k, v in planted.items() if "default" in v} == PLANTED_DEFAULTS
