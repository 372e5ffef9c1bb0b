"""The workflow's policies (cortexscale.policy): GPUs per model, the launcher, the final
targets, the analyse options and the start-up checks, against what the rule files computed
before the policies moved into the package (the dry-run commands of issue 16)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from nsdrelease import write_release
from wfutils import load_default_config, tiny_config, write_yaml

from cortexscale.config import ConfigError, check_config
from cortexscale.grid import parse_name
from cortexscale.policy import (
    SCALING_FIGURES,
    Plan,
    analyse_options,
    approx_params,
    check_study,
    device_for,
    gpus_by_size,
    has_test_images,
    launcher,
    one_of,
    parent,
    siblings,
    threads_per_process,
)

TORCHRUN = "torchrun --standalone --nnodes 1 --nproc-per-node {} -m cortexscale.cli"
#: the aggregate's figures and the summary, as the default study's `rule all` listed them
VIDEOGPT = ["tables/encoding.tsv", *(f"figures/{n}" for n in SCALING_FIGURES), "summary.md",
            "figures/frontier.png"]
PRETRAINED = ["tables/pretrained.tsv", "tables/pretrained_sample_size.tsv",
              "tables/pretrained_fits.tsv", "figures/pretrained.png"]


def plan_of(cfg: dict) -> Plan:
    return Plan.from_config(check_config(cfg))


def gpu_config(gpu: int = 2, threads: int = 2) -> dict:
    cfg = load_default_config()
    cfg["resources"] = {**cfg.get("resources", {}), "gpu": gpu, "threads": threads,
                        "gpus_per_model": [{"min_params": 40000, "gpus": 3},
                                           {"min_params": 1000, "gpus": 1}]}
    return cfg


def test_gpus_by_model_size():
    big, small = parse_name("c1e11_h64_l2_a2_fp32_s0"), parse_name("c3e10_h32_l2_a2_fp32_s1")
    assert approx_params(big) == 12 * 2 * 64**2 and approx_params(small) == 12 * 2 * 32**2
    rules = [{"min_params": 40000, "gpus": 3}, {"min_params": 1000, "gpus": 1}]
    # the largest min_params reached wins, whatever the order of the table
    assert gpus_by_size(big, rules, 2) == 3 and gpus_by_size(big, rules[::-1], 2) == 3
    assert gpus_by_size(small, rules, 2) == 1
    assert gpus_by_size(small, [{"min_params": 10**9, "gpus": 8}], 2) == 2  # none: the default
    plan = plan_of(gpu_config())
    assert plan.gpus_for(big.name) == 3 and plan.gpus_for(small.name) == 1
    # the job's threads: resources.threads per GPU; each process gets its share
    assert plan.pretrain_threads(big.name) == 6 and plan.pretrain_threads(small.name) == 2
    assert plan.device == "cuda"


def test_cpu_trains_every_point_in_one_process():
    plan = plan_of(gpu_config(gpu=0, threads=3))
    assert plan.device == device_for(plan.config) == "cpu"
    assert {plan.gpus_for(n) for n in plan.grid_names} == {0}
    assert {plan.pretrain_threads(n) for n in plan.grid_names} == {3}


def test_estimate_counts_the_gpus_the_workflow_allocates():
    from cortexscale.estimate import estimate

    cfg = check_config(gpu_config())
    plan = Plan.from_config(cfg)
    rows = estimate(cfg)
    assert [r["gpus"] for r in rows] == [plan.gpus_for(r["grid"]) for r in rows]
    assert {r["gpus"] for r in estimate(cfg, gpus_per_model=False)} == {2}


@pytest.mark.parametrize(("gpus", "command"), [
    (0, "cortexscale"), (1, "cortexscale"), (3, TORCHRUN.format(3)), (8, TORCHRUN.format(8)),
])
def test_launcher(gpus, command):
    assert launcher(gpus) == command


@pytest.mark.parametrize(("threads", "gpus", "each"), [(6, 3, 2), (2, 0, 2), (1, 4, 1), (7, 2, 3)])
def test_threads_per_process(threads, gpus, each):
    assert threads_per_process(threads, gpus) == each


def test_default_study_targets():
    plan = plan_of(load_default_config())
    results = "results/synthetic-demo"
    brain_map = ["figures/brain_map.png"]  # the synthetic world has an atlas
    assert plan.targets == [f"{results}/{p}" for p in VIDEOGPT + brain_map + PRETRAINED]
    assert plan.scaling_figures == [f"{results}/figures/{n}" for n in SCALING_FIGURES]


def test_targets_of_each_arm():
    cfg = load_default_config()
    cfg["pretrained_models"] = {"models": [], "ensembles": []}
    assert plan_of(cfg).targets == [f"results/synthetic-demo/{p}"
                                    for p in VIDEOGPT + ["figures/brain_map.png"]]
    cfg = load_default_config()
    cfg["pretrained_models"] = {**cfg["pretrained_models"], "only": True}
    assert plan_of(cfg).targets == [f"results/synthetic-demo/{p}" for p in PRETRAINED]


def test_tiny_study_paths_and_sizes():
    plan = plan_of(tiny_config())
    assert plan.corpus_sizes == [128, 256]
    assert plan_of(load_default_config()).corpus_sizes == []  # isoflop: the whole pool
    assert plan.corpus_sections == (
        """'{"corpus": {"clip_len": 8, "fps": 15, "frames_per_source": 256, "height": 16,"""
        """ "n_sources": 2, "source": "synthetic", "subset_order": "stratified","""
        """ "time_stride": 1, "width": 16}, "pretrain": {"eval_clips": 4}, "seed": 0}'""")
    assert plan.fmri_root == "results/tiny/data/fmri"
    assert plan.fmri_check_inputs == ["results/tiny/data/fmri/runs.tsv"]
    assert plan.atlas == ["results/tiny/data/fmri/atlas.nii.gz"]
    assert plan.single_epoch_flag == ""
    assert plan.pre_fmri_inputs == ["results/tiny/checks/fmri.json"]
    assert plan.grid_regex.endswith("|" + plan.reference_regex)
    assert one_of([]) == r"(?!x)x" and one_of(["a.b", "c"]) == r"a\.b|c"


