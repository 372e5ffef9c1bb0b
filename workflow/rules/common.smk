# Shared names, the expanded grid, wildcard constraints and input functions.
# No stage logic lives here: every rule calls `cortexscale STAGE`.

import json
import os
import re
import shlex

from cortexscale.config import device_for
from cortexscale.grid import expand as expand_grid
from cortexscale.grid import wildcard_regex
from cortexscale.references import expand_references

# one folder per study (config `study`), so that studies never overwrite each other
STUDY = config["study"]
RESULTS = f"results/{STUDY}"
LOGS = f"logs/{STUDY}"
POINTS = expand_grid(config["grid"])
GRID_NAMES = [p.name for p in POINTS]
POINT_BY_NAME = {p.name: p for p in POINTS}
# reference points of the synthetic world (config `reference`; workflow/rules/reference.smk)
REFERENCES = expand_references(config)
REFERENCE_NAMES = [p.name for p in REFERENCES]
REFERENCE_REGEX = "|".join(re.escape(n) for n in REFERENCE_NAMES) or r"(?!x)x"
REFERENCE_SUMMARIES = [f"{RESULTS}/reference/{n}/summary.json" for n in REFERENCE_NAMES]
SUBJECTS = list(config["subjects"])
ROIS = list(config["rois"])
THREADS = config["resources"]["threads"]
GPUS = config["resources"]["gpu"]
DEVICE = device_for(config)

CORPUS = f"{RESULTS}/data/corpus/frames.h5"
# the corpus job's nested subsets: the grid's data sizes (none: an isoflop grid uses the pool)
CORPUS_SIZES = (
    [] if config["grid"]["mode"] == "isoflop" else [int(s) for s in config["grid"]["data_sizes"]]
)
SYNTHETIC_FMRI = config["fmri"]["source"] == "synthetic"
# real datasets in another layout are imported into results/ (rule fmri_import)
IMPORTED_FMRI = config["fmri"]["source"] in ("algonauts2025", "nifti", "algonauts2023")
FMRI_IN_RESULTS = SYNTHETIC_FMRI or IMPORTED_FMRI
FMRI_ROOT = f"{RESULTS}/data/fmri" if FMRI_IN_RESULTS else config["fmri"]["root"]
FMRI_RUNS = f"{FMRI_ROOT}/runs.tsv"
# the fMRI folder as one shell word: a prepared dataset's root is the user's own path
FMRI_ROOT_ARG = shlex.quote(FMRI_ROOT)
# labels atlases of the brain maps (brain_maps in analysis.smk; none: no map): the synthetic
# world's own in MNI space; each Algonauts 2025 subject's, copied from the release by fmri_import
ALGONAUTS2025_FMRI = config["fmri"]["source"] == "algonauts2025"
ATLAS = (
    [f"{FMRI_ROOT}/atlas.nii.gz"]
    if SYNTHETIC_FMRI
    else (
        expand(f"{FMRI_ROOT}/atlas/{{subject}}.nii.gz", subject=SUBJECTS)
        if ALGONAUTS2025_FMRI
        else []
    )
)
FMRI_MARKER = f"{RESULTS}/checks/fmri.json"
VQVAE = f"{RESULTS}/tokenizer/vqvae.pt"
TOKENS = f"{RESULTS}/tokenizer/tokens.h5"
ENCODING_TABLE = f"{RESULTS}/tables/encoding.tsv"
PARCEL_TABLE = f"{RESULTS}/tables/parcels.tsv"
SUMMARY = f"{RESULTS}/summary.md"
FRONTIER_FIGURE = f"{RESULTS}/figures/frontier.png"
BRAIN_MAP = f"{RESULTS}/figures/brain_map.png"
SCALING_FIGURES = [
    f"{RESULTS}/figures/scaling_data_size.png",
    f"{RESULTS}/figures/scaling_params.png",
    f"{RESULTS}/figures/loss_curves.png",
    f"{RESULTS}/figures/precision.png",
    f"{RESULTS}/figures/factors.png",
]


wildcard_constraints:
    grid=f"{wildcard_regex(POINTS)}|{REFERENCE_REGEX}",
    subject="|".join(re.escape(s) for s in SUBJECTS),
    roi="|".join(re.escape(r) for r in ROIS),


def sections(*keys):
    """The config sections a job needs, as one shell-quoted JSON argument.

    Passing only these sections means a change to one stage's settings reruns
    only that stage (Snakemake's params trigger).
    """
    return shlex.quote(json.dumps({k: config[k] for k in keys if k in config}, sort_keys=True))


def shell_words(*values):
    """Values as shell words, each quoted (names, paths): no config value reaches a shell
    unquoted. Every rule passes config-derived values through this, `sections` or `parent`."""
    return " ".join(shlex.quote(str(v)) for v in values)


def siblings(paths, ext):
    """The copies a stage writes beside each of ``paths`` under another suffix (a table's
    Parquet, a figure's SVG): declared as outputs, so that a failed job leaves none behind."""
    return [os.path.splitext(p)[0] + ext for p in paths]


def mem_mb(factor=1.0):
    """Memory request that grows with the attempt number (for retries)."""
    base = config["resources"]["mem_mb"]
    return lambda wildcards, attempt: int(base * factor * attempt)


