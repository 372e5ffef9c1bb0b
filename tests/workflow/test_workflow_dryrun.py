"""The workflow's DAG: each rule runs exactly as many jobs as the grid implies."""


import pytest
import yaml
from wfutils import (
    REPO,
    dry_run,
    load_default_config,
    pretrained_counts,
    tiny_config,
    write_yaml,
)

from cortexscale.config import check_config, merge
from cortexscale.grid import expand
from cortexscale.references import expand_references


def expected_counts(cfg: dict) -> dict[str, int]:
    n_points = len(expand(cfg["grid"]))
    n_refs = len(expand_references(cfg))
    out = {
        "corpus": 1,
        "fmri_check": 1,
        "tokenizer": 1,
        "pretrain": n_points,
        "features": n_points,
        # one encode job per (grid or reference point) x subject, every ROI in it
        "encode": (n_points + n_refs) * len(cfg["subjects"]),
        "aggregate": 1,
        "analyse": 1,
        "all": 1,
    }
    if n_refs:
        out["reference_features"] = n_refs
    if cfg["fmri"]["source"] == "synthetic":
        out["fmri_synthetic"] = 1
        out["brain_maps"] = 1
    out.update(pretrained_counts(cfg))
    out["total"] = sum(out.values())
    return out


def test_paper_sweep_job_counts(tmp_path):
    study = REPO / "config" / "studies" / "ahmadi2024.yaml"
    cfg = check_config(merge(load_default_config(), yaml.safe_load(study.read_text())))
    counts = dry_run(tmp_path, study)
    assert counts == expected_counts(cfg)
    # 4 data sizes x 9 model configs x 2 precisions; 4 subjects (every ROI in one job)
    assert counts["pretrain"] == 72 and counts["encode"] == 288


def test_default_study_job_counts(tmp_path):
    cfg = load_default_config()
    path = write_yaml(tmp_path / "study.yaml", cfg)
    counts = dry_run(tmp_path, path)
    assert counts == expected_counts(check_config(cfg))
    # 3 budgets x 3 models x 2 seeds; 3 budgets x 5 sizes x 2 seeds planted points, and the
    # latents and random features at 2 seeds
    assert counts["pretrain"] == 18 and counts["reference_features"] == 34


@pytest.mark.parametrize("mode", ["one_at_a_time", "product"])
def test_fixed_size_designs_job_counts(tmp_path, mode):
    cfg = tiny_config()
    cfg["grid"]["mode"] = mode
    cfg["grid"]["vary"] = {"hidden": [8, 16], "layers": [1, 2], "heads": []}
    path = write_yaml(tmp_path / "study.yaml", cfg)
    assert dry_run(tmp_path, path) == expected_counts(check_config(cfg))


def test_tiny_study_job_counts(tmp_path):
    cfg = tiny_config()
    path = write_yaml(tmp_path / "tiny.yaml", cfg)
    assert dry_run(tmp_path, path) == expected_counts(check_config(cfg))
