# gex-workflow: influence estimation with Geometric Ensembles (GEX) and baselines.
# Run: snakemake --cores all   (see README.md for targets, config knobs and profiles)
from snakemake.utils import min_version

from gex_core.workflow.config import validate_config

min_version("9.0")


configfile: "config.yaml"


validate_config(config, workflow.source_path("schemas/config.schema.yaml"))


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/pretrain.smk"
include: "rules/ensemble.smk"
include: "rules/influence.smk"
include: "rules/evaluate.smk"
include: "rules/experiments.smk"


rule all:
    default_target: True
    input:
        paths.all_targets(config),