def test_prepared_and_algonauts2025_datasets():
    cfg = tiny_config()
    cfg["fmri"] = {"source": "prepared", "root": "/data/my fmri"}
    cfg["reference"] = {"enabled": False}
    plan = plan_of(cfg)
    assert plan.fmri_root_arg == "'/data/my fmri'" and plan.fmri_check_inputs == []
    assert plan.fmri_check_root == "'/data/my fmri'" and plan.atlas == []
    assert plan.pre_stimuli_arg == "--fmri-root '/data/my fmri'"
    cfg = load_default_config()
    cfg["fmri"] = {"source": "algonauts2025", "root": "/nonexistent"}
    cfg["subjects"] = ["sub-01", "sub-02"]
    cfg["reference"] = {"enabled": False}
    plan = plan_of(cfg)
    assert plan.atlas == [f"results/synthetic-demo/data/fmri/atlas/sub-0{i}.nii.gz"
                          for i in (1, 2)]
    assert plan.targets[-len(PRETRAINED) - 1] == "results/synthetic-demo/figures/brain_map.png"


def test_analyse_options_of_the_tiny_study():
    plan = plan_of(tiny_config())
    assert plan.has_budgets  # the planted reference
    refs = [f"planted_{c}_n{n}_s0" for c in ("c1e10", "c3e10", "c1e11")
            for n in (2500, 5000, 10000, 20000, 40000)] + ["latents_s0", "random_s0"]
    output = SimpleNamespace(isoflop_figure=plan.isoflop_figures)
    input_ = SimpleNamespace(pretrained=plan.analysis_pretrained,
                             references=plan.reference_summaries)
    assert analyse_options(None, input_, output) == (
        "--isoflop-figure results/tiny/figures/isoflop.png"
        " --pretrained results/tiny/tables/pretrained.tsv"
        " --pretrained-sample-size results/tiny/tables/pretrained_sample_size.tsv"
        " --pretrained-fits results/tiny/tables/pretrained_fits.tsv"
        " --reference-summaries "
        + " ".join(f"results/tiny/reference/{r}/summary.json" for r in refs))
    none = SimpleNamespace(pretrained=[], references=[])
    assert analyse_options(None, none, SimpleNamespace(isoflop_figure=[])) == ""