def runtime(factor=1.0):
    """Time limit in minutes, growing with the attempt number."""
    base = config["resources"]["runtime"]
    return lambda wildcards, attempt: int(base * factor * attempt)


def approx_params(point):
    """Approximate non-embedding parameter count of a grid point: 12 x layers x hidden^2."""
    return 12 * point.layers * point.hidden**2


def gpus_for(name):
    """GPUs for one pretraining job: `resources.gpus_per_model` by model size, else `gpu`.

    On the CPU (`gpu: 0`) every grid point trains in one process, whatever the table says.
    """
    if GPUS == 0:
        return 0
    point = POINT_BY_NAME[name]
    rules = sorted(config["resources"].get("gpus_per_model", []), key=lambda r: r["min_params"])
    gpus = GPUS
    for r in rules:
        if approx_params(point) >= r["min_params"]:
            gpus = r["gpus"]
    return gpus


def pretrain_launcher(wildcards, resources):
    """`cortexscale` for one process; torchrun with one process per GPU for several."""
    if resources.gpu > 1:
        return (
            "torchrun --standalone --nnodes 1"
            f" --nproc-per-node {resources.gpu} -m cortexscale.cli"
        )
    return "cortexscale"


def encoding_outputs(ext):
    """Every encoding output of the study (one per grid or reference point x subject x ROI)."""
    return expand(
        f"{RESULTS}/encoding/{{grid}}/{{subject}}/{{roi}}.{ext}",
        grid=GRID_NAMES + REFERENCE_NAMES,
        subject=SUBJECTS,
        roi=ROIS,
    )


def parent(name, levels=1):
    """A param function giving the folder of the named input or output file, shell-quoted.

    ``name`` is a key of the rule's inputs or outputs, or an index into its outputs;
    ``levels`` folders up (2: the grandparent).
    """

    def inner(wildcards, input, output):
        if isinstance(name, int):
            path = output[name]
        else:
            path = {**dict(input.items()), **dict(output.items())}[name]
        for _ in range(levels):
            path = os.path.dirname(path)
        return shlex.quote(path)

    return inner


# The pretrained-model arm (issue 7; workflow/rules/pretrained.smk). Models given as a path or
# hub id are params, not inputs; models with `build` are made by the workflow.
from cortexscale.config import section as _section  # noqa: E402

PRETRAINED = _section("pretrained_models", config.get("pretrained_models"))
PRE_MODELS = {m["name"]: m for m in PRETRAINED["models"]}
PRE_BUILT = [n for n, m in PRE_MODELS.items() if m.get("build")]
PRE_ENSEMBLES = {e["name"]: e["members"] for e in PRETRAINED["ensembles"]}
IMAGE_FMRI = config["fmri"]["source"] == "algonauts2023"
PRETRAINED_TABLES = [
    f"{RESULTS}/tables/pretrained.tsv",
    f"{RESULTS}/tables/pretrained_sample_size.tsv",
    f"{RESULTS}/tables/pretrained_fits.tsv",
    f"{RESULTS}/figures/pretrained.png",
]
PRETRAINED_TARGETS = PRETRAINED_TABLES if PRE_MODELS else []
VIDEOGPT_TARGETS = (
    [] if PRETRAINED["only"] else [ENCODING_TABLE, SCALING_FIGURES, SUMMARY, FRONTIER_FIGURE]
)

PRE_ROOT = f"{RESULTS}/pretrained"


# the Algonauts 2023 challenge submission (workflow/rules/pretrained.smk)
def _has_test_images(subject):
    folder = os.path.join(config["fmri"].get("root", ""), subject, "test_split", "test_images")
    return os.path.isdir(folder) and any(n.endswith(".png") for n in os.listdir(folder))


PRE_SUBMISSION = IMAGE_FMRI and all(_has_test_images(s) for s in SUBJECTS)


def pre_submission_files(model="{model}", subject="{subject}"):
    if not PRE_SUBMISSION:
        return []
    return [f"{PRE_ROOT}/submission/{model}/{subject}/{h}_pred_test.npy" for h in ("lh", "rh")]


def pre_model_dir(name):
    return f"{PRE_ROOT}/models/{name}"


def pre_source(wildcards):
    m = PRE_MODELS[wildcards.model]
    return pre_model_dir(wildcards.model) if m.get("build") else m["path"]


def pre_stimuli_arg():
    if IMAGE_FMRI:
        return f"--nsd-root {shlex.quote(config['fmri'].get('root', ''))}"
    return f"--fmri-root {FMRI_ROOT_ARG}"


def pre_encoding_outputs(ext):
    singles = expand(
        f"{PRE_ROOT}/encoding/{{model}}/{{subject}}/{{roi}}.{ext}",
        model=list(PRE_MODELS),
        subject=SUBJECTS,
        roi=ROIS,
    )
    ens = expand(
        f"{PRE_ROOT}/ensembles/{{ensemble}}/{{subject}}/{{roi}}.{ext}",
        ensemble=list(PRE_ENSEMBLES),
        subject=SUBJECTS,
        roi=ROIS,
    )
    return singles + ens
