"""cortexscale: compute-optimal scaling studies of brain encoding models.

A thin entry point: load and validate the config, include one rule file per stage.
Run `snakemake --cores 2` for the default synthetic study, or
`snakemake --configfile config/studies/ahmadi2024.yaml -n` to preview the paper's sweep.
"""

from snakemake.utils import min_version, validate

from cortexscale.config import check_config

min_version("9.0")


configfile: "config/config.yaml"


check_config(config, "the workflow config")
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/encoding.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        ENCODING_TABLE,
        SCALING_FIGURES,
    default_target: True