def test_analysis_outputs():
    plan = plan_of(tiny_config())
    tables = ["scaling_fits", "fit_curves", "frontier", "isoflop", "allocation", "comparisons"]
    assert siblings(plan.analysis_tables, ".parquet") == [
        f"results/tiny/tables/{n}.parquet" for n in tables]
    assert siblings(plan.analysis_figures, ".svg") == [
        f"results/tiny/figures/{n}.svg"
        for n in ("frontier", "scaling_fits", "allocation", "isoflop")]
    assert plan.analysis_pages == ["results/tiny/summary.html"] + [
        f"results/tiny/tables/{n}.html" for n in tables if n != "fit_curves"]


def test_parent_of_a_file_or_a_list():
    files = SimpleNamespace(items=lambda: [("npz", ["r/enc/m/s/roi.npz", "r/enc/m/s/b.npz"])])
    out = SimpleNamespace(items=lambda: [("fits", "r/my tables/f.tsv")])
    assert parent("npz", levels=3)(None, files, out) == "r/enc"
    assert parent("fits")(None, files, out) == "'r/my tables'"
    assert parent(0)(None, files, ["a/b/c.h5"]) == "a/b"


def test_challenge_submission(tmp_path, monkeypatch):
    root = tmp_path / "nsd"
    for s in ("subj01", "subj02"):
        write_release(root, s)
    cfg = load_default_config()
    cfg["study"] = "nsd"
    cfg["fmri"] = {"source": "algonauts2023", "root": str(root)}
    cfg["subjects"], cfg["rois"] = ["subj01", "subj02"], ["early"]
    cfg["reference"] = {"enabled": False}
    cfg["pretrained_models"] = {
        "only": True, "image_split": {"n_train": 20, "n_test": 5}, "ensembles": [],
        "models": [{"name": "tiny-vit", "build": "vit"},
                   {"name": "m2", "path": "models/x", "n_params": 10}],
    }
    plan = plan_of(cfg)
    assert has_test_images(str(root), "subj01") and plan.pre_submission
    assert plan.pre_stimuli_arg == f"--nsd-root {root}"
    assert plan.pre_source_arg("tiny-vit") == "results/nsd/pretrained/models/tiny-vit"
    assert plan.pre_source_arg("m2") == "models/x"
    assert plan.pre_model_inputs("m2") == [] and plan.pre_built == ["tiny-vit"]
    assert plan.pre_fmri_inputs == []  # an image dataset: no fMRI check
    assert plan.pre_submission_arg("m2", "subj02") == (
        "--submission-dir results/nsd/pretrained/submission/m2/subj02")
    submissions = [f"results/nsd/pretrained/submission/{m}/{s}/{h}_pred_test.npy"
                   for m in ("tiny-vit", "m2") for s in ("subj01", "subj02") for h in ("lh", "rh")]
    # the submissions are final targets (no stage reads them)
    assert plan.targets == [f"results/nsd/{p}" for p in PRETRAINED] + submissions
    for png in (root / "subj02" / "test_split" / "test_images").iterdir():
        png.unlink()
    plan = plan_of(cfg)
    assert not plan.pre_submission and plan.pre_submission_arg("m2", "subj01") == ""
    assert plan.pre_submission_files() == []


def test_check_study(tmp_path):
    good = write_yaml(tmp_path / "good.yaml", {"study": "s"})
    cfg = load_default_config()
    assert check_study(cfg, [good], check_dataset=False)["study"] == "synthetic-demo"
    bad = load_default_config()
    bad["grid"]["budgets"] = []
    with pytest.raises(ConfigError, match=r"good\.yaml"):  # the study is named by its files
        check_study(bad, [good], check_dataset=False)
    twice = tmp_path / "twice.yaml"
    twice.write_text("study: a\nstudy: b\n")
    with pytest.raises(ConfigError, match="study"):  # every file is read by our reader
        check_study(cfg, [twice], check_dataset=False)
    check_study(cfg, [twice], read=[twice], check_dataset=False)  # read before: skipped
