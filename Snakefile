"""cortexscale: compute-optimal scaling studies of brain encoding models.

A thin entry point: load and validate the config, include one rule file per stage.
Run `snakemake --cores 2` for the default synthetic study, or
`snakemake --configfile config/studies/ahmadi2024.yaml -n` to preview the paper's sweep.
"""

import os

from snakemake.utils import min_version, validate

from cortexscale.config import check_config, read_yaml
from cortexscale.data.dataset_check import check_study_dataset

min_version("9.0")

# The default study; `--configfile` merges a study's settings over it. Found beside this
# file so that the workflow runs from any working directory (snakemake --directory DIR).
DEFAULT_CONFIG = os.path.join(workflow.basedir, "config", "config.yaml")
# Snakemake's own reader neither names a malformed file nor refuses a repeated key (it keeps
# the last value): read every config file once more with ours, which does both.
read_yaml(DEFAULT_CONFIG)


configfile: DEFAULT_CONFIG


for _path in workflow.configfiles:
    if _path != DEFAULT_CONFIG:  # read above
        read_yaml(_path)
_STUDY = " + ".join(str(f) for f in workflow.configfiles) or "config"
_FULL_CONFIG = check_config(config, _STUDY)
# the dataset (when fmri.root exists) holds the study's subjects, ROIs and stimuli: checked
# here, before any job, never after feature extraction; once, by the main process (every
# job re-reads this file, e.g. on a cluster, and need not list the dataset again)
if workflow.is_main_process:
    check_study_dataset(_FULL_CONFIG, _STUDY)
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
        VIDEOGPT_TARGETS,
        [BRAIN_MAP] if ATLAS and VIDEOGPT_TARGETS else [],
        PRETRAINED_TARGETS,
