# Shared names, wildcard constraints and input functions, all picked from the study's plan
# (cortexscale.policy.Plan): paths, grid, GPUs per model, launcher and final targets are
# computed there. No stage logic lives here: every rule calls `cortexscale STAGE`.

from cortexscale.policy import (
    Plan,
    analyse_options,
    launcher,
    one_of,
    parent,
    shell_words,
    siblings,
    threads_per_process,
)

PLAN = Plan.from_config(config)

# one folder per study (config `study`), so that studies never overwrite each other
RESULTS = PLAN.results
LOGS = PLAN.logs
GRID_NAMES = PLAN.grid_names
# reference points of the synthetic world (config `reference`; workflow/rules/reference.smk)
REFERENCE_REGEX = PLAN.reference_regex
REFERENCE_SUMMARIES = PLAN.reference_summaries
SUBJECTS = PLAN.subjects
ROIS = PLAN.rois
THREADS = PLAN.threads
GPUS = PLAN.gpus
DEVICE = PLAN.device
sections = PLAN.sections
mem_mb = PLAN.mem_mb
runtime = PLAN.runtime

CORPUS = PLAN.corpus
# fMRI: made (synthetic) or imported (another layout) into results/, else the user's own
SYNTHETIC_FMRI = PLAN.synthetic_fmri
IMPORTED_FMRI = PLAN.imported_fmri
FMRI_ROOT = PLAN.fmri_root
FMRI_RUNS = PLAN.fmri_runs
FMRI_ROOT_ARG = PLAN.fmri_root_arg
# labels atlases of the brain maps (brain_maps in analysis.smk; none: no map)
ATLAS = PLAN.atlas
FMRI_MARKER = PLAN.fmri_marker
VQVAE = PLAN.vqvae
TOKENS = PLAN.tokens
ENCODING_TABLE = PLAN.encoding_table
PARCEL_TABLE = PLAN.parcel_table
SUMMARY = PLAN.summary
FRONTIER_FIGURE = PLAN.frontier_figure
BRAIN_MAP = PLAN.brain_map
SCALING_FIGURES = PLAN.scaling_figures

# the pretrained-model arm (issue 7; workflow/rules/pretrained.smk)
PRE_ROOT = PLAN.pre_root
PRE_MODELS = PLAN.pre_models
PRE_BUILT = PLAN.pre_built
PRE_ENSEMBLES = PLAN.pre_ensembles
PRETRAINED_TABLES = PLAN.pretrained_tables
pre_model_dir = PLAN.pre_model_dir
pre_submission_files = PLAN.pre_submission_files


wildcard_constraints:
    grid=PLAN.grid_regex,
    subject=one_of(SUBJECTS),
    roi=one_of(ROIS),


def encoding_outputs(ext):
    """Every encoding output of the study (one per grid or reference point x subject x ROI)."""
    return expand(
        f"{RESULTS}/encoding/{{grid}}/{{subject}}/{{roi}}.{ext}",
        grid=GRID_NAMES + PLAN.reference_names,
        subject=SUBJECTS,
        roi=ROIS,
    )


def pre_encoding_outputs(ext):
    """Every encoding output of the pretrained arm: each model's and each ensemble's."""
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


def pre_ensemble_inputs(name):
    """The predictions an ensemble averages: its members' for every subject and ROI."""
    return expand(
        f"{PRE_ROOT}/encoding/{{model}}/{{subject}}/{{roi}}.npz",
        model=PRE_ENSEMBLES[name],
        subject=SUBJECTS,
        roi=ROIS,
    )
