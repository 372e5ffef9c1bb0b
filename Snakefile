"""cortexscale: compute-optimal scaling studies of brain encoding models.

A thin entry point: load and validate the config, include one rule file per stage.
Run `snakemake --cores 2` for the default synthetic study, or
`snakemake --configfile config/studies/ahmadi2024.yaml -n` to preview the paper's sweep.
"""

import os

from snakemake.utils import min_version, validate

from cortexscale.config import read_yaml
from cortexscale.policy import check_study

min_version("9.0")

# The default study; `--configfile` merges a study's settings over it. Found beside this
# file so that the workflow runs from any working directory (snakemake --directory DIR).
DEFAULT_CONFIG = os.path.join(workflow.basedir, "config", "config.yaml")
# Snakemake's own reader neither names a malformed file nor refuses a repeated key (it keeps
# the last value): every config file is read once more with ours, which refuses a repeated
# key in each and names a malformed default config. (A malformed --configfile is parsed by
# Snakemake before this file runs, so that one still gets Snakemake's message.)
read_yaml(DEFAULT_CONFIG)


configfile: DEFAULT_CONFIG


# every problem of the study at once, before any job; the dataset (when fmri.root exists) is
# checked against the study once, by the main process (every job re-reads this file, e.g. on
# a cluster, and need not list the dataset again)
check_study(
    config,
    workflow.configfiles,
    read=[DEFAULT_CONFIG],
    check_dataset=workflow.is_main_process,
)
validate(config, "workflow/schemas/config.schema.yaml")


# the report's landing page: what the study is (`snakemake --report results/STUDY/report.html`)
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/encoding.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/pretrained.smk"


rule all:
    default_target: True
    input:
        PLAN.targets,
